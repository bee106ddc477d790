"""Comparisons and ReLU over duets: ``duet.smpc.compare``'s protocol, one party's side, no I/O.

The crypto provider deals, for a comparison on a tensor of shape S, a uniform mask r as shares of
its 64 bits (``duet.smpc.provider.deal_bits``) and the Beaver triples of the bitwise comparison
(elementwise, on integers: 6 suffix rounds and one product on shape (*S, 63), the final xor on
S, and ReLU's product x * [x >= 0] on S; the suffix rounds' are ``deal_linked_triple``'s, whose
b is the shift of a, so that only e is opened); each holder's part is one sealed
blob (seeds; the last holder's corrections too). A holder then runs ``Comparison``: a state
machine that, at each step, takes the other holder's message of the step before and gives its
own for the next, until it holds its share of the result:

    step 0   its share of c = x + r                  (uniform: r is the provider's mask)
    1 .. 8   its shares of Beaver's e = u - a, f = v - b for the comparison's products
    9        (relu) the same for x * [x >= 0]
    end      its share of [x < 0] (fixed point) or of relu(x)

The arithmetic is ``duet.smpc.compare.sign_bit``'s, term for term (its weights and shift
matrices are imported): sign(x) = c_63 xor r_63 xor [r mod 2^63 > c mod 2^63], the last term
found with suffix products of "equal so far" bits. Products of bits are integer products (no
truncation); ReLU multiplies a fixed-point x by an integer bit, so it stays exact: comparisons
and ReLU add no error of their own, as over VirtualWorkers.

What leaves a holder: c (uniform) and Beaver openings (uniform), sealed to the other holder by
``Party`` (kind "round", bound to the comparison and the step, so no message is replayed into
another step or comparison). Each triple and each comparison is used once.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

import numpy as np
import torch

from ...errors import ProtocolError, UsageError
from .. import provider as dealer
from .. import ring
from ..bitwise import LOW_BITS, SHIFTS, SPANS, WEIGHTS
from .encoding import from_bytes, to_bytes

CompareOp = Literal["relu", "negative"]
#: elements of one part of a comparison: its largest message (the last holder's dealing, about
#: 4 KiB an element, twice that in hex) stays well inside a frame's 16 MiB header
MAX_PART_ELEMENTS = 1024
_SUFFIX_ROUNDS = len(SPANS)

Steps = Generator[bytes, bytes, torch.Tensor]


def triple_shapes(op: CompareOp, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shape of each elementwise Beaver triple a comparison uses, in order."""
    low = (*shape, LOW_BITS)
    shapes = [low] * (_SUFFIX_ROUNDS + 1) + [shape]
    return [*shapes, shape] if op == "relu" else shapes


def rounds(op: CompareOp) -> int:
    """The exchanges between the holders: c, then one per product."""
    return 1 + len(triple_shapes(op, ()))


def check_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > MAX_PART_ELEMENTS:
        raise UsageError(
            f"a part of a comparison on shape {list(shape)} ({count} elements) is larger than "
            f"the {MAX_PART_ELEMENTS} elements one part takes: use more parts"
        )
    return shape


