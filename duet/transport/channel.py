"""The Channel interface every transport implements.

A channel is a reliable, ordered, message-oriented pipe between two peers carrying whole frames
(``bytes``). Frames may be large (tens of MB): a transport that has a message-size limit chunks
and reassembles them itself. All methods are coroutines run on the library's event loop.

Cancelling ``recv`` is safe: no frame is lost. ``send`` may wait for flow control.
"""

from __future__ import annotations

import abc

from ..errors import ConnectionLost


class ChannelClosed(ConnectionLost):
    """The channel was closed by either side or the connection under it was lost."""


class Channel(abc.ABC):
    @abc.abstractmethod
    async def send(self, frame: bytes) -> None:
        """Send one frame. Raises ChannelClosed if the channel is closed."""

    @abc.abstractmethod
    async def recv(self) -> bytes:
        """Wait for the next frame. Raises ChannelClosed once the channel is closed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel; idempotent. The peer's ``recv`` raises ChannelClosed."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once the channel is closed (by either side)."""
