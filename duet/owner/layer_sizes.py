"""What a layer takes, estimated before it is built or run: the weights a layer made from its
settings holds (``nn.Linear(10**6, 10**6)``), and what its forward pass makes, and the forward
passes of the layers after it in a Sequential, as far as their shapes can be told (a transposed
convolution's stride or a convolution's padding can ask for any size). Part of the owner's size
estimates (sizes.py binds them to the ``layer`` and ``forward`` rules).
"""

from __future__ import annotations

import functools
import inspect
import math
import weakref

import torch
from torch import nn

from ..protocol.modules import LAYERS
from .size_args import Args, Kwargs, count_of, read_dims, read_index, read_numel

# one parameter of an RNN layer besides its data (the Parameter, its slot in the layer's flat
# weights: 1 to 2.4 KB measured): num_layers makes four per layer and direction
PARAMETER_BYTES = 2048


@functools.cache
def _signature(path: str) -> inspect.Signature:
    return inspect.signature(LAYERS[path][0])


def _settings(path: str, args: Args, kwargs: Kwargs) -> dict[str, object]:
    cls = LAYERS[path][0]
    if issubclass(cls, nn.RNNBase):  # (*args, **kwargs) in torch: name the leading ones
        leading = ("input_size", "hidden_size", "num_layers")
        return {**dict(zip(leading, args, strict=False)), **kwargs}
    try:
        bound = _signature(path).bind(*args, **kwargs)
    except TypeError:
        return {}  # the call will fail
    return dict(bound.arguments)


def _ints(settings: Kwargs, key: str, path: str, default: int = 1) -> int:
    """The number of elements a size setting (an int, a sequence of them, a tensor: read as
    torch reads it) spans; ``default`` when it is not given."""
    value = settings.get(key)
    if value is None:
        return default
    return read_numel(value, f"{path}: {key}")


_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}


def layer_bytes(path: str, args: Args, kwargs: Kwargs) -> int:
    """The weights a layer is built with, from its settings."""
    name = path.rsplit(".", 1)[-1]
    a = _settings(path, args, kwargs)

    def ints(key: str, default: int = 1) -> int:
        return _ints(a, key, path, default)

    if name == "Linear":
        return (ints("in_features", 0) + 1) * ints("out_features", 0) * 4
    if name.startswith("Conv"):
        channels = ints("in_channels", 0) * ints("out_channels", 0)
        groups = max(ints("groups"), 1)
        sides = (
            [1]
            if a.get("kernel_size") is None
            else read_dims(a["kernel_size"], f"{path}: kernel_size")
        )
        kernel = count_of(sides)
        if name.endswith("2d") and len(sides) == 1:
            kernel *= kernel  # one number: a square kernel
        return channels // groups * kernel * 4 + ints("out_channels", 0) * 4
    if name.startswith("BatchNorm"):
        return ints("num_features", 0) * 4 * 4
    if name == "LayerNorm":
        return 2 * ints("normalized_shape", 0) * 4
    if name == "Embedding":
        return ints("num_embeddings", 0) * ints("embedding_dim", 0) * 4
    if name == "PReLU":
        return ints("num_parameters") * 4
    if name in _GATES:
        gates, inputs = _GATES[name], ints("input_size", 0)
        hidden = ints("hidden_size", 0)
        if name.endswith("Cell"):
            return gates * hidden * (inputs + hidden + 2) * 4 + 4 * PARAMETER_BYTES
        layers = ints("num_layers")
        directions = 2 if a.get("bidirectional") else 1
        per_layer = gates * hidden * (max(inputs, hidden * directions) + hidden + 2)
        return layers * directions * (per_layer * 4 + 4 * PARAMETER_BYTES)
    return 0


# ---- what a forward pass makes (the planned size of a layer's output, and of the outputs of
# the layers after it in a Sequential, as far as their shapes can be told)

Shape = tuple[int, ...]


