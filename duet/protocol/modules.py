"""nn.Module specs: a model travels as its layer types, their constructor settings and weights.

No code travels. A module is rebuilt on the other side from a fixed table of layer classes; a
module of any other class (a user's own subclass) travels as a plain container of its children,
whose ``forward`` stays with the sender.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ProtocolError

if TYPE_CHECKING:
    from .serde import Decoder, Encoder

# class path -> (class, the constructor settings read back from an instance's attributes)
LAYERS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "torch.nn.Linear": (nn.Linear, ("in_features", "out_features", "bias")),
    "torch.nn.Conv2d": (
        nn.Conv2d,
        (
            "in_channels",
            "out_channels",
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "groups",
            "bias",
            "padding_mode",
        ),
    ),  # fmt: skip
    "torch.nn.MaxPool2d": (
        nn.MaxPool2d,
        ("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"),
    ),
    "torch.nn.Dropout": (nn.Dropout, ("p", "inplace")),
    "torch.nn.Dropout2d": (nn.Dropout2d, ("p", "inplace")),
    "torch.nn.ReLU": (nn.ReLU, ("inplace",)),
    "torch.nn.Sigmoid": (nn.Sigmoid, ()),
    "torch.nn.Tanh": (nn.Tanh, ()),
    "torch.nn.Flatten": (nn.Flatten, ("start_dim", "end_dim")),
    "torch.nn.LogSoftmax": (nn.LogSoftmax, ("dim",)),
    "torch.nn.Softmax": (nn.Softmax, ("dim",)),
    "torch.nn.BatchNorm1d": (
        nn.BatchNorm1d,
        ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    ),
    "torch.nn.BatchNorm2d": (
        nn.BatchNorm2d,
        ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    ),
    "torch.nn.Sequential": (nn.Sequential, ()),
}
CONTAINER = "torch.nn.Module"
_BY_CLASS = {cls: path for path, (cls, _) in LAYERS.items()}
MAX_CHILDREN = 10_000


def _setting(module: nn.Module, name: str) -> Any:
    value = getattr(module, name)
    if name == "bias" and not isinstance(value, bool):
        return value is not None
    return value


def encode_module(module: nn.Module, encoder: Encoder) -> dict[str, Any]:
    path = _BY_CLASS.get(type(module), CONTAINER)
    config = {}
    if path != CONTAINER:
        config = {name: encoder.encode(_setting(module, name)) for name in LAYERS[path][1]}
    children = [[name, encode_module(child, encoder)] for name, child in module.named_children()]
    state = [
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


def decode_module(data: dict[str, Any], decoder: Decoder, depth: int) -> nn.Module:
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
    elif isinstance(path, str) and path in LAYERS and path != "torch.nn.Sequential":
        cls, allowed = LAYERS[path]
        if not set(config) <= set(allowed):
            raise ProtocolError(
                f"{path} does not take the settings {sorted(set(config) - set(allowed))}"
            )
        kwargs = {name: decoder.decode(value, depth + 1) for name, value in config.items()}
        try:
            module = cls(**kwargs)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ProtocolError(f"cannot build {path} with {kwargs}: {exc}") from exc
    elif path == "torch.nn.Sequential":
        module = nn.Sequential()
    else:
        raise ProtocolError(f"module type {path!r} is not on the allowlist")
    for pair in children:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ProtocolError("module children are [name, spec] pairs")
        name, spec = pair
        if not name.isidentifier() and not name.isdigit():
            raise ProtocolError(f"invalid child module name {name!r}")
        if not isinstance(spec, dict) or spec.get("$") != "module":
            raise ProtocolError(f"child {name!r} is not a module spec")
        if name in module._modules:
            raise ProtocolError(f"duplicate child module {name!r}")
        module.add_module(name, decode_module(spec, decoder, depth + 1))
    _load_state(module, state, decoder, depth)
    module.train(bool(data.get("training", True)))
    return module


def _load_state(module: nn.Module, state: list[Any], decoder: Decoder, depth: int) -> None:
    own: dict[str, torch.Tensor] = dict(module.named_parameters(recurse=False))
    own.update(dict(module.named_buffers(recurse=False)))
    for pair in state:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ProtocolError("module state entries are [name, tensor] pairs")
        name, encoded = pair
        if not isinstance(encoded, dict) or encoded.get("$") != "tensor":
            raise ProtocolError(f"state entry {name!r} is not a tensor")
        value = decoder.decode(encoded, depth + 1)
        if name in own:
            target = own[name]
            if target.shape != value.shape or target.dtype != value.dtype:
                raise ProtocolError(
                    f"state {name!r} has shape {list(value.shape)} {value.dtype}; the layer needs "
                    f"{list(target.shape)} {target.dtype}"
                )
            with torch.no_grad():
                target.copy_(value)
        elif type(module) is nn.Module and name.isidentifier() and name not in module._modules:
            # a user's container may hold its own parameters (e.g. a bare nn.Parameter)
            if isinstance(value, nn.Parameter):
                module.register_parameter(name, value)
            else:
                module.register_buffer(name, value)
        else:
            raise ProtocolError(f"{type(module).__name__} has no parameter or buffer {name!r}")
