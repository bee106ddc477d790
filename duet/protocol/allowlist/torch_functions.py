"""torch's functions (``torch.zeros``, ``torch.cat``, ``torch.nn.functional.relu``), each with its
facts. Most make their tensor arguments' broadcast ("broadcast"); those made from sizes say how
the sizes are read, so that ``torch.zeros(10**10)`` is refused before anything is allocated."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from ..devices import make_device
from .declare import function, pair_if_dim
from .facts import Alias, Meta, Op, SizeRule, Write


def _torch(
    names: Iterable[str],
    *,
    size: SizeRule,
    random: bool = False,
    aliases: Alias | None = None,
    writes: Write | None = None,
    module: ModuleType = torch,
    prefix: str = "torch.",
) -> dict[str, Op]:
    # `name` is a fixed entry of the lists below, never a peer's string
    return {
        prefix + name: function(
            prefix + name, getattr(module, name), size=size, random=random, aliases=aliases,
            writes=writes,
        )
        for name in names
    }  # fmt: skip


def _functional(
    names: Iterable[str],
    *,
    size: SizeRule,
    random: bool = False,
    aliases: Alias | None = None,
    writes: Write | None = None,
) -> dict[str, Op]:
    return _torch(names, size=size, random=random, aliases=aliases, writes=writes,
                  module=functional, prefix="torch.nn.functional.")  # fmt: skip


def _manual_seed(seed: int) -> None:
    torch.manual_seed(seed)
    return None


def _cuda_is_available() -> bool:
    return bool(torch.cuda.is_available())


def _from_numpy(array: object) -> torch.Tensor:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy array (got {type(array).__name__})")
    # a copy: a tensor sharing the array's memory would be an alias the owner does not follow
    return torch.from_numpy(np.array(array, copy=True))


# args: sizes or data of any type, handed on to torch as torch.Tensor(...) takes them
def _legacy_tensor(*args: Any) -> torch.Tensor:
    """``torch.Tensor(data)`` or ``torch.Tensor(*sizes)``: a float tensor. Made from sizes it is
    zeros, never uninitialized memory (which could hold what the owner's process freed)."""
    if not args:
        return torch.empty(0)
    if all(type(a) is int for a in args) or (len(args) == 1 and isinstance(args[0], torch.Size)):
        return torch.zeros(*args)
    if len(args) == 1:
        data = args[0]
        if isinstance(data, torch.Tensor):
            return torch.Tensor(data)  # the tensor itself, as torch does
        return torch.tensor(data, dtype=torch.get_default_dtype())
    raise TypeError("torch.Tensor takes data (a list, a tensor) or sizes (integers)")


def _extreme(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return pair_if_dim(meta, args[1:], kwargs)  # torch.max(x, dim): values and indices


FUNCTIONS: dict[str, Op] = {
    # made from sizes (or data): each reads its sizes as torch does
    **_torch(["tensor"], size="data"),
    **_torch(["zeros", "ones"], size="creation"),
    **_torch(["randn", "rand"], size="creation", random=True),
    **_torch(["randint"], size="randint", random=True),
    **_torch(["arange"], size="arange"),
    **_torch(["full"], size="full"),
    **_torch(["linspace"], size="linspace"),
    **_torch(["eye"], size="eye"),
    **_torch(["zeros_like", "ones_like", "full_like"], size="like"),
    **_torch(["randn_like", "rand_like"], size="like", random=True),
    **_torch(["cat", "stack"], size="concat"),
    **_torch(["matmul", "mm"], size="matmul_args"),
    # views of their argument, or copies
    **_torch(["flatten", "squeeze", "unsqueeze", "transpose", "reshape"], size="broadcast",
             aliases="args"),
    **_torch([
        "sum", "mean", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "softmax",
        "log_softmax", "argmax", "where", "clamp", "maximum", "minimum", "add", "sub", "mul",
        "div", "pow", "neg", "std", "var", "eq", "ne", "lt", "le", "gt", "ge", "square", "sin",
        "cos",
    ], size="broadcast"),
    "torch.manual_seed": function("torch.manual_seed", _manual_seed, "None", size="broadcast",
                                  writes="rng"),
    "torch.max": function("torch.max", torch.max, _extreme, size="broadcast"),
    "torch.min": function("torch.min", torch.min, _extreme, size="broadcast"),
    "torch.cuda.is_available": function("torch.cuda.is_available", _cuda_is_available, "Bool",
                                        size="broadcast", owner_data=True),
    "torch.device": function("torch.device", make_device, "device", size="broadcast"),
    "torch.from_numpy": function("torch.from_numpy", _from_numpy, size="numpy_copy"),
    # torch.Tensor(t) is t
    "torch.Tensor": function("torch.Tensor", _legacy_tensor, size="legacy_tensor", aliases="args"),
    # take inplace=True (and then write and return their input)
    **_functional(["relu", "leaky_relu", "elu", "silu"], size="broadcast",
                  writes="inplace_arg", aliases="args"),
    **_functional(["dropout", "dropout2d"], size="broadcast", random=True,
                  writes="inplace_arg", aliases="args"),
    **_functional(["pixel_shuffle", "pixel_unshuffle"], size="broadcast", aliases="args"),
    **_functional(["linear"], size="linear"),
    **_functional([
        "max_pool2d", "avg_pool2d", "log_softmax", "softmax", "nll_loss", "cross_entropy",
        "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
        "binary_cross_entropy_with_logits", "kl_div", "sigmoid", "tanh", "gelu", "softplus",
    ], size="broadcast"),
}  # fmt: skip
