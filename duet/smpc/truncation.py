"""Dividing shared values by a public number: truncation after a fixed-point product.

Two holders (SecureML, Mohassel and Zhang 2017): each divides its own share, no interaction.
Holder 0 takes floor(z0 / d), holder 1 takes -floor(-z1 / d). When |z| < 2^l the result is
floor(z / d) or one more, except with probability at most 2^(l + 1 - 64) per element, where the
shares wrap around the ring and the result is garbage (|z| < 2^40: below 2^-23).

Three or more holders: local division does not work (the shares wrap the ring about n / 2 times
and each wrap costs 2^64 / d). The crypto provider deals a uniform mask r with shares of r's
bits above ``shift`` and of its top bit (Escudero et al. 2020's probabilistic truncation over
Z(2^k)). The holders add 2^62 to the value (so that z' = z + 2^62 is in [0, 2^63) when
|z| < 2^62), open c = z' + r (uniform: it reveals nothing), and compute, from c's public bits
and their shares of r's, shares of floor(z / 2^shift) or one more. Exact up to that last bit,
always, when |z| < 2^62.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..workers import VirtualWorker
from . import provider as dealer
from .parties import Share, deliver, open_value

_LOW_BITS = (1 << 63) - 1
OFFSET_BITS = 62


def divide_two_party(shares: Sequence[Share], divisor: int) -> list[Share]:
    """SecureML's local division of a 2-holder sharing by a public positive int."""
    first, second = shares
    return [
        torch.div(first, divisor, rounding_mode="floor"),
        torch.div(second.neg(), divisor, rounding_mode="floor").neg(),
    ]


def shift_with_provider(
    shares: Sequence[Share],
    holders: Sequence[VirtualWorker],
    shape: torch.Size,
    shift: int,
) -> list[Share]:
    """Shares of floor(z / 2^shift) (or one more) for any number of holders, with a mask the
    crypto provider deals; 1 <= shift <= 62."""
    dealings = dealer.deal_truncation(len(holders), shape, shift)
    masks = [dealer.mask_of(d, shape) for d in dealings]
    r = [deliver(m.r, w) for m, w in zip(masks, holders, strict=True)]
    high = [deliver(m.high, w) for m, w in zip(masks, holders, strict=True)]
    msb = [deliver(m.msb, w) for m, w in zip(masks, holders, strict=True)]
    masked = [share + r_i for share, r_i in zip(shares, r, strict=True)]
    masked[0] = masked[0] + (1 << OFFSET_BITS)
    c = open_value(masked)
    c_msb = (c < 0).long()
    c_high = (c & _LOW_BITS) >> shift
    # t = c_msb xor r_msb = c_msb + (1 - 2 c_msb) r_msb, worth 2^(63 - shift) after the shift
    weight = 1 << (63 - shift)
    flip = (1 - 2 * c_msb) * weight
    public = c_high - (1 << (OFFSET_BITS - shift)) + c_msb * weight
    out = []
    for i, worker in enumerate(holders):
        share = msb[i] * deliver(flip, worker) - high[i]
        out.append(share + deliver(public, worker) if i == 0 else share)
    return out


__all__ = ["OFFSET_BITS", "divide_two_party", "shift_with_provider"]
