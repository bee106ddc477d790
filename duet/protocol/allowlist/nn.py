"""torch.nn: building layers (``torch.nn.Linear(4, 2)``) and what a model does (call it, train it,
copy it, move it), each with its facts.

A model's call writes its buffers in training mode (and its input, when a layer works in place)
and may draw from the generator (dropout); a layer may hold its arguments (``Sequential(a, b)``
holds ``a`` and ``b``), and its call may hand back its input (Flatten, Dropout in eval mode).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Unpack

from torch import nn

from ...errors import UsageError
from ..devices import MODULE_MOVES, module_move
from ..modules import LAYERS, TUPLE_RESULTS, build_layer
from .declare import attributes, call_for_effect, function, kind_of
from .facts import Meta, Op, OpFacts, Returns, SizeRule

# layers whose initial weights are drawn (the others have none, or constant ones)
RANDOM_INIT = frozenset(
    f"torch.nn.{name}"
    for name in ("Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "Embedding",
                 "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
)  # fmt: skip


# The facts of a model's call that depend on the layers it holds, by class (an owner's own model
# may hold layers that are not on the allowlist): the owner reads them (owner/effects.py).
# layers whose forward draws from the generator in training mode
RANDOM_FORWARD_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.RReLU,
)  # fmt: skip
# layers whose forward always makes a new tensor (never hands back its input or a view of it)
FRESH_RESULT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.MaxPool2d,
    nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.Embedding, nn.RNNBase,
    nn.RNNCellBase, nn.modules.loss._Loss, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.LogSoftmax,
    nn.GELU, nn.Softplus, nn.PReLU, nn.PixelShuffle, nn.PixelUnshuffle, nn.ReLU, nn.LeakyReLU,
    nn.ELU, nn.ReLU6, nn.SiLU,
)  # fmt: skip


def _layer_kind(path: str) -> Returns:
    def kind(
        meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[str | None, Meta]:
        return "Module", {"layer": path}

    return kind


def _layer_result(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    # meta's "layer" is a layer's path, or absent (an owner's own model): no entry, one tensor
    return kind_of(TUPLE_RESULTS.get(meta.get("layer"), "Tensor"))  # type: ignore[call-overload]


def _same_module(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return "Module", {k: v for k, v in meta.items() if k == "layer"}


FUNCTIONS: dict[str, Op] = {
    # a layer may hold its arguments (Sequential(a, b) holds a and b)
    **{
        path: function(path, build_layer(path), _layer_kind(path), size="layer",
                       random=path in RANDOM_INIT, aliases="args")
        for path in LAYERS
    },
    "torch.nn.Module": function("torch.nn.Module", nn.Module, "Module", size="broadcast"),
}  # fmt: skip


def _module_call(module: nn.Module, *args: object, **kwargs: object) -> object:
    if type(module) is nn.Module:  # a container of a user's class: its forward stayed home
        raise UsageError(
            "this model arrived as a container of its layers: its forward stayed with the "
            "scientist (no code travels). Subclass sy.Module (class Net(sy.Module)) so that "
            "forward runs on your side, each step on the owner's"
        )
    return module(*args, **kwargs)


def _module_member(module: nn.Module, name: object) -> object:
    # reads torch's own member dicts: no attribute lookup by the peer's name
    if not isinstance(name, str):
        raise TypeError("a member name must be a string")
    for members in (module._modules, module._parameters, module._buffers):
        if name in members:
            return members[name]
    raise AttributeError(
        f"{type(module).__name__} has no layer, parameter or buffer named {name!r}"
    )


def _module_copy(module: nn.Module) -> nn.Module:
    # a module built from allowlisted layers only: copying it runs no code of the peer's
    return copy.deepcopy(module)


def _method(
    name: str,
    impl: Callable[..., object],
    returns: Returns,
    *,
    size: SizeRule,
    **facts: Unpack[OpFacts],
) -> Op:
    return Op(f"Module.{name}", "method", returns, impl=impl, size=size, **facts)


MODULE: dict[str, Op] = {
    # a layer may hand back its input (Flatten, Dropout in eval mode)
    **{name: _method(name, _module_call, _layer_result, mutates=True, writes="module_call",
                     random=True, aliases="args", size="forward")
       for name in ("__call__", "forward")},
    "member": _method("member", _module_member, None, aliases="target", size="nothing"),
    "parameters": _method("parameters", lambda m, *a, **k: list(m.parameters(*a, **k)), "List",
                          aliases="target", size="nothing"),
    "named_parameters": _method("named_parameters",
                                lambda m, *a, **k: list(m.named_parameters(*a, **k)), "List",
                                aliases="target", size="nothing"),
    "children": _method("children", lambda m: list(m.children()), "List", aliases="target",
                        size="nothing"),
    "state_dict": _method("state_dict", lambda m: dict(m.state_dict()), "Dict", aliases="target",
                          size="nothing"),
    "copy": _method("copy", _module_copy, "Module", size="module_copy"),
    "load_state_dict": _method(
        "load_state_dict", lambda m, sd, strict=True: (m.load_state_dict(sd, strict=strict), None)[1],
        "None", mutates=True,
                               writes="target_deep", size="nothing"),
    **{name: _method(name, call_for_effect(name), "None", mutates=True, writes="target_deep",
                     size="nothing")
       for name in ("train", "eval", "zero_grad")},
    "requires_grad_": _method("requires_grad_", call_for_effect("requires_grad_"), "None",
                              mutates=True, writes="target_deep", aliases="target",
                              size="nothing", makes_leaves=True),
    **attributes("Module", {"training": "Bool"}, size="nothing", aliases=None),
    **attributes("Module", {"weight": "Tensor", "bias": "Tensor"}, size="nothing",
                 aliases="target"),
    # device and precision moves run where the model is: they write all of it
    **{name: _method(name, module_move(name), _same_module, mutates=True, writes="target_deep",
                     aliases="target", size="module_move", makes_leaves=True)
       for name in MODULE_MOVES},
}  # fmt: skip
