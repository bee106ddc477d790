"""How much memory an operation will take, estimated before it runs.

The owner checks this against the scientist's quota before running anything, so a request for
``torch.zeros(10**10)`` is refused without the owner ever holding those bytes. What an op really
took is charged afterwards (quota.py); the estimate only has to stop the large cases early:
creation from sizes, broadcasting, products, repeats, concatenations, ``tolist``, layers built
from sizes, batches drawn from a loader, and what is put into a list or a dict.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch
import torch.utils.data as tud
from torch import nn

from ..protocol import allowlist
from .quota import ITEM_BYTES, iterator_bytes, scalar_bytes

PY_FLOAT_BYTES = 32  # a float object and its slot in a list

_CREATION = {"zeros", "ones", "randn", "rand", "full", "empty"}
_CREATION_LIKE = {"zeros_like", "ones_like", "randn_like"}
_LIST_INSERTS = {"append", "extend", "insert", "__setitem__", "__iadd__", "__add__", "update"}


def _numel(shape: Any) -> int:
    if isinstance(shape, torch.Size | list | tuple):
        if len(shape) == 1 and isinstance(shape[0], list | tuple | torch.Size):
            shape = shape[0]
        dims = [d for d in shape if isinstance(d, int)]
        if len(dims) != len(shape):
            return 0
        return math.prod(max(d, 0) for d in dims)
    if isinstance(shape, int):
        return max(shape, 0)
    return 0


def _itemsize(kwargs: dict[str, Any], default: int = 4) -> int:
    dtype = kwargs.get("dtype")
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    return default


def _tensors(values: Any) -> list[torch.Tensor]:
    out = []
    for value in values:
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, list | tuple):
            out.extend(v for v in value if isinstance(v, torch.Tensor))
    return out


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast of ``shapes`` (torch's rule), None when they do not broadcast."""
    out: list[int] = []
    rank = max(map(len, shapes))
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    for dims in zip(*padded, strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _broadcast_bytes(tensors: list[torch.Tensor]) -> int:
    if not tensors:
        return 0
    shape = _broadcast(*(tuple(t.shape) for t in tensors))
    if shape is None:
        return 0  # the op will fail anyway
    itemsize = max(t.element_size() for t in tensors)
    return math.prod(shape) * max(itemsize, 4)


def planned_bytes(op: allowlist.Op, target: Any, args: list[Any], kwargs: dict[str, Any]) -> int:
    """Bytes ``op`` will allocate (an estimate; 0 when it allocates little or nothing new)."""
    name = op.name
    if op.path.startswith("torch.") and op.kind == "function":
        return _function_bytes(op.path, name, args, kwargs)
    if isinstance(target, torch.Tensor):
        return _tensor_method_bytes(name, target, args, kwargs)
    if isinstance(target, list | dict) and name in _LIST_INSERTS:
        return _inserted_bytes(args)
    if isinstance(target, tud.dataloader._BaseDataLoaderIter) and name == "__next__":
        return _batch_bytes(target)
    if isinstance(target, tud.DataLoader) and name == "__iter__":
        return iterator_bytes(target.batch_sampler, target.dataset)
    if isinstance(target, torch.optim.Optimizer) and name == "step" and not target.state:
        # the first step makes the optimizer's state: up to two buffers per parameter
        return 2 * sum(_nbytes(p) for g in target.param_groups for p in g["params"])
    if isinstance(target, nn.Module) and name == "copy":
        return sum(_nbytes(t) for t in target.parameters()) + sum(
            _nbytes(t) for t in target.buffers()
        )
    if op.path.startswith("python."):
        return sum(_inserted_bytes([a]) for a in args)
    return 0


def _inserted_bytes(values: list[Any]) -> int:
    """What putting ``values`` into a list or dict adds to it (its items charged on their own)."""
    total = 0
    for value in values:
        if isinstance(value, list | tuple):
            total += ITEM_BYTES * len(value) + sum(
                scalar_bytes(v) for v in value if not isinstance(v, torch.Tensor | list | dict)
            )
        elif isinstance(value, dict):
            total += sys.getsizeof(value) + sum(
                scalar_bytes(k) + scalar_bytes(v)
                for k, v in value.items()
                if not isinstance(v, torch.Tensor | list | dict)
            )
        else:
            total += ITEM_BYTES + scalar_bytes(value)
    return total


def _function_bytes(path: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    if name in _CREATION:
        size = kwargs.get("size", args[1:] if name == "full" and args else args)
        if name == "full" and args:
            size = args[0]
        return _numel(size) * _itemsize(kwargs)
    if name in _CREATION_LIKE and args and isinstance(args[0], torch.Tensor):
        return _nbytes(args[0])
    if name == "randint":
        size = kwargs.get("size") or next((a for a in args if isinstance(a, tuple | list)), ())
        return _numel(size) * _itemsize(kwargs, 8)
    if name in ("arange", "linspace"):
        numbers = [a for a in args if isinstance(a, int | float)]
        if name == "linspace" and len(numbers) >= 3:
            return int(max(numbers[2], 0)) * 4
        if numbers:
            start, end = (0, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])
            step = numbers[2] if len(numbers) > 2 and numbers[2] else 1
            return int(max((end - start) / step, 0)) * 8
        return 0
    if name == "eye":
        rows = args[0] if args and isinstance(args[0], int) else 0
        cols = args[1] if len(args) > 1 and isinstance(args[1], int) else rows
        return max(rows, 0) * max(cols, 0) * 4
    if name == "tensor":
        return 0  # its data arrived with the message: already bounded by the frame
    layer = allowlist.FUNCTIONS.get(path)
    if layer is not None and layer.returns == "Module":
        return _layer_bytes(name, args, kwargs)
    tensors = _tensors(args) + _tensors(kwargs.values())
    if name in ("cat", "stack"):
        return sum(_nbytes(t) for t in tensors)
    if name in ("matmul", "mm") and len(tensors) >= 2:
        return _matmul_bytes(tensors[0], tensors[1])
    if name == "linear" and len(tensors) >= 2:
        return _matmul_bytes(tensors[0], tensors[1].t())
    return _broadcast_bytes(tensors)


def _tensor_method_bytes(name: str, target: torch.Tensor, args: list[Any], kwargs: Any) -> int:
    if name in ("tolist",):
        return target.numel() * PY_FLOAT_BYTES
    if name == "repeat":
        return _nbytes(target) * max(_numel(args), 1)
    if name in ("matmul", "mm", "__matmul__") and args and isinstance(args[0], torch.Tensor):
        return _matmul_bytes(target, args[0])
    if name == "__rmatmul__" and args and isinstance(args[0], torch.Tensor):
        return _matmul_bytes(args[0], target)
    if name in ("expand", "expand_as", "view", "view_as", "reshape", "t", "transpose", "permute",
                "squeeze", "unsqueeze", "detach", "__getitem__", "chunk", "split"):  # fmt: skip
        if name == "__getitem__" and _tensors(args):  # indexing by tensors makes a new one
            return _index_bytes(target, _tensors(args))
        if name == "reshape" or name == "contiguous":
            return _nbytes(target)
        return 0  # views
    tensors = [target, *_tensors(args), *_tensors(list(kwargs.values()))]
    return _broadcast_bytes(tensors)


def _index_bytes(target: torch.Tensor, index: list[torch.Tensor]) -> int:
    if any(i.dtype == torch.bool for i in index):
        return _nbytes(target)  # a mask picks at most every element
    rows = max(i.numel() for i in index)
    per_row = _nbytes(target) // max(target.shape[0], 1) if target.dim() else target.element_size()
    return rows * per_row


def _matmul_bytes(a: torch.Tensor, b: torch.Tensor) -> int:
    if a.dim() == 0 or b.dim() == 0:
        return _broadcast_bytes([a, b])
    rows = a.shape[-2] if a.dim() >= 2 else 1
    cols = b.shape[-1] if b.dim() >= 2 else 1
    batch = _broadcast(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    if batch is None:
        return 0
    return math.prod(batch) * rows * cols * max(a.element_size(), b.element_size())


def _layer_bytes(name: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    ints = [a for a in args if isinstance(a, int) and not isinstance(a, bool)]
    for key in ("in_features", "out_features", "in_channels", "out_channels", "num_features"):
        if isinstance(kwargs.get(key), int):
            ints.append(kwargs[key])
    if name == "Linear" and len(ints) >= 2:
        return (ints[0] + 1) * ints[1] * 4
    if name == "Conv2d" and len(ints) >= 3:
        kernel = ints[2] if len(ints) > 2 else 1
        return ints[0] * ints[1] * kernel * kernel * 4 + ints[1] * 4
    if name.startswith("BatchNorm") and ints:
        return ints[0] * 4 * 4
    return 0


def _batch_bytes(iterator: Any) -> int:
    try:
        dataset = iterator._dataset
        batch = getattr(iterator, "_index_sampler", None)
        size = getattr(batch, "batch_size", None) or 1
        if isinstance(dataset, tud.TensorDataset):
            return sum(_nbytes(t) // max(len(t), 1) for t in dataset.tensors) * size
    except (AttributeError, TypeError):
        pass
    return 0
