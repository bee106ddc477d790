"""Uniform words of Z(2^64) from ChaCha20 (``cryptography``): the pairwise and self masks
(keyed by what the owners agreed) and the quantiser's rounding coins (keyed from
``os.urandom``). It imports nothing of duet, so the quantiser and the protocol both can.

A stream is read a piece at a time (``PIECE`` words, 128 KiB: it stays in a core's cache), and
masks are added to a vector piece by piece (``KeyStreams``): a 1M-word update masked by eight
streams then costs no full-size temporary array. Whole vectors of glibc-sized temporaries were
what a round spent most on: each freed 8 MB array went back to the system and the next one was
faulted in again, page by page (``bench/README.md``, secure aggregation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KEY = 32
PIECE = 1 << 14  # words read or masked at a time
_ZEROS = bytes(8 * PIECE)  # ChaCha20 of zeros is its key stream


class Words:
    """One ChaCha20 key stream under ``key``, read as uint64 words, a piece at a time, into
    ``buffer`` (``PIECE + 2`` words; streams used one after the other may share one)."""

    def __init__(self, key: bytes, buffer: np.ndarray | None = None):
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
        # update_into wants room past the data's end
        self._buffer = np.empty(PIECE + 2, dtype="<u8") if buffer is None else buffer
        self._bytes = self._buffer.data.cast("B")

    def next(self, count: int) -> np.ndarray:
        """The stream's next ``count`` words (at most ``PIECE``), in a buffer this object
        reuses: valid until the next call."""
        written = self._stream.update_into(memoryview(_ZEROS)[: 8 * count], self._bytes)
        assert written == 8 * count
        return self._buffer[:count].view(np.uint64)


class KeyStreams:
    """Key streams added to (``add``) or subtracted from (``subtract``) a ring vector, in
    wrapping uint64 arithmetic, in order: each ``apply(piece)`` takes the next ``len(piece)``
    words of every stream, so applying them to consecutive pieces of a vector equals adding
    (subtracting) ``mask(key, len(vector))`` to the whole of it."""

    def __init__(self, add: Iterable[bytes] = (), subtract: Iterable[bytes] = ()):
        shared = np.empty(PIECE + 2, dtype="<u8")  # one piece in cache whatever the count
        self._streams = [(Words(key, shared), True) for key in add]
        self._streams += [(Words(key, shared), False) for key in subtract]

    def apply(self, piece: np.ndarray) -> None:
        """Add and subtract the streams' next words to ``piece`` (uint64), in place."""
        for start in range(0, piece.size, PIECE):
            part = piece[start : start + PIECE]
            for words, plus in self._streams:
                if plus:
                    part += words.next(part.size)
                else:
                    part -= words.next(part.size)


def mask(key: bytes, count: int) -> np.ndarray:
    """``count`` uniform elements of Z(2^64): the ChaCha20 key stream under ``key``, written
    straight into a writable array (``update_into``: no intermediate bytes, no copy)."""
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    out = np.empty(count + 2, dtype="<u8")  # update_into wants room past the data's end
    written = stream.update_into(bytes(8 * count), out.data.cast("B"))
    assert written == 8 * count
    return out[:count].view(np.uint64)


def random_words() -> Words:
    """Uniform 64-bit words from a cryptographic generator: ChaCha20 under a fresh key from
    ``os.urandom`` (the operating system's generator, about three times slower for a million
    words, seeds it; the key is dropped with the object, so nothing can replay the stream)."""
    return Words(os.urandom(KEY))


__all__ = ["PIECE", "KeyStreams", "Words", "mask", "random_words"]
