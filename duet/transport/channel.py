"""The Channel interface every transport implements.

A channel is a reliable, ordered, message-oriented pipe between two peers carrying whole frames
(``bytes``). Frames may be large (tens of MB): a transport that has a message-size limit chunks
and reassembles them itself. All methods are coroutines run on the library's event loop.

Cancelling ``recv`` is safe: no frame is lost. ``send`` may wait for flow control; a transport
with flow control closes the channel when the peer has not taken anything for
``stall_timeout_secs`` (a peer that stopped reading), and ``send`` then raises ChannelClosed.

Incoming frames are bounded by ``max_frame_bytes``, which may be lowered or raised at any time
with ``set_max_frame_bytes``: a larger frame is refused, ``recv`` raises FrameTooLarge for it
(in its place in the stream) and the channel stays open. A transport that receives frames in
pieces refuses one from its first bytes and drops the rest as it arrives, never holding it.

A transport may also hand frames on as they complete (``deliver_to``): the reader then takes
each frame in the same step of the loop that completed it, instead of a step later, after the
transport has finished its own work for that packet (a WebRTC side's acknowledgement, its
encryption and sending: ~50-80 us of a round trip on each side). ``recv`` still yields what the
receiver was not handed, in order: frames that completed while earlier ones waited there, the
refusals and the end of the stream.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable

from ..errors import ConnectionLost
from ..protocol.frames import DEFAULT_MAX_FRAME_BYTES

DEFAULT_STALL_SECS = float(os.environ.get("DUET_STALL_SECS", 15.0))
"""How long a peer may take nothing we send (while we have something to send) before it is
dropped. Long enough for a slow link to move one flow-control window, short enough that a peer
that stopped reading does not hold the other side's memory for long."""


class ChannelClosed(ConnectionLost):
    """The channel was closed by either side or the connection under it was lost."""


class Channel(abc.ABC):
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    stall_timeout_secs: float = DEFAULT_STALL_SECS
    #: when this channel last moved bytes of an outgoing frame towards the peer (monotonic
    #: seconds; 0.0 if it does not tell): a long transfer that progresses is not a stall
    last_progress: float = 0.0

    @abc.abstractmethod
    async def send(self, frame: bytes) -> None:
        """Send one frame. Raises ChannelClosed if the channel is closed."""

    @abc.abstractmethod
    async def recv(self) -> bytes:
        """Wait for the next frame. Raises ChannelClosed once the channel is closed, and
        FrameTooLarge for a frame over ``max_frame_bytes`` (the channel stays open)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel; idempotent. The peer's ``recv`` raises ChannelClosed."""

    @property
    @abc.abstractmethod
    def closed(self) -> bool:
        """True once the channel is closed (by either side)."""

    def deliver_to(self, receiver: Callable[[bytes], None]) -> bool:
        """Hand each frame to ``receiver`` (on the loop, in order) as it completes, when nothing
        waits in front of it for ``recv``; returns False if this transport cannot (then
        every frame comes through ``recv``). ``receiver`` must not raise."""
        return False

    def set_max_frame_bytes(self, limit: int) -> None:
        """Refuse incoming frames larger than ``limit`` bytes from now on (any thread)."""
        if limit < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self.max_frame_bytes = limit
