"""The bitwise comparison's public constants (compare.py's protocol): the ring's bits below the
sign, the shifts that read a value's bits, their weights, and the shift matrices of the suffix
products. No workers, no sessions: both front ends import them, the in-process one
(``duet.smpc.compare``) and the one over duets (``duet.smpc.remote.comparison``), the latter from
the owner's side, which must not import the workers (they import the owner's session).
"""

from __future__ import annotations

import torch

from .provider import RING_BITS

LOW_BITS = RING_BITS - 1  # the bits below the sign
SHIFTS = torch.arange(RING_BITS)
# r = sum_i 2^i r_i in Z(2^64): the top weight is 2^63, which int64 spells -2^63
WEIGHTS = torch.tensor([1 << i for i in range(LOW_BITS)] + [-(1 << LOW_BITS)])


def _shift(span: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A matrix M with (v @ M)[i] = v[i + span], and the public 1s for the places past the top."""
    places = torch.arange(LOW_BITS)
    matrix = torch.zeros(LOW_BITS, LOW_BITS, dtype=torch.int64)
    inside = places + span < LOW_BITS
    matrix[(places + span)[inside], places[inside]] = 1
    return matrix, (~inside).long()


SPANS = [_shift(1 << k) for k in range(6)]  # 1, 2, 4, ..., 32: past 63 bits


__all__ = ["LOW_BITS", "SHIFTS", "SPANS", "WEIGHTS"]
