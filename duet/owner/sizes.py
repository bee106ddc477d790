"""How much memory an operation will take, estimated before it runs.

The owner checks this against the scientist's quota before running anything, so a request for
``torch.zeros(10**10)`` is refused without the owner ever holding those bytes. What an op really
took is charged afterwards (quota.py); the estimate only has to stop the large cases early:
creation from sizes, broadcasting, products, repeats, concatenations, ``tolist``, layers built
from sizes, what a layer's forward makes (a transposed convolution's stride or a convolution's
padding can ask for any size), samples drawn from a distribution, optimizer state, batches drawn
from a loader, what is put into a list or a dict, and the tensor objects made by iterating a
tensor or splitting it (each shares the storage, but is an object of several hundred bytes).
Sizes are read as torch reads them, whatever carries them (a 0-dim tensor, a numpy integer, a
tuple of them); one that cannot be read is refused naming the argument (size_args.py). Layers
built from sizes and what their forward passes make are worked out in layer_sizes.py; this
module binds every size rule an op may declare to its estimate (``RULES``).
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import cast

import numpy as np
import torch
import torch.utils.data as tud
from torch import nn

from ..protocol.allowlist import Op
from .layer_sizes import forward_bytes, layer_bytes
from .quota import ITEM_BYTES, iterator_bytes, scalar_bytes
from .size_args import (
    Args,
    Kwargs,
    count_of,
    read_dims,
    read_index,
    read_numel,
    read_real,
    read_varargs_dims,
)

PY_FLOAT_BYTES = 32  # a float object and its slot in a list
# one tensor object that shares another's storage (a row of list(t), a piece of t.split(1)):
# measured 640 to 740 bytes with its slot in a list or tuple. Its storage is charged once, the
# objects are not: a million of them are counted here, before they are made.
TENSOR_HANDLE_BYTES = 768


def _itemsize(kwargs: Kwargs, default: int = 4) -> int:
    dtype = kwargs.get("dtype")
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    return default


def _tensors(values: Iterable[object]) -> list[torch.Tensor]:
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
    first = tensors[0].shape
    if all(t.shape == first for t in tensors):  # the common case: no broadcasting to work out
        return tensors[0].numel() * max(max(t.element_size() for t in tensors), 4)
    shape = _broadcast(*(tuple(t.shape) for t in tensors))
    if shape is None:
        return 0  # the op will fail anyway
    itemsize = max(t.element_size() for t in tensors)
    return math.prod(shape) * max(itemsize, 4)


def planned_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    """Bytes ``op`` will allocate (an estimate; 0 when it allocates little or nothing new), by
    the op's size rule (declared with the op, in protocol/allowlist)."""
    # every op declares its rule (tests/test_op_facts.py): one lookup, no None check
    return RULES[op.size](op, target, args, kwargs)  # type: ignore[index]


