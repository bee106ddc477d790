"""From float updates to the ring Z(2^64) and back, with a stated error.

An owner's update (a tensor, or a state_dict of float tensors) is

1. clipped: scaled down, if need be, so that its L2 norm (all tensors together) is at most
   ``clip``; every coordinate is then in [-clip, clip];
2. scaled to fixed point: multiplied by ``2 ** fractional_bits`` (exact in float64);
3. stochastically rounded: ``floor(v) + 1`` with probability ``v - floor(v)``, else
   ``floor(v)``, the coin drawn from a cryptographic generator (ChaCha20 keyed from
   ``os.urandom``: ``crypto.random_words``), so the rounding is unbiased and tells nothing
   about the bits it dropped;
4. written in the ring: the signed integers as ``uint64``, added with numpy's wrapping arithmetic.

The sum of ``n`` such vectors, read back as signed 64-bit integers and divided by the scale,
differs from the exact sum of the clipped updates by less than ``n / 2 ** fractional_bits`` in
every coordinate (``Quantiser.error_bound``): each rounding moves a value by less than one unit,
and nothing else is inexact while ``n * (clip * 2 ** fractional_bits + 1) < 2 ** 53`` (checked:
the integers and their sums stay exact in float64 and never wrap in the ring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError
from .stream import PIECE, KeyStreams, random_words

#: a tensor, or a state_dict's worth of named float tensors
Update = torch.Tensor | Mapping[str, torch.Tensor]

_EXACT = 2**53  # integers below this are exact in float64
_SINGLE = ""  # the one name of an update given as a bare tensor


@dataclass(frozen=True)
class Layout:
    """The names and shapes of an update's tensors, in order: how a flat vector is cut back."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, update: Update) -> Layout:
        named = _named(update)
        return cls(tuple(named), tuple(tuple(t.shape) for t in named.values()))

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def flatten(self, update: Update) -> np.ndarray:
        """The update's values as one float64 vector, in this layout's order."""
        parts = self.parts(update)
        return np.concatenate(parts) if parts else np.zeros(0)

    def parts(self, update: Update) -> list[np.ndarray]:
        """The update's tensors as 1-D float64 arrays, in this layout's order (the tensors'
        own memory where they are float64 on the CPU already: no copy). Raises UsageError
        unless the update has this layout's names and shapes."""
        named = _named(update)
        if (
            tuple(named) != self.names
            or tuple(tuple(t.shape) for t in named.values()) != self.shapes
        ):
            expected = dict(zip(self.names, self.shapes, strict=True))
            raise UsageError(
                f"the update's tensors ({_describe(named)}) are not the round's "
                f"({_describe(expected)})"
            )
        return [
            np.ascontiguousarray(t.detach().to("cpu", torch.float64).reshape(-1).numpy())
            for t in named.values()
        ]

    def unflatten(self, vector: np.ndarray) -> Update:
        """Tensors (float64) cut from ``vector``: a dict by name, or the bare tensor."""
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            count = math.prod(shape)
            out[name] = torch.from_numpy(vector[start : start + count].copy()).reshape(shape)
            start += count
        return out[_SINGLE] if self.names == (_SINGLE,) else out


def _named(update: Update) -> dict[str, torch.Tensor]:
    named = {_SINGLE: update} if isinstance(update, torch.Tensor) else dict(update)
    for name, tensor in named.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise UsageError(
                f"secure aggregation sums float tensors; {name or 'the update'} is {kind} "
                "(leave counters such as num_batches_tracked out of the update)"
            )
    return named


def _describe(named: Mapping[str, torch.Tensor] | Mapping[str, tuple[int, ...]]) -> str:
    shapes = {n: tuple(t.shape) if isinstance(t, torch.Tensor) else t for n, t in named.items()}
    return ", ".join(f"{n or 'tensor'} {list(shape)}" for n, shape in shapes.items())