# a layer's settings never change once it is built (no op on the allowlist sets them): what
# its forward makes from a shape is worked out once per layer and shape
_FORWARD: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Shape, int], int]] = (
    weakref.WeakKeyDictionary()
)


def forward_bytes(module: nn.Module, args: Args) -> int:
    if not args or not isinstance(args[0], torch.Tensor):
        return 0
    x = args[0]
    key = (tuple(x.shape), max(x.element_size(), 4))
    known = _FORWARD.get(module)
    if known is not None and key in known:
        return known[key]
    total, _ = _through(module, key[0], key[1], 0)
    _FORWARD.setdefault(module, {})[key] = total
    return total


def _spatial(module: nn.Module, sizes: Shape, *, transposed: bool = False) -> Shape | None:
    dims = len(sizes)

    def each(setting: str, default: int) -> tuple[int, ...] | None:
        value = getattr(module, setting, default)
        if value is None:
            return (default,) * dims
        if isinstance(value, str):
            return None  # padding="same" or "valid"
        read = read_dims(value, f"{type(module).__name__}: {setting}")
        if len(read) == 1 and not isinstance(value, list | tuple):
            return (read[0],) * dims
        return tuple(read) if len(read) == dims else None

    kernel, stride = each("kernel_size", 1), each("stride", 1)
    padding = each("padding", 0)
    dilation = each("dilation", 1)
    if kernel is None or stride is None or dilation is None:
        return None
    if padding is None:  # "same" keeps the size, "valid" pads nothing
        padding = (0,) * dims
        if getattr(module, "padding", None) == "same":
            return sizes
    if transposed:
        extra = each("output_padding", 0) or (0,) * dims
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

    def setting(name: str) -> int:  # a layer's size setting, as torch reads it
        return read_index(getattr(module, name), f"{type(module).__name__}: {name}")

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
            r = setting("upscale_factor")
            out = (*shape[:-3], shape[-3] // max(r * r, 1), shape[-2] * r, shape[-1] * r)
        else:
            out = shape
    elif isinstance(module, nn.modules.conv._ConvNd) and len(shape) >= 2:
        dims = len(module.kernel_size)
        sizes = _spatial(module, shape[-dims:], transposed=module.transposed)
        if sizes is not None:
            out = (*shape[: -dims - 1], setting("out_channels"), *sizes)
    elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and len(shape) >= 2:
        sizes = _spatial(module, shape[-2:])
        if sizes is not None:
            out = (*shape[:-2], *sizes)
    elif isinstance(module, nn.AdaptiveAvgPool2d) and len(shape) >= 2:
        size = module.output_size
        what = "AdaptiveAvgPool2d: output_size"
        wanted: list[int | None]
        if isinstance(size, list | tuple):  # None keeps that side of the input
            wanted = [
                None if w is None else read_index(w, f"{what}[{i}]") for i, w in enumerate(size)
            ]
        else:
            read = read_dims(size, what)
            wanted = [*read, *read] if len(read) == 1 else [*read]
        if len(wanted) == 2:
            out = (
                *shape[:-2],
                *(n if w is None else w for n, w in zip(shape[-2:], wanted, strict=True)),
            )
    elif isinstance(module, nn.Linear) and shape:
        out = (*shape[:-1], setting("out_features"))
    elif isinstance(module, nn.Flatten) and shape:
        start, end = setting("start_dim") % len(shape), setting("end_dim") % len(shape)
        out = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
    elif isinstance(module, nn.Embedding):
        out = (*shape, setting("embedding_dim"))
    elif isinstance(module, nn.RNNBase | nn.RNNCellBase) and shape:
        gates = _GATES.get(type(module).__name__, 4)
        hidden = setting("hidden_size") * (2 if getattr(module, "bidirectional", False) else 1)
        made = math.prod((*shape[:-1], hidden)) * itemsize * (gates + 2)  # kept for backward
        return made, None
    else:
        return 0, None  # a loss, or a layer whose output size is its input's or less
    return count_of(list(out)) * itemsize if out is not None else 0, out
