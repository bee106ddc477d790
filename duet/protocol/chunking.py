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
``max_frame_bytes``: a frame is refused as soon as its declared size (read from its first chunk)
or the bytes received so far pass the limit, and the rest of it is discarded as it arrives,
never buffered. Refusing one frame leaves the stream usable.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator

from ..errors import ProtocolError
from .frames import HEAD_BYTES, FrameTooLarge

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
_PROBE_BYTES = 1 << 20  # how far into a frame its declared size is looked for


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

    ``feed`` returns the frame a FINAL chunk completes, else ``None``.

    A frame larger than ``max_frame_bytes`` is refused without being buffered: ``feed`` raises
    FrameTooLarge as soon as the frame's declared size (read by ``frame_size`` from its first
    bytes, when given; ``duet.protocol.frames.declared_size``) or the bytes received so far pass
    the limit. The rest of that frame is then discarded as it arrives, and the stream stays
    usable: the next frame is reassembled as usual. ``max_frame_bytes`` may be changed between
    chunks; it applies from the next chunk.

    Any malformed chunk or a sequence number out of order raises ``ProtocolError``; the stream
    is then unusable (the caller should close the channel) and every later ``feed`` raises too.
    Memory held is at most ``max_frame_bytes`` of chunk bodies.
    """

    def __init__(
        self,
        max_frame_bytes: int,
        *,
        frame_size: Callable[[bytes | memoryview], int | None] | None = None,
    ) -> None:
        if max_frame_bytes < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self.max_frame_bytes = max_frame_bytes
        self._frame_size = frame_size
        self._expected_seq = 0
        # Bodies are kept as views into the received chunks: one copy per frame (the join).
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._in_frame = False
        self._probing = False  # still looking for the frame's declared size
        self._discarding = False  # the current frame was refused: drop its chunks
        self._failed: str | None = None
        #: frames refused for their size, and the bytes of theirs that were dropped
        self.frames_refused = 0
        self.bytes_discarded = 0

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
        self._discarding = False
        logger.debug("chunk reassembly failed: %s", message)
        return ProtocolError(message)

    def _end_frame(self, seq: int) -> None:
        self._parts = []
        self._size = 0
        self._in_frame = False
        self._discarding = False
        self._expected_seq = (seq + 1) % _SEQ_MOD

    def _refuse(
        self, seq: int, size: int, declared: bool, extra: memoryview | None, final: bool
    ) -> FrameTooLarge:
        head = bytearray()
        for part in (*self._parts, *([extra] if extra is not None else [])):
            head += part[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES:
                break
        self.frames_refused += 1
        self.bytes_discarded += self._size + (len(extra) if extra is not None else 0)
        limit = self.max_frame_bytes
        if final:
            self._end_frame(seq)
        else:
            self._parts = []
            self._size = 0
            self._in_frame = True
            self._discarding = True
        what = f"of {size} bytes" if declared else f"({size} bytes so far)"
        return FrameTooLarge(
            f"frame #{seq} {what} exceeds the limit of {limit} bytes; it was refused and discarded",
            size=size,
            limit=limit,
            head=bytes(head),
        )

    def feed(self, chunk: bytes | bytearray | memoryview) -> bytes | None:
        """Add one chunk; return the completed frame, if this chunk completed one.

        Raises FrameTooLarge when this chunk shows its frame is over the limit (the stream
        stays usable), ProtocolError for a malformed chunk (the stream is then failed).
        """
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
            self._end_frame(seq)
            return None
        if self._discarding:
            self.bytes_discarded += body_size
            if flags & FLAG_FINAL:
                self._end_frame(seq)
            return None
        if not self._in_frame:
            self._probing = self._frame_size is not None
        final = bool(flags & FLAG_FINAL)
        if self._size + body_size > self.max_frame_bytes:
            body = memoryview(chunk)[HEADER_SIZE:]
            raise self._refuse(seq, self._size + body_size, False, body, final)
        self._in_frame = True
        if body_size:
            if isinstance(chunk, bytes):  # immutable: a view is safe to keep
                self._parts.append(memoryview(chunk)[HEADER_SIZE:])
            else:
                self._parts.append(bytes(chunk[HEADER_SIZE:]))
            self._size += body_size
        if self._probing and not final:
            declared = self._declared_size()
            if declared is not None and declared > self.max_frame_bytes:
                raise self._refuse(seq, declared, True, None, final)
        if not final:
            return None
        frame = b"".join(self._parts)
        self._end_frame(seq)
        return frame

    def _declared_size(self) -> int | None:
        """The size the current frame declares, once its first bytes have arrived."""
        assert self._frame_size is not None
        if self._size > _PROBE_BYTES:
            self._probing = False
            return None
        head = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        try:
            declared = self._frame_size(head)
        except ProtocolError:  # not a frame the decoder will take: it says so when it ends
            self._probing = False
            return None
        if declared is not None:
            self._probing = False
        return declared
