"""Uniform words of Z(2^64) from ChaCha20 (``cryptography``): the pairwise and self masks
(keyed by what the owners agreed) and the quantiser's rounding coins (keyed from
``os.urandom``). It imports nothing of duet, so the quantiser and the protocol both can.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KEY = 32


def mask(key: bytes, count: int) -> np.ndarray:
    """``count`` uniform elements of Z(2^64): the ChaCha20 key stream under ``key``, written
    straight into a writable array (``update_into``: no intermediate bytes, no copy)."""
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    out = np.empty(count + 2, dtype="<u8")  # update_into wants room past the data's end
    written = stream.update_into(bytes(8 * count), out.data.cast("B"))
    assert written == 8 * count
    return out[:count].view(np.uint64)


def random_words(count: int) -> np.ndarray:
    """``count`` uniform 64-bit words from a cryptographic generator: ChaCha20 under a fresh
    key from ``os.urandom`` (the operating system's generator, about three times slower for a
    million words, seeds it; the key is dropped, so nothing can replay the stream)."""
    return mask(os.urandom(KEY), count)


__all__ = ["mask", "random_words"]
