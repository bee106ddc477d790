"""The derivative rules of shared tensors' operations (autograd.py records them).

Each ``*_rule(self, *operands)`` is called when the operation runs and returns the inputs to
differentiate (``self`` and any shared operand; public operands are constants) and a function
from the output's gradient ``g`` to theirs. Gradients flowing into a broadcast operand are summed
back to its shape, as torch does.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UsageError
from .autograd import Differentiable, Rule
from .fixed import FixedPrecisionTensor

Shared = Any  # a SharedTensor (shared.py builds on this module)
Recorded = tuple[tuple[Differentiable, ...], Rule]


def unbroadcast(grad: Shared, shape: torch.Size) -> Shared:
    """``grad`` summed over the dimensions a broadcast added to a tensor of ``shape``."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for dim, size in enumerate(shape):
        if size == 1 and grad.shape[dim] != 1:
            grad = grad.sum(dim, keepdim=True)
    return grad


def _shared(value: object) -> bool:
    return isinstance(value, Differentiable)


def _transposed(public: object) -> object:
    if isinstance(public, FixedPrecisionTensor):
        return FixedPrecisionTensor(
            public.child.t(), precision_fractional=public.precision_fractional, dtype=public.dtype
        )
    if isinstance(public, torch.Tensor):
        return public.t()
    raise UsageError("training on shares multiplies matrices by tensors only")


def add_rule(self: Shared, other: object) -> Recorded:
    if _shared(other):
        peer: Shared = other
        return (self, peer), lambda g: (unbroadcast(g, self.shape), unbroadcast(g, peer.shape))
    return (self,), lambda g: (unbroadcast(g, self.shape),)


def sub_rule(self: Shared, other: object) -> Recorded:
    if _shared(other):
        peer: Shared = other
        return (self, peer), lambda g: (unbroadcast(g, self.shape), -unbroadcast(g, peer.shape))
    return (self,), lambda g: (unbroadcast(g, self.shape),)


def neg_rule(self: Shared) -> Recorded:
    return (self,), lambda g: (-g,)


def mul_rule(self: Shared, other: object) -> Recorded:
    if _shared(other):
        peer: Shared = other
        return (self, peer), lambda g: (
            unbroadcast(g * peer, self.shape),
            unbroadcast(g * self, peer.shape),
        )
    return (self,), lambda g: (unbroadcast(g * other, self.shape),)


def _two_dimensional(*shapes: torch.Size) -> None:
    if any(len(shape) != 2 for shape in shapes):
        raise UsageError(
            "training on shares multiplies 2-D matrices only (a batch of rows times a weight "
            f"matrix), not shapes {', '.join(str(tuple(s)) for s in shapes)}"
        )


def matmul_rule(self: Shared, other: object) -> Recorded:
    if _shared(other):
        peer: Shared = other
        _two_dimensional(self.shape, peer.shape)
        return (self, peer), lambda g: (g @ peer.t(), self.t() @ g)
    shape = getattr(other, "shape", torch.Size([]))
    _two_dimensional(self.shape, shape)
    transposed = _transposed(other)
    return (self,), lambda g: (g @ transposed,)


def rmatmul_rule(self: Shared, other: object) -> Recorded:
    """``other @ self`` with ``other`` public."""
    _two_dimensional(self.shape, getattr(other, "shape", torch.Size([])))
    transposed = _transposed(other)
    return (self,), lambda g: (g.__rmatmul__(transposed),)


def div_rule(self: Shared, divisor: object) -> Recorded:
    return (self,), lambda g: (g / divisor,)


def sum_rule(self: Shared, dim: int | tuple[int, ...] | None = None, keepdim: bool = False):
    shape = self.shape

    def rule(g: Shared) -> tuple[Shared]:
        if dim is not None and not keepdim:
            dims = (dim,) if isinstance(dim, int) else dim
            for d in sorted(d % len(shape) for d in dims):
                g = g.unsqueeze(d)
        return (g._expanded(shape),)

    return (self,), rule


def t_rule(self: Shared) -> Recorded:
    return (self,), lambda g: (g.t(),)


def transpose_rule(self: Shared, dim0: int, dim1: int) -> Recorded:
    return (self,), lambda g: (g.transpose(dim0, dim1),)


def permute_rule(self: Shared, *dims: object) -> Recorded:
    order = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], list | tuple) else list(dims)
    inverse = [0] * len(order)
    for place, dim in enumerate(order):
        inverse[int(dim) % len(order)] = place  # type: ignore[call-overload]
    return (self,), lambda g: (g.permute(*inverse),)


def reshape_rule(self: Shared, *_args: object, **_kwargs: object) -> Recorded:
    shape = self.shape
    return (self,), lambda g: (g.reshape(tuple(shape)),)


__all__ = [
    "add_rule",
    "div_rule",
    "matmul_rule",
    "mul_rule",
    "neg_rule",
    "permute_rule",
    "reshape_rule",
    "rmatmul_rule",
    "sub_rule",
    "sum_rule",
    "t_rule",
    "transpose_rule",
    "unbroadcast",
]
