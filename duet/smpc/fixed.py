"""``x.fix_precision()``: a tensor in fixed point, here in the scientist's process.

PySyft 0.2's ``FixedPrecisionTensor``: values scaled by 2^precision_fractional and rounded into
Z(2^64) (signed). ``.float_precision()`` turns it back; ``.share(*workers,
crypto_provider=)`` splits it into additive shares on the workers (shared.py). Local
arithmetic (+, -, *, @, .sum(), / by an int) keeps the scale, truncating products by floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..errors import UsageError
from . import ring

if TYPE_CHECKING:
    from .shared import SharedTensor


# shared.py builds on this module, so it hands its sharing function down rather than this
# module importing it back
Sharer = Callable[
    ["FixedPrecisionTensor", tuple[object, ...], object, dict[str, object]], "SharedTensor"
]


def _unset(*_args: object) -> SharedTensor:  # pragma: no cover - shared.py sets it at import
    raise RuntimeError("duet.smpc.shared is not imported")


_sharer: Sharer = _unset


def set_sharer(sharer: Sharer) -> None:
    global _sharer
    _sharer = sharer


class _Deferred(Exception):
    """An operand this class does not know: Python then asks the other operand."""


def _deferring(operator: Callable[..., FixedPrecisionTensor]) -> Callable[..., object]:
    def wrapped(self: FixedPrecisionTensor, other: object) -> object:
        try:
            return operator(self, other)
        except _Deferred:
            return NotImplemented

    wrapped.__name__ = operator.__name__
    wrapped.__doc__ = operator.__doc__
    return wrapped


class FixedPrecisionTensor:
    """Fixed-point values: ``child`` (int64) = round(value * 2^precision_fractional)."""

    __array_priority__ = 1000  # numpy leaves `array * fixed` to us

    def __init__(
        self,
        child: torch.Tensor,
        *,
        precision_fractional: int = ring.DEFAULT_FRACTIONAL_BITS,
        dtype: torch.dtype = torch.float32,
    ):
        self.child = child
        self.precision_fractional = precision_fractional
        self.dtype = dtype

    @classmethod
    def encode(
        cls, tensor: torch.Tensor, *, precision_fractional: int = ring.DEFAULT_FRACTIONAL_BITS
    ) -> FixedPrecisionTensor:
        bits = ring.check_fractional_bits(precision_fractional)
        dtype = tensor.dtype if tensor.is_floating_point() else torch.get_default_dtype()
        return cls(ring.encode(tensor, bits), precision_fractional=bits, dtype=dtype)

    # -- PySyft's names
    def float_precision(self) -> torch.Tensor:
        """The values as a float tensor (the dtype fixed, float32 for integers)."""
        return ring.decode(self.child, self.precision_fractional, self.dtype)

    float_prec = float_precision

    def fix_precision(self, *args: object, **kwargs: object) -> FixedPrecisionTensor:
        raise UsageError("this tensor is in fixed precision already")

    fix_prec = fix_precision

    def share(
        self, *workers: object, crypto_provider: object = None, **options: object
    ) -> SharedTensor:
        """Additive shares of these values on ``workers`` (2 or more), see ``SharedTensor``."""
        return _sharer(self, workers, crypto_provider, options)

    @property
    def shape(self) -> torch.Size:
        return self.child.shape

    def size(self, dim: int | None = None) -> torch.Size | int:
        return self.child.shape if dim is None else self.child.shape[dim]

    def dim(self) -> int:
        return self.child.dim()

    def __len__(self) -> int:
        return len(self.child)

    # -- local arithmetic in the ring
    def _other(self, other: object) -> torch.Tensor:
        """``other`` in this encoding; raises _Deferred for a type this class leaves to the
        other operand (a SharedTensor's reflected operators)."""
        if isinstance(other, FixedPrecisionTensor):
            if other.precision_fractional != self.precision_fractional:
                raise UsageError(
                    f"precision mismatch: precision_fractional={self.precision_fractional} and "
                    f"{other.precision_fractional}; fix both with the same precision"
                )
            return other.child
        if isinstance(other, int | float | torch.Tensor):
            return ring.encode(other, self.precision_fractional)
        raise _Deferred

    def _new(self, child: torch.Tensor) -> FixedPrecisionTensor:
        return FixedPrecisionTensor(
            child, precision_fractional=self.precision_fractional, dtype=self.dtype
        )

    def _truncate(self, product: torch.Tensor) -> torch.Tensor:
        return torch.div(product, 1 << self.precision_fractional, rounding_mode="floor")

    @_deferring
    def __add__(self, other: object) -> FixedPrecisionTensor:
        return self._new(self.child + self._other(other))

    __radd__ = __add__

    @_deferring
    def __sub__(self, other: object) -> FixedPrecisionTensor:
        return self._new(self.child - self._other(other))

    @_deferring
    def __rsub__(self, other: object) -> FixedPrecisionTensor:
        return self._new(self._other(other) - self.child)

    def __neg__(self) -> FixedPrecisionTensor:
        return self._new(-self.child)

    @_deferring
    def __mul__(self, other: object) -> FixedPrecisionTensor:
        if isinstance(other, int) and not isinstance(other, bool):
            return self._new(self.child * other)
        return self._new(self._truncate(self.child * self._other(other)))

    __rmul__ = __mul__

    @_deferring
    def __matmul__(self, other: object) -> FixedPrecisionTensor:
        return self._new(self._truncate(self.child @ self._other(other)))

    mm = matmul = __matmul__

    def __truediv__(self, other: object) -> FixedPrecisionTensor:
        if isinstance(other, int) and not isinstance(other, bool) and other > 0:
            return self._new(torch.div(self.child, other, rounding_mode="floor"))
        raise UsageError("fixed-point division takes a positive int divisor")

    def sum(
        self, dim: int | tuple[int, ...] | None = None, keepdim: bool = False
    ) -> FixedPrecisionTensor:
        if dim is None:
            return self._new(self.child.sum())
        return self._new(self.child.sum(dim, keepdim=keepdim))

    def __repr__(self) -> str:
        return (
            f"FixedPrecisionTensor(precision_fractional={self.precision_fractional}, "
            f"values={self.float_precision()})"
        )


def fix_precision(
    self: torch.Tensor,
    *args: object,
    precision_fractional: int = ring.DEFAULT_FRACTIONAL_BITS,
    base: int = 2,
    **_ignored: object,
) -> FixedPrecisionTensor:
    """``x.fix_precision()``: ``x`` in fixed point with ``precision_fractional`` bits (16)."""
    if base != 2:
        raise UsageError(
            f"base={base}: duet's fixed point is binary (precision_fractional counts bits)"
        )
    if args:
        raise UsageError("pass precision_fractional= by name")
    return FixedPrecisionTensor.encode(self, precision_fractional=precision_fractional)


__all__ = ["FixedPrecisionTensor", "fix_precision"]
