"""torch.utils.data: datasets of tensors, loaders over them and a loader's pass (its iterator).

A loader stands for its dataset whole (``wraps``), and so does its iterator: an automatic
decision on the dataset holds for them. A shuffling loader draws its order from the generator.
"""

from __future__ import annotations

import operator

import torch.utils.data as tud

from .declare import function
from .facts import Meta, Op


def _dataset_fields(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return "Dataset", {"fields": len(args)}


def _loader_fields(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    dataset_meta = getattr(args[0], "meta", {}) if args else {}
    return "DataLoader", {"fields": dataset_meta.get("fields")}


def _loader_iterator(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return "DataLoaderIter", {"fields": meta.get("fields")}


def _batch(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    fields = meta.get("fields")
    return "List", ({"length": fields} if fields else {})


FUNCTIONS: dict[str, Op] = {
    "torch.utils.data.TensorDataset": function(
        "torch.utils.data.TensorDataset", tud.TensorDataset, _dataset_fields, aliases="args",
        size="broadcast",
    ),
    # no workers (processes), samplers or collate functions: only these settings
    "torch.utils.data.DataLoader": function(
        "torch.utils.data.DataLoader", tud.DataLoader, _loader_fields,
        kwargs=frozenset({"batch_size", "shuffle", "drop_last"}), aliases="args", wraps="first",
        size="broadcast",
    ),
}  # fmt: skip


def _length(type_name: str) -> Op:
    return Op(f"{type_name}.__len__", "method", "Number", False, len, shape_query=True,
              size="nothing")  # fmt: skip


DATA_LOADER: dict[str, Op] = {
    "__len__": _length("DataLoader"),
    # a shuffling loader draws its order from the random number generator
    "__iter__": Op("DataLoader.__iter__", "method", _loader_iterator, False, iter, random=True,
                   aliases="target", wraps="target", size="loader_iterator"),
}  # fmt: skip
DATASET: dict[str, Op] = {
    "__len__": _length("Dataset"),
    "__getitem__": Op("Dataset.__getitem__", "method", _batch, False, operator.getitem,
                      aliases="target", size="nothing"),
}  # fmt: skip
DATA_LOADER_ITER: dict[str, Op] = {
    "__next__": Op("DataLoaderIter.__next__", "method", _batch, True, next, random=True,
                   aliases="target", size="batch"),
    "__len__": _length("DataLoaderIter"),
}  # fmt: skip
