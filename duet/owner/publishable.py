"""What an owner may publish: values a scientist can compute on remotely, and tables.

The remote surface is torch (tensors, models, datasets, loaders) and duet's Python values
(numbers, strings, lists, dicts). A pandas DataFrame published on its own becomes a table
(duet/privacy/tables.py) that only DP statistics read (``duet.privacy.mean(table["age"],
...)``). A NumPy array, a pandas Series, or a DataFrame inside a container would be accepted
and then fail every operation the scientist tries ("ndarray objects have no remote methods"),
privately, so neither side would learn why; a string naming a data file (``"digits.csv"``)
would publish the name, not the data. They are refused when published, with what to publish
instead. Other strings stay publishable: ``duet.python``'s String works on them.
"""

from __future__ import annotations

import sys

from ..errors import UsageError

_DEPTH = 8  # containers are looked into this deep (deeper ones are refused by the store's walks)
_ITEMS = 10_000  # and this many of their items


#: what a string naming a file of data ends with (the owner meant the file, not its name)
DATA_SUFFIXES = (".csv", ".tsv", ".npy", ".npz", ".pt", ".pth", ".parquet", ".xlsx", ".feather")


def _names_a_data_file(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text and text.strip().lower().endswith(DATA_SUFFIXES)


#: the refusal of anything but a DP statistic on a table (the owner's executor, the scientist)
TABLE_ONLY_DP = (
    "object {id} is a published table: only DP statistics read it (duet.privacy.mean("
    "table['column'], bounds=(lo, hi), epsilon=...), sum, count, histogram; by='column', "
    "keys=[...] for groups); no operation, get or request reaches its rows"
)


def is_table(value: object) -> bool:
    """Whether ``value`` is a published table (looked up by module: an owner that published
    no DataFrame never imports the table's module)."""
    tables = sys.modules.get("duet.privacy.tables")
    return tables is not None and isinstance(value, tables.Table)


def is_frame(value: object) -> bool:
    """Whether ``value`` is a pandas DataFrame (to be published as a table)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def check_publishable(value: object) -> None:
    """Raise UsageError when ``value`` (or something in a list, tuple or dict of it) is a
    NumPy array, a pandas object (but a DataFrame on its own: a table) or a data file's name,
    naming what to publish instead."""
    if is_frame(value) or is_table(value):
        return
    problem = _unusable(value, 0, [0])
    if problem is not None:
        where, fix = problem
        raise UsageError(f"duet cannot compute on {where}; {fix}")


def _unusable(value: object, depth: int, seen: list[int]) -> tuple[str, str] | None:
    seen[0] += 1
    if depth > _DEPTH or seen[0] > _ITEMS:
        return None
    found = _refused_type(value)
    if found is not None:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            inner = _unusable(item, depth + 1, seen)
            if inner is not None:
                return f"{inner[0]} (under key {key!r} of a dict)", inner[1]
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            inner = _unusable(item, depth + 1, seen)
            if inner is not None:
                return f"{inner[0]} (item {index} of a {type(value).__name__})", inner[1]
    return None


def _refused_type(value: object) -> tuple[str, str] | None:
    if is_table(value):  # only the store's own entry holds one: an op could pick it out
        return (
            "a published table inside a container",
            "publish the DataFrame on its own (owner.publish(df, tags=[...]))",
        )
    if isinstance(value, str) and _names_a_data_file(value):
        return (
            f"the file name {value[:200]!r} (a string: its text would be published, not the file)",
            "read the file and publish its numbers as tensors: torch.tensor(pandas.read_csv("
            "path).to_numpy(dtype='float32')), torch.from_numpy(numpy.load(path)), a "
            "TensorDataset; or let `duet serve` read it ([[publish]] path = ...)",
        )
    # looked up by module, never imported here: an owner without pandas publishes no DataFrame
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return (
            f"a NumPy array (shape {tuple(value.shape)}, dtype {value.dtype})",
            "publish it as a tensor: torch.from_numpy(array) (or torch.tensor(array)); "
            "features and labels together as torch.utils.data.TensorDataset(features, labels)",
        )
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(value, pandas.DataFrame):
            return (
                f"a pandas DataFrame ({value.shape[0]} rows, {value.shape[1]} columns) inside a "
                "container",
                "publish the DataFrame on its own (owner.publish(df, tags=[...])): it becomes a "
                "table for DP statistics (duet.privacy.mean(table['age'], ...)); to compute on "
                "its numbers, publish them as a tensor: torch.tensor(df.to_numpy("
                "dtype='float32')), or features and labels as torch.utils.data.TensorDataset("
                "torch.tensor(df[features].to_numpy()), torch.tensor(df[label].to_numpy()))",
            )
        if isinstance(value, pandas.Series | pandas.Index):
            return (
                f"a pandas {type(value).__name__} ({len(value)} values)",
                "publish it as a tensor: torch.tensor(series.to_numpy()); or, for DP "
                "statistics, as a table: owner.publish(series.to_frame(), tags=[...])",
            )
    return None


__all__ = ["TABLE_ONLY_DP", "check_publishable", "is_frame", "is_table"]