def _iterated_bytes(value: object, *, pairs: bool = False) -> int | None:
    """What iterating ``value`` makes (``list(value)``, ``lst.extend(value)``): a tensor's rows
    are tensor objects of their own, a loader makes every batch, a dataset every sample, a
    string one object per character. None: it hands out what it holds (a list, a tuple)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return 0  # not iterable: the call fails
        # dict(t) and d.update(t): each row, then its two elements, are tensors of their own
        handles = 3 if pairs else 1
        return len(value) * (handles * TENSOR_HANDLE_BYTES + ITEM_BYTES)
    if isinstance(value, str):
        return len(value) * ITEM_BYTES
    try:
        if isinstance(value, tud.DataLoader):
            batch = _loader_batch_bytes(value.dataset, value.batch_size or 1)
            return len(value) * (batch + ITEM_BYTES) + iterator_bytes(
                value.batch_sampler, value.dataset
            )
        if isinstance(value, tud.dataloader._BaseDataLoaderIter):
            return len(value) * (_batch_bytes(value) + ITEM_BYTES)
        if isinstance(value, tud.TensorDataset):
            fields = len(value.tensors)
            return len(value) * (fields * TENSOR_HANDLE_BYTES + sys.getsizeof(()) + ITEM_BYTES)
        if isinstance(value, tud.Dataset):
            return len(value) * (_sample_bytes(value) + ITEM_BYTES)  # type: ignore[arg-type]
    except TypeError:  # a dataset without a length
        return 0
    return None


def _inserted_bytes(values: Iterable[object]) -> int:
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


def _module_bytes(module: nn.Module) -> int:
    return sum(_nbytes(t) for t in module.parameters()) + sum(_nbytes(t) for t in module.buffers())


def _legacy_tensor_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    # torch.Tensor(2, 3): sizes (data arrived with the message)
    if args and all(type(a) is int for a in args):
        return count_of(cast(list[int], list(args))) * 4  # each is an int: checked just above
    if len(args) == 1 and isinstance(args[0], torch.Size):
        return read_numel(args[0], f"{op.path}: size") * 4
    if len(args) == 1 and not isinstance(args[0], torch.Tensor):  # data (a tensor: itself)
        return _data_elements(args[0], {}, 0) * 4
    return 0


def _numpy_copy_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return int(args[0].nbytes) if args and isinstance(args[0], np.ndarray) else 0


def _optimizer_state_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return sum(_nbytes(t) for t in _tensors(args[:1]))  # made with the optimizer (Adagrad)


def _like_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if args and isinstance(args[0], torch.Tensor):
        return args[0].numel() * _itemsize(kwargs, args[0].element_size())
    return _broadcast_rule(op, target, args, kwargs)


def _data_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    # torch.tensor(data): a list may hold one owner-side list many times over
    return _data_elements(args[0], {}, 0) * _itemsize(kwargs, 8) if args else 0


def _layer_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return layer_bytes(op.path, args, kwargs)


def _concat_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return sum(_nbytes(t) for t in _tensors(args) + _tensors(kwargs.values()))


def _matmul_args_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    tensors = _tensors(args) + _tensors(kwargs.values())
    if len(tensors) >= 2:
        return _matmul_bytes(tensors[0], tensors[1])
    return _broadcast_bytes(tensors)


def _linear_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    tensors = _tensors(args) + _tensors(kwargs.values())
    if len(tensors) >= 2:
        return _matmul_bytes(tensors[0], tensors[1].t())
    return _broadcast_bytes(tensors)


def _broadcast_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return _broadcast_bytes(_tensors(args) + _tensors(kwargs.values()))


def _data_elements(data: object, seen: dict[int, int], depth: int) -> int:
    """The elements of a tensor made from nested lists: each list counted once however many
    times it is held (a list appended to another a thousand times makes a thousand rows)."""
    if isinstance(data, torch.Tensor):
        return data.numel()
    if isinstance(data, np.ndarray):
        return int(data.size)
    if not isinstance(data, list | tuple):
        return 1
    key = id(data)
    if key in seen:
        return seen[key]
    if depth > 64:
        return len(data)  # torch makes tensors of at most 64 dimensions: it refuses this
    seen[key] = 0  # a list inside itself: torch refuses it
    seen[key] = count = sum(_data_elements(item, seen, depth + 1) for item in data)
    return count


# ---- tensors made from sizes: ``zeros(*size)``, ``full(size, value)``, ``randint([low,] high,
# size)``, ``arange([start,] end[, step])``, ``linspace(start, end, steps)``, ``eye(n[, m])``,
# each size read as torch reads it


def _creation_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    # (*size) or (size=)
    if "size" in kwargs:
        return read_numel(kwargs["size"], f"{op.path}: size") * _itemsize(kwargs)
    return count_of(read_varargs_dims(args, f"{op.path}: size")) * _itemsize(kwargs)


def _full_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    size = kwargs["size"] if "size" in kwargs else args[0] if args else ()
    fill = kwargs.get("fill_value", args[1] if len(args) > 1 else 0.0)
    default = 4 if isinstance(fill, float | torch.Tensor) else 8
    return read_numel(size, f"{op.path}: size") * _itemsize(kwargs, default)


def _randint_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    size = kwargs["size"] if "size" in kwargs else args[-1] if len(args) >= 2 else ()
    return read_numel(size, f"{op.path}: size") * _itemsize(kwargs, 8)


def _linspace_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    steps = kwargs["steps"] if "steps" in kwargs else args[2] if len(args) > 2 else 0
    return max(read_index(steps, f"{op.path}: steps"), 0) * _itemsize(kwargs)


def _eye_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    rows = kwargs["n"] if "n" in kwargs else args[0] if args else 0
    cols = kwargs["m"] if "m" in kwargs else args[1] if len(args) > 1 else None
    n = max(read_index(rows, f"{op.path}: n"), 0)
    m = n if cols is None else max(read_index(cols, f"{op.path}: m"), 0)
    return n * m * _itemsize(kwargs)


_HUGE = 1 << 62  # a range whose length overflows a float: refused by the quota, if torch takes it


def _arange_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    path = op.path
    bounds: dict[str, object] = {"start": 0, "step": 1}
    if len(args) == 1 and "end" not in kwargs:
        bounds["end"] = args[0]
    else:
        bounds.update(zip(("start", "end", "step"), args, strict=False))
    bounds.update((key, kwargs[key]) for key in ("start", "end", "step") if key in kwargs)
    if "end" not in bounds:
        return 0  # torch refuses a range without an end
    start, end, step = (
        read_real(bounds[key], f"{path}: {key}") for key in ("start", "end", "step")
    )
    integers = isinstance(start, int) and isinstance(end, int) and isinstance(step, int)
    count: int
    if isinstance(start, int) and isinstance(end, int) and isinstance(step, int):
        count = -((start - end) // step) if step else 0  # exact: ceil((end - start) / step)
    elif step == 0 or not all(math.isfinite(v) for v in (start, end, step)):
        count = 0  # torch refuses these
    else:
        span = (end - start) / step
        count = math.ceil(span) if math.isfinite(span) else _HUGE
    return max(count, 0) * _itemsize(kwargs, 8 if integers else 4)


_NUMBERS = frozenset({int, float, bool})

# ---- tensor methods (a rule for a method checks that its target is a tensor: a call whose
# target's type was not known looks the method up by its name alone)


_TENSOR = torch.Tensor  # one global lookup: this rule runs for most calls


def _elementwise_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, _TENSOR):
        return 0
    if not kwargs and (not args or (len(args) == 1 and type(args[0]) in _NUMBERS)):
        # elementwise with numbers (x + 1, x.relu()): what it makes is its target's size
        return target.numel() * max(target.element_size(), 4)
    return _broadcast_bytes([target, *_tensors(args), *_tensors(list(kwargs.values()))])


def _tolist_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return target.numel() * PY_FLOAT_BYTES if isinstance(target, torch.Tensor) else 0


def _repeat_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.Tensor):
        return 0
    if "repeats" in kwargs:
        repeats = read_dims(kwargs["repeats"], f"{op.path}: repeats")
    else:
        repeats = read_varargs_dims(args, f"{op.path}: repeats")
    return _nbytes(target) * count_of(repeats)


def _pieces_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.Tensor):
        return 0
    return _pieces(op.path, op.name, target, args, kwargs) * (TENSOR_HANDLE_BYTES + ITEM_BYTES)


def _selection_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.Tensor):
        return 0
    return _selected_bytes(op.name, target, args, kwargs)


def _matmul_method_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.Tensor):
        return 0
    if args and isinstance(args[0], torch.Tensor):
        return _matmul_bytes(target, args[0])
    return _broadcast_bytes([target, *_tensors(args), *_tensors(list(kwargs.values()))])


def _rmatmul_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.Tensor):
        return 0
    if args and isinstance(args[0], torch.Tensor):
        return _matmul_bytes(args[0], target)
    return _broadcast_bytes([target, *_tensors(args), *_tensors(list(kwargs.values()))])


def _view_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return 0  # a view: new metadata, the same storage


def _reshape_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return _nbytes(target) if isinstance(target, torch.Tensor) else 0  # may copy


def _index_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if isinstance(target, torch.Tensor) and _tensors(args):  # indexing by tensors makes a new one
        return _index_bytes(target, _tensors(args))
    return 0  # a view


def _dim_size(target: torch.Tensor, dim: object, what: str) -> int | None:
    """The size of ``target`` along ``dim`` (None: no such dimension, the call fails)."""
    axis = read_index(dim, what)
    if target.dim() == 0 or not -target.dim() <= axis < target.dim():
        return None
    return int(target.shape[axis])


def _pieces(path: str, name: str, target: torch.Tensor, args: Args, kwargs: Kwargs) -> int:
    """How many tensors ``split`` or ``chunk`` hands back (views: a tensor object each)."""
    key = "split_size_or_sections" if name == "split" else "chunks"
    how = kwargs[key] if key in kwargs else args[0] if args else 1
    dim = kwargs["dim"] if "dim" in kwargs else args[1] if len(args) > 1 else 0
    length = _dim_size(target, dim, f"{path}: dim")
    if length is None:
        return 0
    if name == "split" and isinstance(how, list | tuple):
        return len(how)  # sections: one piece each
    size = read_index(how, f"{path}: {key}")
    if size <= 0:
        return 1 if name == "split" and size == 0 and length == 0 else 0
    return -(-length // size) if name == "split" else min(size, max(length, 1))


def _selected_bytes(name: str, target: torch.Tensor, args: Args, kwargs: Kwargs) -> int:
    """``index_select(dim, index)``: a slice of ``target`` per index; ``gather(dim, index)``: an
    element per index. The index, not the target, says how large the result is."""
    index = kwargs.get("index", args[1] if len(args) > 1 else None)
    if not isinstance(index, torch.Tensor):
        return 0  # torch refuses it
    if name == "gather":
        return index.numel() * target.element_size()
    dim = kwargs["dim"] if "dim" in kwargs else args[0] if args else 0
    length = _dim_size(target, dim, f"Tensor.{name}: dim")
    if length is None:
        return _nbytes(target) * index.numel()  # a 0-dim target: one element per index
    return _nbytes(target) // max(length, 1) * index.numel()


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


def _distribution_bytes(
    name: str, distribution: torch.distributions.Distribution, args: Args, kwargs: Kwargs
) -> int:
    shape = tuple(distribution.batch_shape) + tuple(distribution.event_shape)
    if name in ("sample", "rsample"):
        drawn = kwargs["sample_shape"] if "sample_shape" in kwargs else args[0] if args else ()
        return (
            read_numel(drawn, f"Distribution.{name}: sample_shape") * max(math.prod(shape), 1) * 8
        )
    values = _tensors(args)
    if name == "log_prob" and values:
        if isinstance(distribution, torch.distributions.Categorical):
            shape = (*shape, distribution.logits.shape[-1])  # the value against every class
        broadcast = _broadcast(tuple(values[0].shape), shape)
        return 2 * math.prod(broadcast) * 8 if broadcast is not None else 0
    return math.prod(shape) * 8


def _batch_bytes(iterator: tud.dataloader._BaseDataLoaderIter) -> int:
    try:
        batch = getattr(iterator, "_index_sampler", None)
        return _loader_batch_bytes(iterator._dataset, getattr(batch, "batch_size", None) or 1)
    except (AttributeError, TypeError):
        pass
    return 0


def _loader_batch_bytes(dataset: tud.Dataset[object], size: int) -> int:
    """One batch of ``size`` samples of ``dataset``, collated."""
    if isinstance(dataset, tud.TensorDataset):
        return sum(_nbytes(t) // max(len(t), 1) for t in dataset.tensors) * size
    return _sample_bytes(dataset) * size


_SAMPLE_BYTES: weakref.WeakKeyDictionary[tud.Dataset[object], int] = weakref.WeakKeyDictionary()


def _sample_bytes(dataset: tud.Dataset[object]) -> int:
    """What one sample of a dataset that makes its samples (a torchvision dataset and its
    transforms: a Resize can make each far larger than what is stored) comes to, from its
    first sample, made once per dataset. 0 when it cannot be told (the batch is then checked
    once made)."""
    try:
        return _SAMPLE_BYTES[dataset]
    except (KeyError, TypeError):
        pass
    try:
        sample = dataset[0]
    except Exception:  # an empty or failing dataset: its batches fail the same way
        return 0
    fields = sample if isinstance(sample, tuple | list) else (sample,)
    size = sum(_nbytes(f) if isinstance(f, torch.Tensor) else ITEM_BYTES for f in fields)
    try:
        _SAMPLE_BYTES[dataset] = size
    except TypeError:
        pass
    return size


# ---- python's containers and values


def _insert_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return _inserted_bytes(args) if isinstance(target, list | dict) else 0


def _extend_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, list | dict):
        return 0
    iterated = _iterated_bytes(args[0]) if args else None
    return _inserted_bytes(args) if iterated is None else iterated


def _update_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, list | dict):
        return 0
    iterated = _iterated_bytes(args[0], pairs=True) if args else None
    return _inserted_bytes(args) if iterated is None else iterated


def _values_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return sum(_inserted_bytes([a]) for a in args)


def _collect_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    iterated = _iterated_bytes(args[0]) if len(args) == 1 else None
    return _values_bytes(op, target, args, kwargs) if iterated is None else iterated


def _collect_pairs_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    iterated = _iterated_bytes(args[0], pairs=True) if len(args) == 1 else None
    return _values_bytes(op, target, args, kwargs) if iterated is None else iterated


# ---- models, optimizers, loaders, distributions


def _forward_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return forward_bytes(target, args) if isinstance(target, nn.Module) else 0


def _module_copy_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return _module_bytes(target) if isinstance(target, nn.Module) else 0


def _module_move_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return 2 * _module_bytes(target) if isinstance(target, nn.Module) else 0  # double() doubles


def _optimizer_step_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.optim.Optimizer) or target.state:
        return 0
    # the first step makes the optimizer's state: up to three buffers per parameter
    defaults = target.defaults
    copies = 3 if defaults.get("amsgrad") or defaults.get("centered") else 2
    return copies * sum(_nbytes(p) for g in target.param_groups for p in g["params"])


def _batch_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return _batch_bytes(target) if isinstance(target, tud.dataloader._BaseDataLoaderIter) else 0


def _loader_iterator_bytes(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, tud.DataLoader):
        return 0
    return iterator_bytes(target.batch_sampler, target.dataset)


def _distribution_rule(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    if not isinstance(target, torch.distributions.Distribution):
        return 0
    return _distribution_bytes(op.name, target, args, kwargs)


def _nothing(op: Op, target: object, args: Args, kwargs: Kwargs) -> int:
    return 0


SizeEstimate = Callable[[Op, object, Args, Kwargs], int]
#: each size rule an op may declare (protocol/allowlist/facts.py SizeRule), bound to its estimate
RULES: dict[str, SizeEstimate] = {
    "nothing": _nothing,
    "elementwise": _elementwise_bytes,
    "tolist": _tolist_bytes,
    "repeat": _repeat_bytes,
    "pieces": _pieces_bytes,
    "selection": _selection_bytes,
    "matmul": _matmul_method_bytes,
    "rmatmul": _rmatmul_bytes,
    "view": _view_bytes,
    "reshape": _reshape_bytes,
    "index": _index_rule,
    "broadcast": _broadcast_rule,
    "creation": _creation_bytes,
    "full": _full_bytes,
    "randint": _randint_bytes,
    "arange": _arange_bytes,
    "linspace": _linspace_bytes,
    "eye": _eye_bytes,
    "like": _like_bytes,
    "data": _data_bytes,
    "legacy_tensor": _legacy_tensor_bytes,
    "numpy_copy": _numpy_copy_bytes,
    "concat": _concat_bytes,
    "matmul_args": _matmul_args_bytes,
    "linear": _linear_bytes,
    "layer": _layer_rule,
    "optimizer_state": _optimizer_state_bytes,
    "insert": _insert_bytes,
    "extend": _extend_bytes,
    "update": _update_bytes,
    "collect": _collect_bytes,
    "collect_pairs": _collect_pairs_bytes,
    "values": _values_bytes,
    "forward": _forward_rule,
    "module_copy": _module_copy_bytes,
    "module_move": _module_move_bytes,
    "optimizer_step": _optimizer_step_bytes,
    "batch": _batch_rule,
    "loader_iterator": _loader_iterator_bytes,
    "distribution": _distribution_rule,
}