@dataclass(frozen=True)
class Quantiser:
    """Clip to an L2 norm of ``clip``, then fixed point with ``fractional_bits`` bits."""

    clip: float
    fractional_bits: int = 16

    @property
    def scale(self) -> float:
        return float(2**self.fractional_bits)

    def check(self, owners: int) -> None:
        """Raise UsageError unless ``owners`` updates sum exactly (no wrap, no float rounding)."""
        if not (isinstance(self.clip, int | float) and math.isfinite(self.clip) and self.clip > 0):
            raise UsageError(f"clip is a positive number, not {self.clip!r}")
        if not isinstance(self.fractional_bits, int) or not 0 <= self.fractional_bits <= 52:
            raise UsageError(
                f"fractional_bits is an int from 0 to 52, not {self.fractional_bits!r}"
            )
        largest = owners * (self.clip * self.scale + 1)
        if largest >= _EXACT:
            raise UsageError(
                f"{owners} updates clipped to {self.clip} with {self.fractional_bits} fractional "
                f"bits could reach {largest:.3g}, past 2**53 where sums stop being exact: lower "
                "clip or fractional_bits"
            )

    def error_bound(self, owners: int) -> float:
        """How far, at most, each coordinate of the dequantised sum of ``owners`` updates is from
        the exact sum of the clipped updates (strictly less than this)."""
        return owners / self.scale

    def quantise(self, vector: np.ndarray, masks: KeyStreams | None = None) -> np.ndarray:
        """A float64 vector, clipped, in the ring (``uint64``), rounded stochastically, and
        ``masks`` applied."""
        return self.quantise_parts([vector], masks)

    def quantise_parts(
        self, parts: Sequence[np.ndarray], masks: KeyStreams | None = None
    ) -> np.ndarray:
        """``quantise`` of the vector ``parts`` make end to end (each a 1-D float64 array, a
        tensor's values): clipped as one vector, written into one new uint64 array a cache-sized
        piece at a time, with no full-size temporary."""
        parts = [np.asarray(part).reshape(-1) for part in parts]  # views where they can be
        # einsum, not np.dot: BLAS's dot may start threads that spin against the owner's work;
        # in float64 whatever the parts' dtype
        norm = math.sqrt(
            sum(float(np.einsum("i,i->", part, part, dtype=np.float64)) for part in parts)
        )
        if not math.isfinite(norm):
            raise UsageError("the update holds NaN or infinite values; nothing can be aggregated")
        # scale is a power of two: v * (clip / norm) * scale is v * factor, exactly
        factor = self.scale if norm <= self.clip else self.clip / norm * self.scale
        out = np.empty(sum(part.size for part in parts), dtype=np.uint64)
        coins = random_words()
        scaled, low, up = np.empty(PIECE), np.empty(PIECE), np.empty(PIECE, dtype=bool)
        at = 0
        for part in parts:
            for start in range(0, part.size, PIECE):
                source = part[start : start + PIECE]
                n = source.size
                value, floor, rounds_up = scaled[:n], low[:n], up[:n]
                np.multiply(source, factor, out=value)
                np.floor(value, out=floor)
                # up with probability frac = value - floor: a 53-bit coin c is below
                # frac * 2**53 (both exact in float64, frac's bits shifted, c < 2**53) with
                # probability frac, as c * 2**-53 uniform in [0, 1) is below frac
                frac = np.subtract(value, floor, out=value)
                np.multiply(frac, 2.0**53, out=frac)
                coin = coins.next(n)
                np.right_shift(coin, np.uint64(11), out=coin)
                np.less(coin, frac, out=rounds_up)
                floor += rounds_up
                piece = out[at : at + n]
                np.copyto(piece.view(np.int64), floor, casting="unsafe")  # exact: |floor| < 2**53
                if masks is not None:
                    masks.apply(piece)
                at += n
        return out

    def dequantise(self, total: np.ndarray) -> np.ndarray:
        """The float64 vector a ring sum of quantised updates stands for."""
        return total.view(np.int64).astype(np.float64) / self.scale


__all__ = ["Layout", "Quantiser", "Update"]