def parts_for(elements: int) -> int:
    """How many parts a comparison of this many elements runs in."""
    return max(1, -(-elements // MAX_PART_ELEMENTS))


class Group:
    """One holder's comparison of a whole tensor ``x``, in parts (its flattened elements in
    runs of ceil(n / parts)), each a ``Comparison`` with a dealing of its own."""

    def __init__(self, op: CompareOp, x: torch.Tensor, result: str, parts: int, expression: str):
        if x.numel() == 0:
            raise UsageError("a comparison of an empty shared tensor")
        self.size = -(-x.numel() // parts) if parts > 0 else 0
        if not 0 < parts <= x.numel() or self.size > MAX_PART_ELEMENTS:
            raise UsageError(
                f"{parts} parts do not split {x.numel()} elements into runs of at most "
                f"{MAX_PART_ELEMENTS}: use {parts_for(x.numel())}"
            )
        self.op: CompareOp = op
        self.x = x
        self.result = result
        self.parts = parts
        self.text = f"relu({expression})" if op == "relu" else f"({expression} < 0)"
        self.machines: dict[int, Comparison | None] = {}
        self._results: dict[int, torch.Tensor] = {}

    def chunk(self, part: int) -> torch.Tensor:
        """The elements of part ``part`` (1-D)."""
        start = part * self.size
        if not 0 <= part < self.parts or start >= self.x.numel():
            raise UsageError(f"part {part} is not one of this comparison's {self.parts} parts")
        return self.x.reshape(-1)[start : start + self.size]

    def started(self, part: int) -> bool:
        return part in self.machines

    def finish(self, part: int, share: torch.Tensor) -> None:
        self.machines[part] = None
        self._results[part] = share

    @property
    def done(self) -> bool:
        return len(self._results) == self.parts

    def joined(self) -> torch.Tensor:
        return torch.cat([self._results[p] for p in range(self.parts)]).reshape(self.x.shape)


def working_bytes(shape: tuple[int, ...]) -> int:
    """What a holder holds while a comparison runs (its mask's bits, a triple, the products)."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return count * dealer.RING_BITS * 8 * 8


def deal(op: CompareOp, shape: tuple[int, ...]) -> list[bytes]:
    """The provider's dealing for one comparison: each holder's blob (to be sealed to it)."""
    check_shape(shape)
    size = torch.Size(shape)
    dealings = [dealer.deal_bits(2, size)]
    for k, s in enumerate(triple_shapes(op, shape)):
        if k < _SUFFIX_ROUNDS:  # u * (u @ M + ones): b = a @ M, one opening
            dealings.append(dealer.deal_linked_triple(2, torch.Size(s), SPANS[k][0].__rmatmul__))
        else:
            dealings.append(dealer.deal_triple(2, torch.Size(s), torch.Size(s), torch.mul))
    blobs = []
    for holder in range(2):
        data = bytearray()
        for dealt in dealings:
            data += dealt[holder].seed
            for label, correction in dealt[holder].corrections.items():
                data += bytes([label]) + to_bytes(correction)
        blobs.append(bytes(data))
    return blobs


class Comparison:
    """One holder's side of one comparison of ``x`` (its share, shape S) with 0.

    ``outgoing`` is what it sends the other holder first; ``step(incoming)`` takes the other's
    message of the same step and returns this holder's next message, or (the last step) its
    share of the result. Raises ProtocolError for a message of the wrong size."""

    def __init__(
        self, index: int, x: torch.Tensor, op: CompareOp, dealing: bytes, fractional_bits: int
    ):
        self.index = index
        self.op: CompareOp = op
        self.shape = tuple(x.shape)
        self.fractional_bits = fractional_bits
        self.step_count = 0
        self._bits, self._triples = self._parse(dealing)
        self._used = 0
        self._steps = self._run(x)
        self.outgoing: bytes = next(self._steps)

    def _parse(self, data: bytes) -> tuple[dealer.Dealing, list[dealer.Dealing]]:
        shapes = [(*self.shape, dealer.RING_BITS), *triple_shapes(self.op, self.shape)]
        dealings, at = [], 0
        for shape in shapes:
            seed = data[at : at + ring.SEED_BYTES]
            at += ring.SEED_BYTES
            corrections = {}
            if self.index == 1:  # the last holder: the correction of the related value
                size = 8 * (int(np.prod(shape, dtype=np.int64)) if shape else 1)
                label = data[at] if at < len(data) else -1
                corrections[label] = from_bytes(data[at + 1 : at + 1 + size], shape, "a correction")
                at += 1 + size
            if len(seed) != ring.SEED_BYTES:
                break
            dealings.append(dealer.Dealing(bytes(seed), corrections))
        if at != len(data) or len(dealings) != len(shapes):
            raise ProtocolError(
                f"the comparison's dealing is not the provider's seeds (and, for the last holder, "
                f"corrections) for shape {list(self.shape)}"
            )
        return dealings[0], dealings[1:]

    def step(self, incoming: bytes) -> bytes | torch.Tensor:
        self.step_count += 1
        try:
            return self._steps.send(incoming)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    # ---- the protocol, as duet.smpc.compare.sign_bit writes it
    def _public(self, value: torch.Tensor | int) -> torch.Tensor | int:
        """A public value, in the shares: holder 0 adds it, holder 1 adds 0."""
        return value if self.index == 0 else value * 0

    def _exchange(self, mine: torch.Tensor) -> Generator[bytes, bytes, torch.Tensor]:
        incoming = yield to_bytes(mine)
        return from_bytes(incoming, tuple(mine.shape), "the other holder's message")

    def _multiply(self, u: torch.Tensor, v: torch.Tensor) -> Generator[bytes, bytes, torch.Tensor]:
        dealing = self._triples[self._used]
        self._used += 1
        shape = torch.Size(u.shape)
        triple = dealer.triple_of(dealing, shape, shape, shape)
        e, f = u - triple.a, v - triple.b
        both = yield from self._exchange(torch.stack((e, f)))
        big_e, big_f = e + both[0], f + both[1]
        z = triple.c + big_e * triple.b + triple.a * big_f
        return z + big_e * big_f if self.index == 0 else z

    def _multiply_shifted(
        self, u: torch.Tensor, matrix: torch.Tensor, ones: torch.Tensor
    ) -> Generator[bytes, bytes, torch.Tensor]:
        """u * (u @ matrix + ones) with a linked triple (b = a @ matrix): only e is opened."""
        dealing = self._triples[self._used]
        self._used += 1
        triple = dealer.linked_triple_of(dealing, torch.Size(u.shape), lambda a: a @ matrix)
        e = u - triple.a
        big_e = e + (yield from self._exchange(e))
        big_f = big_e @ matrix + ones
        z = triple.c + big_e * triple.b + triple.a * big_f
        return z + big_e * big_f if self.index == 0 else z

    def _run(self, x: torch.Tensor) -> Steps:
        r_bits = dealer.bits_of(self._bits, torch.Size(self.shape))
        masked = x + (r_bits * WEIGHTS).sum(-1)
        c = masked + (yield from self._exchange(masked))  # x + r: uniform
        c_bits = (c.unsqueeze(-1) >> SHIFTS) & 1
        c_low, c_top = c_bits[..., :LOW_BITS], c_bits[..., LOW_BITS]
        r_low, r_top = r_bits[..., :LOW_BITS], r_bits[..., LOW_BITS]
        del r_bits, c_bits
        differ = r_low * (1 - 2 * c_low) + self._public(c_low)  # r_i xor c_i
        product = self._public(1) - differ
        for matrix, ones in SPANS:  # prod_{j >= i} (1 - w_j), by doubling
            product = yield from self._multiply_shifted(product, matrix, ones)
        above, ones = SPANS[0]
        same_above = product @ above + self._public(ones)  # prod_{j > i} (1 - w_j)
        borrow = ((yield from self._multiply(r_low, same_above)) * (1 - c_low)).sum(-1)
        top = r_top * (1 - 2 * c_top) + self._public(c_top)  # r_63 xor c_63
        sign = top + borrow - (yield from self._multiply(top, borrow)) * 2
        if self.op == "negative":  # [x < 0] in fixed point
            return sign * (1 << self.fractional_bits)
        positive = self._public(1) - sign
        return (yield from self._multiply(x, positive))  # a fixed-point x times a bit: exact


__all__ = [
    "MAX_PART_ELEMENTS",
    "CompareOp",
    "Comparison",
    "Group",
    "check_shape",
    "deal",
    "parts_for",
    "rounds",
    "triple_shapes",
    "working_bytes",
]
