"""Comparisons on shared values: ``x < y``, ``x > 0``, ``relu``, ``abs``, ``max``, ``argmax``.

Everything reduces to one primitive, the sign of a shared value: the top bit of its element of
Z(2^64) read as signed; ``x < y`` is the sign of x - y. The crypto provider deals a uniform mask
r as shares of its 64 bits (each an additive sharing of 0 or 1; r's own shares follow locally,
weighting the bits by 2^i). The holders open c = x + r and, since x = c - r,

    sign(x) = c_63 xor r_63 xor borrow,   borrow = [r mod 2^63 > c mod 2^63],

where the borrow compares a public 63-bit number with a bit-shared one: the bitwise comparison
of Damgård et al. 2006 and Nishide and Ohta 2007 (the comparison SecureNN's private compare
builds on). With w_i = r_i xor c_i (linear in r_i, since c is public), the highest bit where r
and c differ decides:

    borrow = sum_i r_i (1 - c_i) prod_{j > i} (1 - w_j).

The suffix products take 6 rounds of Beaver products (doubling the span each round), then one
for r_i times its product and one for the final xor: 8 rounds of elementwise products on 63
times as many elements as x, plus one opening.

What each party learns: a holder sees c, which is x plus a uniform mask none of them knows, so
uniform whatever x is, and the Beaver openings, uniform as they are masked by the provider's
triples; nothing else leaves a holder. The provider sees only shapes. The result is a sharing of
0 or 1, as secret as any other share; ``max``'s selections are products with such bits.

Bounds: the sign is exact for every element of the ring, with no probability of error (no
statistical masking). ``x < y`` is the sign of x - y, exact when x - y does not wrap around the
ring, |x - y| < 2^63 encoded: always true for values inside the fixed-point range (|x| <
2^(62 - f), 2^46 at 16 fractional bits), which ``fix_precision()`` enforces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from ..errors import UsageError
from . import provider as dealer
from .bitwise import LOW_BITS as _LOW
from .bitwise import SHIFTS as _SHIFTS
from .bitwise import SPANS as _SPANS
from .bitwise import WEIGHTS as _WEIGHTS
from .parties import deliver, open_value

if TYPE_CHECKING:
    from .shared import SharedTensor


def _suffix_products(bits: SharedTensor) -> SharedTensor:
    """prod_{j >= i} bits_j along the last dimension (63 places), by doubling."""
    product = bits
    for matrix, ones in _SPANS:
        product = product * (product @ matrix + ones)
    return product


def sign_bit(x: SharedTensor) -> SharedTensor:
    """A sharing (integers, precision 0) of 1 where x < 0 and 0 elsewhere."""
    if x.crypto_provider is None:
        raise UsageError(
            "comparisons on shared values need a crypto provider to deal their masks: share "
            "with crypto_provider=<a worker that holds no share>"
        )
    holders = x.holders
    dealings = dealer.deal_bits(len(holders), x.shape)
    bit_shares = [
        deliver(dealer.bits_of(d, x.shape), w) for d, w in zip(dealings, holders, strict=True)
    ]
    r_bits = x._integer(bit_shares, torch.Size((*x.shape, dealer.RING_BITS)))
    masked = [
        share + (bits * _WEIGHTS).sum(-1) for share, bits in zip(x.shares, bit_shares, strict=True)
    ]
    c = open_value(masked)  # x + r: uniform
    c_bits = (c.unsqueeze(-1) >> _SHIFTS) & 1
    c_low, c_top = c_bits[..., :_LOW], c_bits[..., _LOW]
    r_low, r_top = r_bits[..., :_LOW], r_bits[..., _LOW]
    differ = r_low * (1 - 2 * c_low) + c_low  # r_i xor c_i
    above, ones = _SPANS[0]
    same_above = _suffix_products(1 - differ) @ above + ones  # prod_{j > i} (1 - w_j)
    borrow = ((r_low * same_above) * (1 - c_low)).sum(-1)
    top = r_top * (1 - 2 * c_top) + c_top  # r_63 xor c_63
    return top + borrow - (top * borrow) * 2


def less_than(x: SharedTensor, y: object) -> SharedTensor:
    """[x < y] as an integer sharing; ``y`` shared or public."""
    return sign_bit(x - y)


def greater_than(x: SharedTensor, y: object) -> SharedTensor:
    """[x > y] as an integer sharing."""
    return sign_bit((-x) + y)


def relu(x: SharedTensor) -> tuple[SharedTensor, SharedTensor]:
    """max(x, 0), and the integer sharing of [x >= 0] it multiplied by (ReLU's derivative)."""
    positive = 1 - sign_bit(x)
    return x._times_integer(positive), positive


def absolute(x: SharedTensor) -> SharedTensor:
    """|x|: x times 1 - 2 [x < 0]."""
    return x._times_integer(1 - sign_bit(x) * 2)


class MaxResult(NamedTuple):
    """``x.max(dim)``'s answer, as torch's: the values and their indices (shared)."""

    values: SharedTensor
    indices: SharedTensor


def _pairs(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Selection matrices for one round of a tournament over ``length`` places: the even places
    and the odd ones (an odd last place meets itself)."""
    half = (length + 1) // 2
    evens = torch.zeros(length, half, dtype=torch.int64)
    odds = torch.zeros(length, half, dtype=torch.int64)
    for j in range(half):
        evens[2 * j, j] = 1
        odds[min(2 * j + 1, length - 1), j] = 1
    return evens, odds


def _select(x: SharedTensor, matrix: torch.Tensor) -> SharedTensor:
    """Each holder maps its share by a public 0/1 matrix on the last dimension: a selection of
    places, so the encoding (any precision) is kept."""
    shape = torch.Size((*x.shape[:-1], matrix.shape[1]))
    return x._like([s.matmul(matrix) for s in x.shares], shape)


def maximum(x: SharedTensor, dim: int | None) -> MaxResult:
    """The largest value along ``dim`` (all elements if None) and its index (the first one on
    ties), as a tournament: ceil(log2 n) rounds of comparisons."""
    if x.shape.numel() == 0:
        raise UsageError("max() of an empty shared tensor")
    if dim is None:
        values = x.reshape(-1)
        last = 0
    else:
        last = dim % max(x.dim(), 1)
        order = [d for d in range(x.dim()) if d != last] + [last]
        values = x.permute(*order) if x.dim() > 1 else x
    length = values.shape[-1]
    places = torch.arange(length).expand(values.shape).contiguous()
    indices: SharedTensor | None = None
    while length > 1:
        evens, odds = _pairs(length)
        first, second = _select(values, evens), _select(values, odds)
        keep_first = 1 - sign_bit(first - second)  # first >= second: the earlier place wins
        values = second + (first - second)._times_integer(keep_first)
        if indices is None:
            public_first, public_second = places @ evens, places @ odds
            indices = keep_first * (public_first - public_second) + public_second
        else:
            shared_first, shared_second = _select(indices, evens), _select(indices, odds)
            indices = shared_second + (shared_first - shared_second) * keep_first
        length = values.shape[-1]
    if indices is None:  # one place: index 0
        indices = x._constant(0, values.shape, precision_fractional=0)
    values = values.squeeze(-1)
    indices = indices.squeeze(-1)
    return MaxResult(values, indices._scaled_to(x.precision_fractional, x.dtype))


__all__ = [
    "MaxResult",
    "absolute",
    "greater_than",
    "less_than",
    "maximum",
    "relu",
    "sign_bit",
]
