"""The frame codec: one JSON header plus raw binary buffers, with strict bounds.

Layout (little endian)::

    b"DU" | u8 protocol version | u8 flags (0) | u32 header length | u32 buffer count
    | u64 length of each buffer | header (UTF-8 JSON) | buffers, back to back

The header holds the messages; tensors and bytes inside them refer to buffers by index, so
tensor data is never turned into text. Decoding checks every length against the frame before
touching it: any malformed input raises ProtocolError, never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ProtocolError

MAGIC = b"DU"
PROTOCOL_VERSION = 1
_PREFIX = struct.Struct("<2sBBII")
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_BUFFERS = 65_536
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    header: bytes
    buffers: list[memoryview]


def encode_frame(header: bytes, buffers: Sequence[memoryview | bytes] | None = None) -> bytes:
    buffers = buffers or []
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    if len(buffers) > MAX_BUFFERS:
        raise ProtocolError(f"{len(buffers)} buffers in one frame exceed {MAX_BUFFERS}")
    lengths = [memoryview(b).nbytes for b in buffers]
    parts: list[bytes | memoryview] = [
        _PREFIX.pack(MAGIC, PROTOCOL_VERSION, 0, len(header), len(buffers)),
        struct.pack(f"<{len(lengths)}Q", *lengths),
        header,
    ]
    parts.extend(memoryview(b).cast("B") if memoryview(b).ndim != 1 else b for b in buffers)
    return b"".join(parts)


def decode_frame(data: bytes, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Frame:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("a frame must be bytes")
    view = memoryview(data)
    if view.nbytes > max_frame_bytes:
        raise ProtocolError(f"frame of {view.nbytes} bytes exceeds the limit of {max_frame_bytes}")
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
