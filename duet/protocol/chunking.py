"""Split frames into bounded chunks and reassemble them (pure, no I/O).

A transport with a message-size limit (a WebRTC data channel accepts 64 KiB messages from any
peer, 256 KiB between aiortc peers) carries a frame as one or more *chunks*. Each chunk is one
transport message::

    +-------+----------------+------------------+
    | flags | frame sequence | body             |
    | u8    | u32 big-endian | 0..n bytes       |
    +-------+----------------+------------------+

``flags``: bit 0 ``FINAL`` marks the last chunk of a frame; bit 1 ``ABORT`` tells the receiver
to drop the partial frame with that sequence number (the sender was cancelled half-way; an
abort chunk has no body and does not carry FINAL). Other bits must be zero.

``frame sequence`` numbers frames 0, 1, 2, ... (modulo 2**32) per direction; all chunks of one
frame carry the same number. The receiver checks it, so chunks of two frames interleaved by a
buggy sender, or a lost or duplicated chunk, are a ``ProtocolError`` instead of a silently
corrupted frame. An aborted frame uses up its sequence number.

``chunk_size`` is the size of a whole chunk, header included, so it can be set to the
transport's maximum message size directly. The receiver bounds memory with
``max_frame_bytes``: a frame that would grow beyond it is refused as soon as the chunk that
crosses the limit arrives.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator

from ..errors import ProtocolError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FLAG_ABORT",
    "FLAG_FINAL",
    "HEADER_SIZE",
    "MIN_CHUNK_SIZE",
    "Reassembler",
    "abort_chunk",
    "chunk_count",
    "split_frame",
]

_HEADER = struct.Struct("!BI")
HEADER_SIZE = _HEADER.size  # 5 bytes
FLAG_FINAL = 0x01
FLAG_ABORT = 0x02
_KNOWN_FLAGS = FLAG_FINAL | FLAG_ABORT
_SEQ_MOD = 1 << 32

DEFAULT_CHUNK_SIZE = 64 * 1024
"""64 KiB: the largest message every WebRTC implementation must accept (RFC 8841 section 6)."""

MIN_CHUNK_SIZE = HEADER_SIZE + 1


def _check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or chunk_size < MIN_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be an int >= {MIN_CHUNK_SIZE}, got {chunk_size!r}")
    return chunk_size


def split_frame(
    frame: bytes | bytearray | memoryview, seq: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[bytes]:
    """Yield the chunks of ``frame`` (sequence number ``seq``), each at most ``chunk_size`` bytes.

    The frame is sliced through a memoryview, so each chunk costs exactly one copy (header and
    body joined into the ``bytes`` the transport needs). An empty frame is one FINAL chunk with
    no body.
    """
    _check_chunk_size(chunk_size)
    seq %= _SEQ_MOD
    view = memoryview(frame).cast("B")
    body_size = chunk_size - HEADER_SIZE
    total = len(view)
    more = _HEADER.pack(0, seq)
    last = _HEADER.pack(FLAG_FINAL, seq)
    pos = 0
    while True:
        end = pos + body_size
        if end >= total:
            yield b"".join((last, view[pos:total]))
            return
        yield b"".join((more, view[pos:end]))
        pos = end


def chunk_count(frame_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """How many chunks ``split_frame`` produces for a frame of ``frame_size`` bytes."""
    body_size = _check_chunk_size(chunk_size) - HEADER_SIZE
    return max(1, -(-frame_size // body_size))


def abort_chunk(seq: int) -> bytes:
    """The chunk that tells the receiver to drop the partial frame ``seq``."""
    return _HEADER.pack(FLAG_ABORT, seq % _SEQ_MOD)


class Reassembler:
    """Turns chunks, fed in the order they were sent, back into whole frames.

    ``feed`` returns the frame a FINAL chunk completes, else ``None``. Any malformed chunk, a
    sequence number out of order or a frame larger than ``max_frame_bytes`` raises
    ``ProtocolError``; the stream is then unusable (the caller should close the channel) and
    every later ``feed`` raises too. Memory held is at most ``max_frame_bytes`` of chunk bodies.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self.max_frame_bytes = max_frame_bytes
        self._expected_seq = 0
        # Bodies are kept as views into the received chunks: one copy per frame (the join).
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._in_frame = False
        self._failed: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes of the partial frame held so far."""
        return self._size

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but its FINAL chunk has not arrived."""
        return self._in_frame

    def _fail(self, message: str) -> ProtocolError:
        self._failed = message
        self._parts = []
        self._size = 0
        self._in_frame = False
        logger.debug("chunk reassembly failed: %s", message)
        return ProtocolError(message)

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes | None:
        """Add one chunk; return the completed frame, if this chunk completed one."""
        if self._failed is not None:
            raise ProtocolError(f"chunk stream already failed: {self._failed}")
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise self._fail(f"a chunk must be bytes, got {type(chunk).__name__}")
        size = len(chunk)
        if size < HEADER_SIZE:
            raise self._fail(f"chunk of {size} bytes is shorter than the {HEADER_SIZE}-byte header")
        flags, seq = _HEADER.unpack_from(chunk)
        if flags & ~_KNOWN_FLAGS:
            raise self._fail(f"chunk has unknown flags 0x{flags:02x}")
        if seq != self._expected_seq:
            raise self._fail(
                f"chunk for frame #{seq} while frame #{self._expected_seq} was expected"
            )
        body_size = size - HEADER_SIZE
        if flags & FLAG_ABORT:
            if flags & FLAG_FINAL or body_size:
                raise self._fail("an abort chunk must have no body and no FINAL flag")
            logger.debug("frame #%d aborted by the sender after %d bytes", seq, self._size)
            self._parts = []
            self._size = 0
            self._in_frame = False
            self._expected_seq = (seq + 1) % _SEQ_MOD
            return None
        if self._size + body_size > self.max_frame_bytes:
            raise self._fail(
                f"frame #{seq} exceeds the limit of {self.max_frame_bytes} bytes "
                f"({self._size + body_size} bytes so far)"
            )
        self._in_frame = True
        if body_size:
            if isinstance(chunk, bytes):  # immutable: a view is safe to keep
                self._parts.append(memoryview(chunk)[HEADER_SIZE:])
            else:
                self._parts.append(bytes(chunk[HEADER_SIZE:]))
            self._size += body_size
        if not flags & FLAG_FINAL:
            return None
        parts = self._parts
        frame = b"".join(parts)
        self._parts = []
        self._size = 0
        self._in_frame = False
        self._expected_seq = (seq + 1) % _SEQ_MOD
        return frame
