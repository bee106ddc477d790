"""The ring Z(2^64) that shares live in, and fixed-point encoding into it.

Elements are torch int64 tensors: torch's int64 add, sub, mul, matmul and sum wrap modulo 2^64
(two's complement), which is exactly the ring's arithmetic. Read as signed, an element encodes
a value in [-2^63, 2^63); fixed point scales by 2^precision_fractional.

Randomness comes from the operating system (``os.urandom``) or, where a seed is expanded into
a stream (the crypto provider's dealings), from ChaCha20 (``cryptography``); never from torch's
or numpy's statistical generators.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ..errors import UsageError

SEED_BYTES = 32
DEFAULT_FRACTIONAL_BITS = 16
# encoded magnitudes stay below 2^62: a sum of two still fits, and the provider's truncation
# (truncation.py) needs |z| < 2^62 before it shifts
ENCODED_LIMIT = 2**62
MAX_FRACTIONAL_BITS = 32


def new_seed() -> bytes:
    return os.urandom(SEED_BYTES)


def _from_bytes(data: bytes, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    array = np.frombuffer(data, dtype="<i8").astype(np.int64)
    return torch.from_numpy(array).reshape(shape)


def uniform(shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Uniform elements of Z(2^64) from the operating system's generator."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    return _from_bytes(os.urandom(8 * count), shape)


def stream(seed: bytes, shape: torch.Size | tuple[int, ...], *, label: int) -> torch.Tensor:
    """Uniform elements of Z(2^64): ChaCha20's key stream under ``seed``; each ``label`` (the
    nonce) gives an independent stream from the same seed."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    nonce = label.to_bytes(16, "little")
    encryptor = Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor()
    return _from_bytes(encryptor.update(bytes(8 * count)), shape)


def check_fractional_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise UsageError(f"precision_fractional must be an int, not {type(bits).__name__}")
    if not 0 <= bits <= MAX_FRACTIONAL_BITS:
        raise UsageError(
            f"precision_fractional={bits} is out of range: use 0 to {MAX_FRACTIONAL_BITS} "
            f"(default {DEFAULT_FRACTIONAL_BITS})"
        )
    return bits


def encode(value: torch.Tensor | int | float, fractional_bits: int) -> torch.Tensor:
    """``value`` in fixed point: round(value * 2^fractional_bits) as int64.

    Raises UsageError for values that are not finite or whose encoding reaches 2^62
    (|value| >= 2^(62 - fractional_bits): 2^46 at 16 bits)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    limit = f"2^{62 - fractional_bits}"
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise UsageError(f"fixed precision takes real numbers, not {tensor.dtype}")
    if tensor.is_floating_point():
        scaled = torch.round(tensor.detach().double() * 2.0**fractional_bits)
        if not bool(torch.isfinite(scaled).all()):
            raise UsageError("fixed precision cannot encode inf or nan")
        if scaled.numel() and float(scaled.abs().max()) >= ENCODED_LIMIT:
            raise UsageError(
                f"a value of magnitude {float(tensor.abs().max()):.4g} is out of the fixed-point "
                f"range: |x| < {limit} with precision_fractional={fractional_bits}"
            )
        return scaled.long()
    wide = tensor.detach().long()
    if wide.numel() and int(wide.abs().max()) >= ENCODED_LIMIT >> fractional_bits:
        raise UsageError(
            f"an integer of magnitude {int(wide.abs().max())} is out of the fixed-point range: "
            f"|x| < {limit} with precision_fractional={fractional_bits}"
        )
    return wide * (1 << fractional_bits)


def decode(encoded: torch.Tensor, fractional_bits: int, dtype: torch.dtype) -> torch.Tensor:
    """The values ``encoded`` stands for, as ``dtype`` (via float64)."""
    return (encoded.double() / 2.0**fractional_bits).to(dtype)


__all__ = [
    "DEFAULT_FRACTIONAL_BITS",
    "ENCODED_LIMIT",
    "check_fractional_bits",
    "decode",
    "encode",
    "new_seed",
    "stream",
    "uniform",
]
