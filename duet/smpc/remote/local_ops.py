"""What a share holder computes on its own shares, alone (``SmpcLocal``): + - of two sharings, a
public number added or multiplied in, a transpose, a sum, and reshaping (narrow, cat, squeeze,
flatten). No interaction and no secret: each holder does the same to its share, and the holder
of index 0 alone adds a public number (the shares still sum to the result). Torch refuses shapes
that do not fit (RuntimeError, which the caller reports as a UsageError).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...errors import UsageError
from .. import ring


def run(
    op: str,
    shares: Sequence[torch.Tensor],
    expressions: Sequence[str],
    *,
    holder: int,
    bits: int,
    scalar: float | int | None,
    dim: int | None,
    start: int | None,
    length: int | None,
) -> tuple[torch.Tensor, str]:
    """Holder ``holder``'s share of ``op`` of the sharings ``shares`` (fixed point with ``bits``
    fractional bits), and the expression it stands for, from the inputs' ``expressions``."""
    first = shares[0]
    if op in ("add", "sub"):
        if len(shares) != 2:
            raise UsageError(f"{op} takes two shared tensors")
        out = first + shares[1] if op == "add" else first - shares[1]
        text = f"({expressions[0]} {'+' if op == 'add' else '-'} {expressions[1]})"
    elif op == "cat":
        if len(shares) != 2:
            raise UsageError("cat takes two shared tensors")
        axis = axis_of(first, dim, op)
        out = torch.cat([first, shares[1]], axis)  # torch refuses other shapes (UsageError)
        text = f"cat({expressions[0]}, {expressions[1]}, {axis})"
    elif len(shares) != 1:
        raise UsageError(f"{op} takes one shared tensor")
    elif op == "neg":
        out, text = -first, f"-{expressions[0]}"
    elif op == "add_public":
        public = ring.encode(scalar_of(scalar, op), bits)
        out = first + public if holder == 0 else first.clone()
        text = f"({expressions[0]} + {scalar})"
    elif op == "mul_public":
        number = scalar_of(scalar, op)
        if isinstance(number, int):
            out = first * number
        else:
            out = truncate(first * ring.encode(number, bits), holder, bits)
        text = f"{scalar} * {expressions[0]}"
    elif op == "narrow":
        axis = axis_of(first, dim, op)
        if start is None or length is None or start + length > first.shape[axis]:
            raise UsageError(
                f"narrow takes a start and a length within dim {axis} of size "
                f"{first.shape[axis]}, not {start} and {length}"
            )
        out = first.narrow(axis, start, length).clone()  # a share of its own, not a view
        text = f"{expressions[0]}.narrow({axis}, {start}, {length})"
    elif op == "squeeze":
        axis = axis_of(first, dim, op)
        if first.shape[axis] != 1:
            raise UsageError(f"squeeze drops a dim of size 1; dim {axis} has {first.shape[axis]}")
        out, text = first.squeeze(axis).clone(), f"{expressions[0]}.squeeze({axis})"
    elif op == "flatten":
        out, text = first.reshape(-1).clone(), f"{expressions[0]}.flatten()"
    elif op == "t":
        if first.dim() != 2:
            raise UsageError(f"t() takes a 2-D tensor, not {first.dim()}-D")
        out, text = first.t().contiguous(), f"{expressions[0]}.t()"
    else:  # sum
        if dim is not None and not -first.dim() <= dim < max(first.dim(), 1):
            raise UsageError(f"sum over dim {dim} of a {first.dim()}-D tensor")
        out = first.sum() if dim is None else first.sum(dim)
        text = f"{expressions[0]}.sum({'' if dim is None else dim})"
    return out, text


def scalar_of(value: float | int | None, op: str) -> float | int:
    if value is None or isinstance(value, bool):
        raise UsageError(f"{op} takes a public number (scalar=)")
    return value


def axis_of(share: torch.Tensor, dim: int | None, op: str) -> int:
    """``dim`` of ``share`` as a non-negative axis; UsageError when it is missing or out of range."""
    if dim is None or not -share.dim() <= dim < share.dim():
        raise UsageError(f"{op} takes a dim of a {share.dim()}-D tensor, not {dim}")
    return dim % share.dim()


def truncate(z: torch.Tensor, holder: int, bits: int) -> torch.Tensor:
    """SecureML's local truncation by 2^bits of holder ``holder``'s share (see
    truncation.divide_two_party)."""
    if bits == 0:
        return z
    if holder == 0:
        return torch.div(z, 1 << bits, rounding_mode="floor")
    return -torch.div(-z, 1 << bits, rounding_mode="floor")


__all__ = ["axis_of", "run", "scalar_of", "truncate"]
