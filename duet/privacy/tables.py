"""A published pandas DataFrame, as the owner holds it: a read-only table that only DP
statistics read.

``owner.publish(births, tags=["births"])`` keeps a copy of the frame's columns as read-only
float64 arrays (changing ``births`` afterwards changes nothing published). What the listing
shows is the owner's choice of what to publish about it: the column names, their dtypes and
the number of rows (as a tensor's shape is shown), never a value.

Columns are numbers (ints, floats), with no missing or infinite values: any other column is
refused when published, with the fix (drop it, or map it to numbers), as NaN would make every
statistic on the table fail on the owner's data. A column of whole numbers (a year, a code)
serves as group keys.

Nothing here knows a session: the owner's side (owner/private_releases.py) resolves what the
scientist names and charges the ledger; this module prices and runs a statistic on a table.
"""

from __future__ import annotations

import unicodedata
from typing import Required, TypedDict, Unpack

import numpy as np
import pandas as pd

from ..errors import UsageError
from . import grouped as by_group
from . import statistics
from .accounting import Laplace

__all__ = ["MAX_COLUMN_NAME", "Table", "TableSettings", "price_on_table", "statistic_on_table"]

MAX_COLUMN_NAME = 100
MAX_COLUMNS = 1_000


def check_column_name(name: object) -> str:
    """A column name as it may be published or asked for: a string of 1 to MAX_COLUMN_NAME
    characters, none of them a control character."""
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= MAX_COLUMN_NAME
        or any(unicodedata.category(c).startswith("C") for c in name)
    ):
        raise UsageError(
            f"a column name is a string of 1 to {MAX_COLUMN_NAME} printable characters, not "
            f"{str(name)[:MAX_COLUMN_NAME]!r}"
        )
    return name


class Table:
    """The owner's published DataFrame: its columns of numbers, read only by DP statistics.

    Raises UsageError (for the owner, when publishing) for a frame with no rows, no columns,
    too many of them, a column name that is not a printable string, or a column that is not
    numbers or holds NaN or infinities."""

    __slots__ = ("_columns", "dtypes", "rows")

    def __init__(self, frame: pd.DataFrame):
        if not isinstance(frame, pd.DataFrame):
            raise UsageError(f"a table is made from a pandas DataFrame, not {type(frame)}")
        rows, width = frame.shape
        if rows == 0 or not 1 <= width <= MAX_COLUMNS:
            raise UsageError(
                f"a published table needs rows and 1 to {MAX_COLUMNS} columns; this DataFrame "
                f"has {rows} rows and {width} columns"
            )
        if not frame.columns.is_unique:
            raise UsageError("the DataFrame repeats a column name; publish each column once")
        columns: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        for name in frame.columns:
            check_column_name(name)
            series = frame[name]
            if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
                raise UsageError(
                    f"column {name!r} holds {series.dtype} values; a published table holds "
                    f"numbers only: drop it, or map it to numbers (df[{name!r}].map({{...}}))"
                )
            array = series.to_numpy(dtype=np.float64, copy=True)
            if not np.isfinite(array).all():
                raise UsageError(
                    f"column {name!r} holds missing or infinite values; fill or drop them "
                    "before publishing (df.dropna(), df.fillna(...))"
                )
            array.flags.writeable = False
            columns[name] = array
            dtypes[name] = str(series.dtype)
        self._columns = columns
        self.dtypes = dtypes
        self.rows = rows

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._columns.values())

    def column(self, name: str) -> np.ndarray:
        """The values of column ``name`` (read-only). Raises UsageError naming the columns
        (the listing shows them anyway) when there is no such column."""
        found = self._columns.get(name)
        if found is None:
            raise UsageError(
                f"the table has no column {name[:MAX_COLUMN_NAME]!r}; its columns are "
                f"{self.columns}"
            )
        return found

    def describe(self) -> dict[str, object]:
        """What the listing shows: the kind, the columns with their dtypes, and the shape."""
        return {
            "kind": "Table",
            "type": "table",
            "shape": [self.rows, len(self._columns)],
            "columns": dict(self.dtypes),
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{n} ({d})" for n, d in self.dtypes.items())
        return f"<published table: {self.rows} rows; {shown}>"


def _check(
    table: Table, kind: str, column: str | None, by: str | None, keys: object, bins: int | None
) -> None:
    """The settings a table statistic refuses whatever the data: checked before any charge
    (every fact used here is in the listing)."""
    if column is not None:
        table.column(column)
    elif kind != "count":
        raise UsageError(
            f"a DP {kind} on a table takes one of its columns: table['column']; its columns "
            f"are {table.columns}"
        )
    if by is None:
        if keys is not None:
            raise UsageError("keys= go with by='column': the column whose values are the groups")
        return
    table.column(by)
    if keys is None:
        raise UsageError(
            f"grouping by {by!r} needs keys=[...]: the groups you ask about (which groups the "
            "owner's data holds is not shown)"
        )
    if bins is not None:
        raise UsageError("a grouped DP statistic takes no bins")


class TableSettings(TypedDict, total=False):
    """A statistic's settings on a table, as a DP message carries them: the ``column`` read
    (a count may name none), ``by`` and ``keys`` for groups, ``bounds``, ``bins``."""

    column: str | None
    by: str | None
    keys: object
    bounds: tuple[float, float] | None
    bins: int | None
    epsilon: Required[float]


def price_on_table(table: Table, kind: str, **settings: Unpack[TableSettings]) -> Laplace:
    """What ``statistic_on_table`` with these settings costs (nothing read but the listing's
    facts). Raises UsageError for a column the table has not, keys without ``by``, etc."""
    column, by, keys = settings.get("column"), settings.get("by"), settings.get("keys")
    bounds, bins, epsilon = settings.get("bounds"), settings.get("bins"), settings["epsilon"]
    _check(table, kind, column, by, keys, bins)
    if by is not None:
        return by_group.price_grouped(kind, keys=keys, bounds=bounds, epsilon=epsilon)
    return statistics.price_statistic(kind, bounds=bounds, epsilon=epsilon, bins=bins)


def statistic_on_table(
    table: Table, kind: str, **settings: Unpack[TableSettings]
) -> tuple[object, Laplace]:
    """The DP statistic ``kind`` of ``column`` (a count may name none: it counts rows), by the
    groups of ``by`` equal to each of ``keys`` when given (a list, in the order of ``keys``),
    and its price."""
    column, by, keys = settings.get("column"), settings.get("by"), settings.get("keys")
    bounds, bins, epsilon = settings.get("bounds"), settings.get("bins"), settings["epsilon"]
    _check(table, kind, column, by, keys, bins)
    values = table.column(column if column is not None else table.columns[0])
    if by is not None:
        assert isinstance(keys, list | tuple)  # _check refused it missing
        chosen = None if kind == "count" else values
        return by_group.grouped(
            kind, chosen, table.column(by), keys=keys, bounds=bounds, epsilon=epsilon
        )
    if kind == "count":
        return statistics.count(values, epsilon=epsilon)
    if bounds is None:
        raise UsageError(f"a DP {kind} needs bounds=(lo, hi): values are clamped to them")
    if kind == "histogram":
        return statistics.histogram(
            values, bounds=bounds, bins=10 if bins is None else bins, epsilon=epsilon
        )
    run = statistics.mean if kind == "mean" else statistics.sum
    return run(values, bounds=bounds, epsilon=epsilon)
