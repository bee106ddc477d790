"""How much memory an operation will take, estimated before it runs.

The owner checks this against the scientist's quota before running anything, so a request for
``torch.zeros(10**10)`` is refused without the owner ever holding those bytes. What an op really
took is charged afterwards (quota.py); the estimate only has to stop the large cases early:
creation from sizes, broadcasting, products, repeats, concatenations, ``tolist``, layers built
from sizes, what a layer's forward makes (a transposed convolution's stride or a convolution's
padding can ask for any size), samples drawn from a distribution, optimizer state, batches drawn
from a loader, and what is put into a list or a dict.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import weakref
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from torch import nn

from ..protocol import allowlist
from ..protocol.devices import MODULE_MOVES
from ..protocol.modules import LAYERS
from .quota import ITEM_BYTES, iterator_bytes, scalar_bytes

PY_FLOAT_BYTES = 32  # a float object and its slot in a list

_CREATION = {"zeros", "ones", "randn", "rand", "full", "empty"}
_CREATION_LIKE = {"zeros_like", "ones_like", "randn_like", "rand_like", "full_like"}
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
        # the first step makes the optimizer's state: up to three buffers per parameter
        defaults = target.defaults
        copies = 3 if defaults.get("amsgrad") or defaults.get("centered") else 2
        return copies * sum(_nbytes(p) for g in target.param_groups for p in g["params"])
    if isinstance(target, nn.Module) and name == "copy":
        return _module_bytes(target)
    if isinstance(target, nn.Module) and name in MODULE_MOVES:
        return 2 * _module_bytes(target)  # a move copies; double() doubles
    if isinstance(target, nn.Module) and name in ("__call__", "forward"):
        return _forward_bytes(target, args)
    if isinstance(target, torch.distributions.Distribution):
        return _distribution_bytes(name, target, args, kwargs)
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


def _module_bytes(module: nn.Module) -> int:
    return sum(_nbytes(t) for t in module.parameters()) + sum(_nbytes(t) for t in module.buffers())


def _function_bytes(path: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    if path == "torch.Tensor":  # torch.Tensor(2, 3): sizes (data arrived with the message)
        if args and all(type(a) is int for a in args):
            return math.prod(max(a, 0) for a in args) * 4
        if len(args) == 1 and isinstance(args[0], torch.Size):
            return _numel(args[0]) * 4
        return 0
    if path == "torch.from_numpy":  # a copy of the array
        return int(args[0].nbytes) if args and isinstance(args[0], np.ndarray) else 0
    if path == "torch.optim.Adagrad":  # its state is made with it
        return sum(_nbytes(t) for t in _tensors(args[:1]))
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
    if path in LAYERS:
        return _layer_bytes(path, args, kwargs)
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


@functools.cache
def _signature(path: str) -> inspect.Signature:
    return inspect.signature(LAYERS[path][0])


def _settings(path: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    cls = LAYERS[path][0]
    if issubclass(cls, nn.RNNBase):  # (*args, **kwargs) in torch: name the leading ones
        leading = ("input_size", "hidden_size", "num_layers")
        return {**dict(zip(leading, args, strict=False)), **kwargs}
    try:
        bound = _signature(path).bind(*args, **kwargs)
    except TypeError:
        return {}  # the call will fail
    return dict(bound.arguments)


def _ints(value: Any, default: int = 1) -> int:
    """The number of elements a size setting (an int or a tuple of ints) spans."""
    if type(value) is int:
        return max(value, 0)
    if isinstance(value, tuple | list) and all(type(v) is int for v in value):
        return math.prod(max(v, 0) for v in value)
    return default


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}


def _layer_bytes(path: str, args: list[Any], kwargs: dict[str, Any]) -> int:
    """The weights a layer is built with, from its settings."""
    name = path.rsplit(".", 1)[-1]
    a = _settings(path, args, kwargs)
    if name == "Linear":
        return (_ints(a.get("in_features"), 0) + 1) * _ints(a.get("out_features"), 0) * 4
    if name.startswith("Conv"):
        channels = _ints(a.get("in_channels"), 0) * _ints(a.get("out_channels"), 0)
        groups = max(_ints(a.get("groups", 1)), 1)
        kernel = _ints(a.get("kernel_size"))
        if name.endswith("2d") and type(a.get("kernel_size")) is int:
            kernel *= kernel
        return channels // groups * kernel * 4 + _ints(a.get("out_channels"), 0) * 4
    if name.startswith("BatchNorm"):
        return _ints(a.get("num_features"), 0) * 4 * 4
    if name == "LayerNorm":
        return 2 * _ints(a.get("normalized_shape"), 0) * 4
    if name == "Embedding":
        return _ints(a.get("num_embeddings"), 0) * _ints(a.get("embedding_dim"), 0) * 4
    if name == "PReLU":
        return _ints(a.get("num_parameters", 1)) * 4
    if name in _GATES:
        gates, inputs = _GATES[name], _ints(a.get("input_size"), 0)
        hidden = _ints(a.get("hidden_size"), 0)
        if name.endswith("Cell"):
            return gates * hidden * (inputs + hidden + 2) * 4
        layers = _ints(a.get("num_layers", 1))
        directions = 2 if a.get("bidirectional") else 1
        per_layer = gates * hidden * (max(inputs, hidden * directions) + hidden + 2)
        return layers * directions * per_layer * 4
    return 0


# ---- what a forward pass makes (the planned size of a layer's output, and of the outputs of
# the layers after it in a Sequential, as far as their shapes can be told)

Shape = tuple[int, ...]


def _forward_bytes(module: nn.Module, args: list[Any]) -> int:
    if not args or not isinstance(args[0], torch.Tensor):
        return 0
    x = args[0]
    total, _ = _through(module, tuple(x.shape), max(x.element_size(), 4), 0)
    return total


def _spatial(module: Any, sizes: Shape, *, transposed: bool = False) -> Shape | None:
    dims = len(sizes)

    def each(value: Any, default: int) -> tuple[int, ...] | None:
        if value is None:
            return (default,) * dims
        if type(value) is int:
            return (value,) * dims
        if isinstance(value, tuple) and len(value) == dims and all(type(v) is int for v in value):
            return value
        return None

    kernel, stride = each(module.kernel_size, 1), each(module.stride, 1)
    padding = each(getattr(module, "padding", 0), 0)
    dilation = each(getattr(module, "dilation", 1), 1)
    if kernel is None or stride is None or dilation is None:
        return None
    if padding is None:  # "same" keeps the size, "valid" pads nothing
        padding = (0,) * dims
        if getattr(module, "padding", None) == "same":
            return sizes
    if transposed:
        extra = each(getattr(module, "output_padding", 0), 0) or (0,) * dims
        return tuple(
            max((n - 1) * s - 2 * p + d * (k - 1) + e + 1, 0)
            for n, s, p, d, k, e in zip(
                sizes, stride, padding, dilation, kernel, extra, strict=True
            )
        )
    return tuple(
        max((n + 2 * p - d * (k - 1) - 1) // max(s, 1) + 1, 0)
        for n, s, p, d, k in zip(sizes, stride, padding, dilation, kernel, strict=True)
    )


_SAME_SHAPE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Softplus, nn.PReLU,
               nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.LogSoftmax,
               nn.Softmax, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm,
               nn.PixelShuffle, nn.PixelUnshuffle)  # fmt: skip


def _through(
    module: nn.Module, shape: Shape, itemsize: int, depth: int
) -> tuple[int, Shape | None]:
    """Bytes ``module`` makes from an input of ``shape``, and the shape it returns (None: it
    cannot be told)."""
    if depth > 64:
        return 0, None
    out: Shape | None = None
    if isinstance(module, nn.Sequential):
        total = 0
        for child in module:
            made, next_shape = _through(child, shape, itemsize, depth + 1)
            total += made
            if next_shape is None:
                return total, None
            shape = next_shape
        return total, shape
    if isinstance(module, _SAME_SHAPE):
        if isinstance(module, nn.PixelShuffle) and len(shape) >= 3:
            r = module.upscale_factor
            out = (*shape[:-3], shape[-3] // max(r * r, 1), shape[-2] * r, shape[-1] * r)
        else:
            out = shape
    elif isinstance(module, nn.modules.conv._ConvNd) and len(shape) >= 2:
        dims = len(module.kernel_size)
        sizes = _spatial(module, shape[-dims:], transposed=module.transposed)
        if sizes is not None:
            out = (*shape[: -dims - 1], module.out_channels, *sizes)
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and len(shape) >= 2:
        sizes = _spatial(module, shape[-2:])
        if sizes is not None:
            out = (*shape[:-2], *sizes)
    elif isinstance(module, nn.AdaptiveAvgPool2d) and len(shape) >= 2:
        size = module.output_size
        wanted = (size, size) if type(size) is int else size
        if isinstance(wanted, tuple) and len(wanted) == 2:
            out = (
                *shape[:-2],
                *(n if w is None else w for n, w in zip(shape[-2:], wanted, strict=True)),
            )
    elif isinstance(module, nn.Linear) and shape:
        out = (*shape[:-1], module.out_features)
    elif isinstance(module, nn.Flatten) and shape:
        start, end = module.start_dim % len(shape), module.end_dim % len(shape)
        out = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
    elif isinstance(module, nn.Embedding):
        out = (*shape, module.embedding_dim)
    elif isinstance(module, nn.RNNBase | nn.RNNCellBase) and shape:
        gates = _GATES.get(type(module).__name__, 4)
        hidden = module.hidden_size * (2 if getattr(module, "bidirectional", False) else 1)
        made = math.prod((*shape[:-1], hidden)) * itemsize * (gates + 2)  # kept for backward
        return made, None
    else:
        return 0, None  # a loss, or a layer whose output size is its input's or less
    return math.prod(out) * itemsize if out is not None else 0, out


def _distribution_bytes(
    name: str, distribution: torch.distributions.Distribution, args: list[Any], kwargs: Any
) -> int:
    shape = tuple(distribution.batch_shape) + tuple(distribution.event_shape)
    if name in ("sample", "rsample"):
        drawn = kwargs.get("sample_shape", args[0] if args else ())
        return (
            _numel(drawn if isinstance(drawn, torch.Size | list | tuple) else ())
            * max(math.prod(shape), 1)
            * 8
        )
    values = _tensors(args)
    if name == "log_prob" and values:
        if isinstance(distribution, torch.distributions.Categorical):
            shape = (*shape, distribution.logits.shape[-1])  # the value against every class
        broadcast = _broadcast(tuple(values[0].shape), shape)
        return 2 * math.prod(broadcast) * 8 if broadcast is not None else 0
    return math.prod(shape) * 8


def _batch_bytes(iterator: Any) -> int:
    try:
        dataset = iterator._dataset
        batch = getattr(iterator, "_index_sampler", None)
        size = getattr(batch, "batch_size", None) or 1
        if isinstance(dataset, tud.TensorDataset):
            return sum(_nbytes(t) // max(len(t), 1) for t in dataset.tensors) * size
        return _sample_bytes(dataset) * size
    except (AttributeError, TypeError):
        pass
    return 0


_SAMPLE_BYTES: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _sample_bytes(dataset: Any) -> int:
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
