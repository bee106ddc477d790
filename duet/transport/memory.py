"""An in-memory channel pair: both ends live on one event loop and pass real encoded frames.

Sending never waits (the frame is already in this process's memory); a frame over the
receiver's ``max_frame_bytes`` is refused by its ``recv`` like any other transport's.
"""

from __future__ import annotations

import asyncio

from ..protocol.frames import HEAD_BYTES, FrameTooLarge
from .channel import Channel, ChannelClosed

_CLOSED = object()


class MemoryChannel(Channel):
    def __init__(self) -> None:
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._peer: MemoryChannel | None = None
        self._closed = False

    async def send(self, frame: bytes) -> None:
        if self._closed or self._peer is None or self._peer._closed:
            raise ChannelClosed("the in-memory channel is closed")
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise TypeError("a channel carries encoded frames (bytes) only")
        self._peer._inbox.put_nowait(bytes(frame))

    async def recv(self) -> bytes:
        if self._closed and self._inbox.empty():
            raise ChannelClosed("the in-memory channel is closed")
        item = await self._inbox.get()
        if item is _CLOSED:
            self._closed = True
            raise ChannelClosed("the peer closed the in-memory channel")
        assert isinstance(item, bytes)
        if len(item) > self.max_frame_bytes:
            raise FrameTooLarge(
                f"a frame of {len(item)} bytes exceeds the limit of {self.max_frame_bytes} "
                "bytes; it was refused",
                size=len(item),
                limit=self.max_frame_bytes,
                head=item[:HEAD_BYTES],
            )
        return item

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.put_nowait(_CLOSED)
        if self._peer is not None and not self._peer._closed:
            self._peer._inbox.put_nowait(_CLOSED)

    @property
    def closed(self) -> bool:
        return self._closed


def memory_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels; create them on the loop that will use them."""
    a, b = MemoryChannel(), MemoryChannel()
    a._peer, b._peer = b, a
    return a, b
