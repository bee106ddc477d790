"""torch's functions on shared tensors: ``F.linear(x, w, b)`` in a model's forward,
``torch.ones(3) - x``, ``F.relu(x)``, ``torch.max(x, 1)``, ``torch.gt(x, y)``...

torch calls ``SharedTensor.__torch_function__`` whenever a shared tensor is among a function's
arguments (on either side of an operator with a torch tensor too); it looks the function's name
up in ``TORCH_FUNCTIONS``, which this module fills, and refuses any other function clearly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import UsageError
from .shared import TORCH_FUNCTIONS, SharedTensor


def _matmul(x: object, y: object) -> SharedTensor:
    if isinstance(x, SharedTensor):
        return x.matmul(y)
    assert isinstance(y, SharedTensor)
    return y.__rmatmul__(x)


def _linear(x: object, weight: object, bias: object = None) -> object:
    transposed = weight.t() if isinstance(weight, SharedTensor | torch.Tensor) else weight
    out = _matmul(x, transposed)
    return out if bias is None else out + bias


def _add(x: object, y: object, *, alpha: object = 1) -> object:
    if alpha != 1:
        y = y * alpha  # type: ignore[operator]
    if isinstance(x, SharedTensor):
        return x.__add__(y)
    assert isinstance(y, SharedTensor)
    return y.__radd__(x)


def _sub(x: object, y: object) -> object:
    if isinstance(x, SharedTensor):
        return x.__sub__(y)
    assert isinstance(y, SharedTensor)
    return y.__rsub__(x)


def _mul(x: object, y: object) -> object:
    if isinstance(x, SharedTensor):
        return x.__mul__(y)
    assert isinstance(y, SharedTensor)
    return y.__rmul__(x)


def _sum(
    x: SharedTensor, dim: int | tuple[int, ...] | None = None, keepdim: bool = False
) -> object:
    return x.sum(dim, keepdim=keepdim)


def _relu(x: SharedTensor, inplace: bool = False) -> SharedTensor:
    return _relu_in_place(x) if inplace else x.relu()


def _relu_in_place(x: SharedTensor) -> SharedTensor:
    """``torch.relu_(x)``, ``nn.ReLU(inplace=True)``: x now stands for max(x, 0)."""
    if x.requires_grad:
        raise UsageError(
            "an in-place relu on a shared tensor that requires grad would lose its gradient: "
            "use F.relu(x) (inplace=False)"
        )
    x._assign(x.relu())
    return x


def _compared(name: str) -> Callable[..., object]:
    """``torch.gt(x, y)`` and friends, with the shared tensor on either side."""
    mirrored = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge", "eq": "eq", "ne": "ne"}

    def operation(x: object, y: object) -> object:
        if isinstance(x, SharedTensor):
            return getattr(x, f"__{name}__")(y)
        assert isinstance(y, SharedTensor)
        return getattr(y, f"__{mirrored[name]}__")(x)

    return operation


def _max(x: SharedTensor, dim: int | None = None, keepdim: bool = False) -> object:
    return x.max(dim, keepdim)


def _min(x: SharedTensor, dim: int | None = None, keepdim: bool = False) -> object:
    return x.min(dim, keepdim)


TORCH_FUNCTIONS.update(
    {
        "linear": _linear,
        "matmul": _matmul,
        "mm": _matmul,
        "__matmul__": _matmul,
        "__rmatmul__": lambda tensor, shared: _matmul(shared, tensor),
        "add": _add,
        "__add__": _add,
        "__radd__": _add,
        "sub": _sub,
        "__sub__": _sub,
        "__rsub__": lambda tensor, other: _sub(other, tensor),
        "mul": _mul,
        "__mul__": _mul,
        "__rmul__": _mul,
        "neg": lambda x: -x,  # type: ignore[operator]
        "sum": _sum,
        "relu": _relu,
        "relu_": _relu_in_place,
        "abs": lambda x: x.abs(),
        "max": _max,
        "min": _min,
        "argmax": lambda x, dim=None, keepdim=False: x.argmax(dim, keepdim),
        "argmin": lambda x, dim=None, keepdim=False: x.argmin(dim, keepdim),
        **{name: _compared(name) for name in ("gt", "ge", "lt", "le", "eq", "ne")},
        **{f"__{name}__": _compared(name) for name in ("gt", "ge", "lt", "le", "eq", "ne")},
    }
)

__all__: list[str] = []
