"""What the crypto provider deals: Beaver triples for multiplications, truncation masks, and
comparison masks (a uniform r given as shares of its bits).

A dealing gives each of n parties a ChaCha20 seed; parties expand their seeds into their
shares of the random values. The first n - 1 parties' shares come from their seeds alone; the
last party's shares of values that must satisfy a relation (c = a * b; r's high bits) are a
correction the provider computes, so the provider sends n seeds and one tensor per related value
instead of n tensors per value.

The provider learns nothing about the values being computed: it never sees a share, only the
shapes. It must not collude with the holders (it could remove the masks it dealt).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import ring

Multiply = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# stream labels (ChaCha20 nonces) of the values a seed expands into
_A, _B, _C = 1, 2, 3
_R, _R_HIGH, _R_MSB = 4, 5, 6
_R_BITS = 7
RING_BITS = 64
_LOW_BITS = (1 << 63) - 1


@dataclass(frozen=True)
class Dealing:
    """One party's part of one dealing: a seed, and (last party only) corrections by label."""

    seed: bytes
    corrections: dict[int, torch.Tensor]

    def expand(self, label: int, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        if label in self.corrections:
            return self.corrections[label]
        return ring.stream(self.seed, shape, label=label)


@dataclass(frozen=True)
class Triple:
    """A party's shares of a, b and c = a (op) b."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor


@dataclass(frozen=True)
class TruncationMask:
    """A party's shares of a uniform r, of its bits 63-shift..62 shifted down (``high``:
    (r mod 2^63) >> shift) and of its top bit (``msb``)."""

    r: torch.Tensor
    high: torch.Tensor
    msb: torch.Tensor


def _deal(parties: int, related: dict[int, torch.Tensor], shapes: dict[int, tuple[int, ...]]):
    """Seeds for every party; the last party's shares of each value in ``related`` are
    corrections so that all shares add up to it."""
    seeds = [ring.new_seed() for _ in range(parties)]
    corrections = {}
    for label, total in related.items():
        rest = sum(
            (ring.stream(seed, shapes[label], label=label) for seed in seeds[:-1]),
            start=torch.zeros(shapes[label], dtype=torch.int64),
        )
        corrections[label] = total - rest
    return [Dealing(seed, {}) for seed in seeds[:-1]] + [Dealing(seeds[-1], corrections)]


def deal_triple(
    parties: int,
    x_shape: torch.Size,
    y_shape: torch.Size,
    op: Multiply,
) -> list[Dealing]:
    """A Beaver triple for ``op`` (``torch.mul`` or ``torch.matmul``) on operands of these shapes."""
    seeds = [ring.new_seed() for _ in range(parties)]
    a = sum(
        (ring.stream(s, x_shape, label=_A) for s in seeds),
        start=torch.zeros(x_shape, dtype=torch.int64),
    )
    b = sum(
        (ring.stream(s, y_shape, label=_B) for s in seeds),
        start=torch.zeros(y_shape, dtype=torch.int64),
    )
    c = op(a, b)
    c_shape = tuple(c.shape)
    rest = sum(
        (ring.stream(s, c_shape, label=_C) for s in seeds[:-1]),
        start=torch.zeros(c_shape, dtype=torch.int64),
    )
    return [Dealing(s, {}) for s in seeds[:-1]] + [Dealing(seeds[-1], {_C: c - rest})]


def deal_linked_triple(
    parties: int, shape: torch.Size, link: Callable[[torch.Tensor], torch.Tensor]
) -> list[Dealing]:
    """A Beaver triple for u * v where v = link(u) + a public value and ``link`` is linear
    (a shift of places, as the comparison's suffix products): b = link(a), which every party
    computes from its own share of a, and c = a * b. Opening e = u - a then gives
    f = link(e) + the public value: one opening instead of two, and f reveals nothing e does
    not (it is computed from it)."""
    seeds = [ring.new_seed() for _ in range(parties)]
    key = tuple(shape)
    a = sum(
        (ring.stream(s, key, label=_A) for s in seeds), start=torch.zeros(key, dtype=torch.int64)
    )
    c = a * link(a)
    rest = sum(
        (ring.stream(s, key, label=_C) for s in seeds[:-1]),
        start=torch.zeros(key, dtype=torch.int64),
    )
    return [Dealing(s, {}) for s in seeds[:-1]] + [Dealing(seeds[-1], {_C: c - rest})]


def linked_triple_of(
    dealing: Dealing, shape: torch.Size, link: Callable[[torch.Tensor], torch.Tensor]
) -> Triple:
    """What a party expands a linked triple's dealing into (b = link(a), its own share)."""
    a = dealing.expand(_A, tuple(shape))
    return Triple(a, link(a), dealing.expand(_C, tuple(shape)))


def triple_of(
    dealing: Dealing, x_shape: torch.Size, y_shape: torch.Size, c_shape: torch.Size
) -> Triple:
    """What a party expands its dealing into."""
    return Triple(
        dealing.expand(_A, tuple(x_shape)),
        dealing.expand(_B, tuple(y_shape)),
        dealing.expand(_C, tuple(c_shape)),
    )


def deal_truncation(parties: int, shape: torch.Size, shift: int) -> list[Dealing]:
    """A truncation mask for a right shift by ``shift`` bits (see truncation.py)."""
    r = ring.uniform(shape)
    high = (r & _LOW_BITS) >> shift
    msb = (r < 0).long()
    key = tuple(shape)
    return _deal(parties, {_R: r, _R_HIGH: high, _R_MSB: msb}, {_R: key, _R_HIGH: key, _R_MSB: key})


def deal_bits(parties: int, shape: torch.Size) -> list[Dealing]:
    """A comparison mask (see compare.py): shares of each of the 64 bits of a uniform r, as
    integers 0 or 1 in Z(2^64), shape ``(*shape, 64)``, least significant bit first."""
    r = ring.uniform(shape)
    bits = (r.unsqueeze(-1) >> torch.arange(RING_BITS)) & 1
    key = (*tuple(shape), RING_BITS)
    return _deal(parties, {_R_BITS: bits}, {_R_BITS: key})


def bits_of(dealing: Dealing, shape: torch.Size) -> torch.Tensor:
    """A party's shares of the comparison mask's bits."""
    return dealing.expand(_R_BITS, (*tuple(shape), RING_BITS))


def mask_of(dealing: Dealing, shape: torch.Size) -> TruncationMask:
    key = tuple(shape)
    return TruncationMask(
        dealing.expand(_R, key), dealing.expand(_R_HIGH, key), dealing.expand(_R_MSB, key)
    )


__all__ = [
    "RING_BITS",
    "Dealing",
    "Triple",
    "TruncationMask",
    "bits_of",
    "deal_bits",
    "deal_linked_triple",
    "deal_triple",
    "deal_truncation",
    "linked_triple_of",
    "mask_of",
    "triple_of",
]
