"""nn.Module specs: a model travels as its layer types, their constructor settings and weights.

No code travels. A module is rebuilt on the other side from a fixed table of layer classes; a
module of any other class (a user's own subclass) travels as a plain container of its children,
whose ``forward`` stays with the sender. One of torch's own layers that is not in the table is
refused when it is sent: as a container it would arrive without the forward that makes it what
it is.

A layer is rebuilt without memory of its own (on the meta device) and then given exactly the
weights that arrived: its settings cannot make the receiver allocate more than the frame
carried, and a layer whose weights did not all arrive is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ..errors import NotAllowed, ProtocolError

if TYPE_CHECKING:
    from .allowlist.facts import KindSpec
    from .serde import Decoder, Encoder, JSONValue

_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "bias", "padding_mode")  # fmt: skip
_CONV_TRANSPOSE = ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                   "output_padding", "groups", "bias", "dilation", "padding_mode")  # fmt: skip
_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_RNN = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
)
_CELL = ("input_size", "hidden_size", "bias")

# class path -> (class, the constructor settings read back from an instance's attributes)
LAYERS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "torch.nn.Linear": (nn.Linear, ("in_features", "out_features", "bias")),
    "torch.nn.Conv1d": (nn.Conv1d, _CONV),
    "torch.nn.Conv2d": (nn.Conv2d, _CONV),
    "torch.nn.ConvTranspose1d": (nn.ConvTranspose1d, _CONV_TRANSPOSE),
    "torch.nn.ConvTranspose2d": (nn.ConvTranspose2d, _CONV_TRANSPOSE),
    "torch.nn.MaxPool2d": (
        nn.MaxPool2d,
        ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    ),
    "torch.nn.AvgPool2d": (
        nn.AvgPool2d,
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    ),
    "torch.nn.AdaptiveAvgPool2d": (nn.AdaptiveAvgPool2d, ("output_size",)),
    "torch.nn.Dropout": (nn.Dropout, ("p", "inplace")),
    "torch.nn.Dropout2d": (nn.Dropout2d, ("p", "inplace")),
    "torch.nn.ReLU": (nn.ReLU, ("inplace",)),
    "torch.nn.LeakyReLU": (nn.LeakyReLU, ("negative_slope", "inplace")),
    "torch.nn.ELU": (nn.ELU, ("alpha", "inplace")),
    "torch.nn.ReLU6": (nn.ReLU6, ("inplace",)),
    "torch.nn.SiLU": (nn.SiLU, ("inplace",)),
    "torch.nn.GELU": (nn.GELU, ("approximate",)),
    "torch.nn.Softplus": (nn.Softplus, ("beta", "threshold")),
    "torch.nn.PReLU": (nn.PReLU, ("num_parameters",)),  # its weight travels as state
    "torch.nn.Sigmoid": (nn.Sigmoid, ()),
    "torch.nn.Tanh": (nn.Tanh, ()),
    "torch.nn.Identity": (nn.Identity, ()),
    "torch.nn.Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "torch.nn.LogSoftmax": (nn.LogSoftmax, ("dim",)),
    "torch.nn.Softmax": (nn.Softmax, ("dim",)),
    "torch.nn.PixelShuffle": (nn.PixelShuffle, ("upscale_factor",)),
    "torch.nn.PixelUnshuffle": (nn.PixelUnshuffle, ("downscale_factor",)),
    "torch.nn.BatchNorm1d": (nn.BatchNorm1d, _NORM),
    "torch.nn.BatchNorm2d": (nn.BatchNorm2d, _NORM),
    "torch.nn.LayerNorm": (nn.LayerNorm, ("normalized_shape", "eps", "elementwise_affine", "bias")),
    "torch.nn.Embedding": (
        nn.Embedding,
        (
            "num_embeddings",
            "embedding_dim",
            "padding_idx",
            "max_norm",
            "norm_type",
            "scale_grad_by_freq",
            "sparse",
        ),
    ),  # fmt: skip
    "torch.nn.LSTM": (nn.LSTM, (*_RNN, "proj_size")),
    "torch.nn.GRU": (nn.GRU, _RNN),
    "torch.nn.RNN": (nn.RNN, (*_RNN, "nonlinearity")),
    "torch.nn.LSTMCell": (nn.LSTMCell, _CELL),
    "torch.nn.GRUCell": (nn.GRUCell, _CELL),
    "torch.nn.RNNCell": (nn.RNNCell, (*_CELL, "nonlinearity")),
    "torch.nn.Sequential": (nn.Sequential, ()),
    # losses: a class weight travels as a buffer
    "torch.nn.MSELoss": (nn.MSELoss, ("reduction",)),
    "torch.nn.L1Loss": (nn.L1Loss, ("reduction",)),
    "torch.nn.SmoothL1Loss": (nn.SmoothL1Loss, ("reduction", "beta")),
    "torch.nn.HuberLoss": (nn.HuberLoss, ("reduction", "delta")),
    "torch.nn.NLLLoss": (nn.NLLLoss, ("ignore_index", "reduction")),
    "torch.nn.CrossEntropyLoss": (
        nn.CrossEntropyLoss,
        ("ignore_index", "reduction", "label_smoothing"),
    ),
    "torch.nn.BCELoss": (nn.BCELoss, ("reduction",)),
    "torch.nn.BCEWithLogitsLoss": (nn.BCEWithLogitsLoss, ("reduction",)),
    "torch.nn.KLDivLoss": (nn.KLDivLoss, ("reduction", "log_target")),
}
LOSSES = frozenset(path for path in LAYERS if path.endswith("Loss"))
# what a layer's forward returns when it is not one tensor: (output, (h, c)) and friends
TUPLE_RESULTS: dict[str, KindSpec] = {
    "torch.nn.LSTM": ("Tensor", ("Tensor", "Tensor")),
    "torch.nn.GRU": ("Tensor", "Tensor"),
    "torch.nn.RNN": ("Tensor", "Tensor"),
    "torch.nn.LSTMCell": ("Tensor", "Tensor"),
}
CONTAINER = "torch.nn.Module"
_BY_CLASS = {cls: path for path, (cls, _) in LAYERS.items()}
_CONTAINER_CLASSES = (nn.Module, nn.ModuleList, nn.ModuleDict)
MAX_CHILDREN = 10_000


def check_layer(module: nn.Module) -> nn.Module:
    """Refuse settings whose forward would write what the owner does not follow (every write
    a layer's forward makes is declared in the allowlist: buffers, an ``inplace`` input).
    Returns the layer."""
    if isinstance(module, nn.Embedding):
        if module.max_norm is not None:  # its forward renormalizes the weights in place
            raise NotAllowed("Embedding(max_norm=...) is not supported; leave max_norm=None")
        if module.sparse:
            raise NotAllowed("Embedding(sparse=True) is not supported; leave sparse=False")
    return module


MAX_RNN_LAYERS = 64  # building one takes time quadratic in its layers (10**4: 15 s)


def check_settings(
    cls: type[nn.Module], args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Refuse, before a layer is built, settings whose building alone would hold the owner
    (a recurrent layer of 10**5 layers takes minutes to construct, whatever its weights)."""
    if issubclass(cls, nn.RNNBase):
        layers = kwargs.get("num_layers", args[2] if len(args) > 2 else 1)
        if type(layers) is not int or not 1 <= layers <= MAX_RNN_LAYERS:
            raise NotAllowed(
                f"{cls.__name__}(num_layers={layers!r}): the owner builds recurrent layers of "
                f"1 to {MAX_RNN_LAYERS} layers"
            )


def _rnn_weights(kwargs: dict[str, object]) -> int:
    """How many weight tensors a recurrent layer with these settings has."""
    per = 4 if kwargs.get("bias", True) else 2
    if kwargs.get("proj_size"):
        per += 1
    directions = 2 if kwargs.get("bidirectional") else 1
    layers = kwargs.get("num_layers", 1)
    return per * directions * (layers if type(layers) is int else 1)


def build_layer(path: str) -> Callable[..., nn.Module]:
    """The owner's constructor for a layer (``torch.nn.Linear(4, 2)`` from the scientist)."""
    cls = LAYERS[path][0]

    def build(*args: object, **kwargs: object) -> nn.Module:
        check_settings(cls, args, kwargs)
        module = check_layer(cls(*args, **kwargs))
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.device.type not in ("cpu", "cuda"):
                raise NotAllowed(f"layers on device {tensor.device} are not supported")
        return module

    build.__name__ = build.__qualname__ = cls.__name__
    return build


def layer_path(module: nn.Module) -> str:
    """The allowlist path a module travels as: a layer the owner rebuilds, or CONTAINER (a
    module of the user's own class: its children travel, its forward stays with the sender).

    Raises NotAllowed for torch's own layers the owner cannot rebuild: sent as containers
    they would lose the forward that makes them what they are."""
    cls = type(module)
    path = _BY_CLASS.get(cls)
    if path is not None:
        return path
    if cls in _CONTAINER_CLASSES:
        return CONTAINER
    for base in cls.__mro__[1:]:  # a subclass that only renames a layer travels as the layer
        base_path = _BY_CLASS.get(base)
        if base_path is not None and cls.forward is base.forward:  # type: ignore[attr-defined]
            return base_path
    if not cls.__module__.startswith("torch."):
        return CONTAINER
    known = ", ".join(sorted(p.removeprefix("torch.nn.") for p in LAYERS))
    name = (
        f"torch.nn.{cls.__name__}" if getattr(nn, cls.__name__, None) is cls else cls.__qualname__
    )
    raise NotAllowed(
        f"{name} ({cls.__module__}) cannot be sent: the owner rebuilds only these "
        f"layers: {known}. Replace it, or compute it in an sy.Module's forward from remote "
        "torch functions"
    )


def _setting(module: nn.Module, name: str) -> object:
    value = getattr(module, name)
    if name == "bias" and not isinstance(value, bool):
        return value is not None
    return value


def encode_module(module: nn.Module, encoder: Encoder) -> dict[str, JSONValue]:
    path = layer_path(module)
    config: dict[str, JSONValue] = {}
    if path != CONTAINER:
        config = {name: encoder.encode(_setting(module, name)) for name in LAYERS[path][1]}
    children: list[JSONValue] = [
        [name, encode_module(child, encoder)] for name, child in module.named_children()
    ]
    state: list[JSONValue] = [
        [name, encoder.encode_tensor(t)]
        for name, t in list(module.named_parameters(recurse=False))
        + list(module.named_buffers(recurse=False))
        if t is not None
    ]
    return {
        "$": "module",
        "type": path,
        "config": config,
        "children": children,
        "state": state,
        "training": module.training,
    }


def decode_module(data: dict[str, JSONValue], decoder: Decoder, depth: int) -> nn.Module:
    path = data.get("type")
    config = data.get("config")
    children = data.get("children")
    state = data.get("state")
    if (
        not isinstance(config, dict)
        or not isinstance(children, list)
        or not isinstance(state, list)
    ):
        raise ProtocolError("a module spec needs config, children and state")
    if len(children) > MAX_CHILDREN:
        raise ProtocolError(f"a module may have at most {MAX_CHILDREN} children")
    if path == CONTAINER:
        if config:
            raise ProtocolError("a plain module container takes no settings")
        module: nn.Module = nn.Module()
        required: set[str] = set()
    elif isinstance(path, str) and path in LAYERS and path != "torch.nn.Sequential":
        cls, allowed = LAYERS[path]
        if not set(config) <= set(allowed):
            raise ProtocolError(
                f"{path} does not take the settings {sorted(set(config) - set(allowed))}"
            )
        kwargs = {name: decoder.decode(value, depth + 1) for name, value in config.items()}
        try:
            check_settings(cls, (), kwargs)
            if issubclass(cls, nn.RNNBase) and len(state) < _rnn_weights(kwargs):
                # its weights must arrive with it: building costs no more than what was sent
                raise ValueError(f"{len(state)} state entries for {_rnn_weights(kwargs)} weights")
            # built without memory (on the meta device): the settings alone could ask for any
            # size, the weights that arrive with them are bounded by the frame
            with torch.device("meta"):
                module = check_layer(cls(**kwargs))
        except (TypeError, ValueError, RuntimeError, NotAllowed) as exc:
            raise ProtocolError(f"cannot build {path} with {kwargs}: {exc}") from exc
        required = {name for name, _ in module.named_parameters(recurse=False)}
        required.update(name for name, _ in module.named_buffers(recurse=False))
    elif path == "torch.nn.Sequential":
        module = nn.Sequential()
        required = set()
    else:
        raise ProtocolError(f"module type {path!r} is not on the allowlist")
    for pair in children:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ProtocolError("module children are [name, spec] pairs")
        name, spec = pair
        assert isinstance(name, str)  # checked above (for mypy: unpacking loses it)
        if not name.isidentifier() and not name.isdigit():
            raise ProtocolError(f"invalid child module name {name!r}")
        if not isinstance(spec, dict) or spec.get("$") != "module":
            raise ProtocolError(f"child {name!r} is not a module spec")
        if name in module._modules:
            raise ProtocolError(f"duplicate child module {name!r}")
        module.add_module(name, decode_module(spec, decoder, depth + 1))
    loaded = _load_state(module, state, decoder, depth)
    if required - loaded:  # a layer is whole, never part meta
        raise ProtocolError(f"{path} arrived without its {sorted(required - loaded)}")
    module.train(bool(data.get("training", True)))
    return module


def _load_state(
    module: nn.Module, state: list[JSONValue], decoder: Decoder, depth: int
) -> set[str]:
    """Put the state that arrived into ``module``; returns the names filled."""
    own: dict[str, torch.Tensor] = dict(module.named_parameters(recurse=False))
    own.update(dict(module.named_buffers(recurse=False)))
    loaded: set[str] = set()
    for pair in state:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ProtocolError("module state entries are [name, tensor] pairs")
        name, encoded = pair
        assert isinstance(name, str)  # checked above (for mypy: unpacking loses it)
        if not isinstance(encoded, dict) or encoded.get("$") != "tensor":
            raise ProtocolError(f"state entry {name!r} is not a tensor")
        if name in loaded:
            raise ProtocolError(f"state entry {name!r} arrived twice")
        # a "tensor" spec decodes to a tensor (or raises)
        value = cast(torch.Tensor, decoder.decode(encoded, depth + 1))
        if name in own:
            target = own[name]
            if target.shape != value.shape or not _same_kind(target.dtype, value.dtype):
                raise ProtocolError(
                    f"state {name!r} has shape {list(value.shape)} {value.dtype}; the layer needs "
                    f"{list(target.shape)} {target.dtype}"
                )
            # the decoded tensor is fresh: the layer holds it as it is (in the precision it
            # arrived in, so a model moved to double() stays so)
            if name in module._parameters:
                grad = (
                    value.requires_grad if isinstance(value, nn.Parameter) else target.requires_grad
                )
                module._parameters[name] = nn.Parameter(value.detach(), grad)
            else:
                module._buffers[name] = value.detach()
        elif name in module._buffers and module._buffers[name] is None:
            module._buffers[name] = value.detach()  # a loss's class weights
        elif type(module) is nn.Module and name.isidentifier() and name not in module._modules:
            # a user's container may hold its own parameters (e.g. a bare nn.Parameter)
            if isinstance(value, nn.Parameter):
                module.register_parameter(name, value)
            else:
                module.register_buffer(name, value)
        else:
            raise ProtocolError(f"{type(module).__name__} has no parameter or buffer {name!r}")
        loaded.add(name)
    if isinstance(module, nn.RNNBase):
        module._init_flat_weights()  # it keeps a list of its weights
    return loaded


def _same_kind(a: torch.dtype, b: torch.dtype) -> bool:
    if a == b:
        return True
    return (a.is_floating_point and b.is_floating_point) or (a.is_complex and b.is_complex)


def match_dtypes(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give ``module``'s floating tensors the precision of the same-named tensors in ``state``
    (so that ``load_state_dict`` keeps a model's ``double()`` or ``half()``)."""
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        other = state.get(name)
        if (
            other is not None
            and other.dtype != tensor.dtype
            and _same_kind(tensor.dtype, other.dtype)
        ):
            tensor.data = tensor.data.to(other.dtype)
