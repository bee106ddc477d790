"""The frame codec: one JSON header plus raw binary buffers, with strict bounds.

Layout (little endian)::

    b"DU" | u8 protocol version | u8 flags (0) | u32 header length | u32 buffer count
    | u64 length of each buffer | header (UTF-8 JSON) | buffers, back to back

The header holds the messages; tensors and bytes inside them refer to buffers by index, so
tensor data is never turned into text. Decoding checks every length against the frame before
touching it: any malformed input raises ProtocolError, never another exception.

Size limits are checked from lengths, before bytes are joined or buffered: ``encode_frame`` with
``max_frame_bytes`` refuses a frame it would have to build too large, and ``declared_size`` reads
a frame's total length from its first bytes (prefix and buffer table), so a receiver can refuse
an oversized frame from its head. Both raise ``FrameTooLarge``, a ProtocolError that concerns one
frame only: the stream it travels in stays usable.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ProtocolError

MAGIC = b"DU"
PROTOCOL_VERSION = 2  # 2: Notice
_PREFIX = struct.Struct("<2sBBII")
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_BUFFERS = 65_536
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 * 1024
HEAD_BYTES = 256 * 1024
"""How much of a refused frame's start is kept, so the receiver can say which messages it held."""


class FrameTooLarge(ProtocolError):
    """One frame is over a size limit (or could not be built in memory); nothing in it is used.

    ``size`` is the frame's size in bytes (declared, or received so far), ``limit`` the limit it
    crossed (0 when building it ran out of memory). ``head`` holds up to ``HEAD_BYTES`` of the
    frame's start when the receiver had them: ``header_of(head)`` then gives the messages'
    header, so each message can be answered with this error.
    """

    def __init__(self, message: str, *, size: int, limit: int, head: bytes = b""):
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.head = head


@dataclass(frozen=True, slots=True)
class Frame:
    header: bytes
    buffers: list[memoryview]


def encode_frame(
    header: bytes,
    buffers: Sequence[memoryview | bytes] | None = None,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> bytes:
    """Join the header and buffers into one frame.

    Raises FrameTooLarge, before allocating the frame, when it would exceed ``max_frame_bytes``
    (or the header or buffer-count limits), and when joining it runs out of memory.
    """
    buffers = buffers or []
    if len(header) > MAX_HEADER_BYTES:
        raise FrameTooLarge(
            f"a frame header of {len(header)} bytes exceeds the limit of {MAX_HEADER_BYTES} bytes "
            "(values travel in the header as JSON unless they are tensors: send large values as "
            "tensors, or in parts)",
            size=len(header),
            limit=MAX_HEADER_BYTES,
        )
    if len(buffers) > MAX_BUFFERS:
        raise FrameTooLarge(
            f"{len(buffers)} tensors or byte strings in one frame exceed the limit of "
            f"{MAX_BUFFERS} (send them in parts)",
            size=len(buffers),
            limit=MAX_BUFFERS,
        )
    lengths = [memoryview(b).nbytes for b in buffers]
    size = _PREFIX.size + 8 * len(lengths) + len(header) + sum(lengths)
    if size > max_frame_bytes:
        raise FrameTooLarge(
            f"a frame of {size} bytes exceeds the frame limit of {max_frame_bytes} bytes",
            size=size,
            limit=max_frame_bytes,
        )
    parts: list[bytes | memoryview] = [
        _PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, len(header), len(buffers)),
        struct.pack(f"<{len(lengths)}Q", *lengths),
        header,
    ]
    parts.extend(memoryview(b).cast("B") if memoryview(b).ndim != 1 else b for b in buffers)
    try:
        return b"".join(parts)
    except MemoryError:
        raise FrameTooLarge(
            f"a frame of {size} bytes could not be built: out of memory", size=size, limit=0
        ) from None


def declared_size(head: bytes | bytearray | memoryview) -> int | None:
    """The total size a frame declares in its first bytes, or None until enough have arrived.

    Needs the prefix and the buffer table (12 + 8 bytes per buffer). Raises ProtocolError when
    the head cannot start a duet frame.
    """
    view = memoryview(head)
    if view.nbytes < _PREFIX.size:
        return None
    magic, version, flags, header_len, n_buffers = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC or version != PROTOCOL_VERSION or flags != 0:
        raise ProtocolError("not the start of a duet frame of this protocol version")
    if header_len > MAX_HEADER_BYTES or n_buffers > MAX_BUFFERS:
        raise ProtocolError("frame header or buffer count exceeds the limits")
    table_end = _PREFIX.size + 8 * n_buffers
    if view.nbytes < table_end:
        return None
    lengths = struct.unpack_from(f"<{n_buffers}Q", view, _PREFIX.size)
    return table_end + header_len + sum(lengths)


def header_of(head: bytes | bytearray | memoryview) -> bytes | None:
    """The JSON header of a frame whose first bytes are ``head``, if they hold all of it."""
    view = memoryview(head)
    try:
        if declared_size(view) is None:
            return None
    except ProtocolError:
        return None
    _, _, _, header_len, n_buffers = _PREFIX.unpack_from(view, 0)
    start = _PREFIX.size + 8 * n_buffers
    if view.nbytes < start + header_len:
        return None
    return bytes(view[start : start + header_len])


def decode_frame(data: bytes, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("a frame must be bytes")
    view = memoryview(data)
    if view.nbytes > max_frame_bytes:
        raise FrameTooLarge(
            f"a frame of {view.nbytes} bytes exceeds the limit of {max_frame_bytes} bytes",
            size=view.nbytes,
            limit=max_frame_bytes,
            head=bytes(view[:HEAD_BYTES]),
        )
    if view.nbytes < _PREFIX.size:
        raise ProtocolError(
            f"frame of {view.nbytes} bytes is shorter than its {_PREFIX.size}-byte prefix"
        )
    magic, version, flags, header_len, n_buffers = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise ProtocolError("not a duet frame (bad magic bytes)")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"frame uses protocol version {version}; this side speaks version {PROTOCOL_VERSION}"
        )
    if flags != 0:
        raise ProtocolError(f"unknown frame flags {flags:#x}")
    if header_len > MAX_HEADER_BYTES or n_buffers > MAX_BUFFERS:
        raise ProtocolError("frame header or buffer count exceeds the limits")
    offset = _PREFIX.size
    table_end = offset + 8 * n_buffers
    if table_end > view.nbytes:
        raise ProtocolError("frame is truncated inside its buffer table")
    lengths = struct.unpack_from(f"<{n_buffers}Q", view, offset)
    total = table_end + header_len + sum(lengths)
    if total != view.nbytes:
        raise ProtocolError(
            f"frame lengths add up to {total} bytes but the frame has {view.nbytes}"
        )
    header = bytes(view[table_end : table_end + header_len])
    buffers = []
    pos = table_end + header_len
    for length in lengths:
        buffers.append(view[pos : pos + length])
        pos += length
    return Frame(header, buffers)
