"""A Channel over one aiortc WebRTC data channel, and the offer/answer helpers that set it up.

The scientist calls ``create_offer`` and ships the offer SDP through signaling; the owner calls
``answer_offer`` with it and ships the answer back; then ``OfferingPeer.accept_answer`` and
``AnsweringPeer.channel`` each return a connected ``WebRTCChannel``. Nothing here speaks to a
signaling server: SDP strings are passed in and out by the caller.

Frames are split into chunks (``duet.protocol.chunking``) no larger than the peer's advertised
``max-message-size``. ``send`` stops queueing while the data channel's ``bufferedAmount`` is above
a high-water mark and resumes on ``bufferedamountlow``, so a 50 MB frame never sits in memory
twice. ICE uses only the configured STUN/TURN servers (never aiortc's default public STUN
server) and, if ``ice_hosts`` or ``$DUET_ICE_HOSTS`` is set, only those local addresses
(see ``duet.transport.ice``).

The DTLS certificate fingerprint in each SDP names the peer the data channel will be encrypted
to: ``client_id_from_fingerprint`` turns it into a short code the scientist prints and the owner
compares, so a signaling server that swapped the offer is caught.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from aiortc import (
    InvalidStateError,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from ..errors import DuetError, DuetTimeout, NetworkError, ProtocolError
from ..protocol import chunking
from ..protocol.chunking import DEFAULT_CHUNK_SIZE
from .channel import Channel, ChannelClosed
from .ice import (
    check_host_candidates,
    chunk_size_for_peer,
    client_id_from_fingerprint,
    dtls_fingerprint,
    ice_configuration,
    resolve_ice_hosts,
    restricted_host_addresses,
    sdp_candidate_addresses,
    without_mdns_candidates,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AnsweringPeer",
    "OfferingPeer",
    "WebRTCChannel",
    "answer_offer",
    "client_id_from_fingerprint",
    "create_offer",
    "dtls_fingerprint",
    "sdp_candidate_addresses",
]

DEFAULT_MAX_FRAME_BYTES = 1 << 30
HIGH_WATER = int(os.environ.get("DUET_HIGH_WATER", 1 << 20))  # pause above this much queued
LOW_WATER = int(os.environ.get("DUET_LOW_WATER", 256 << 10))  # resume once drained to this
DEFAULT_STALL_TIMEOUT = 120.0  # no drain progress for this long: the connection is dead
DEFAULT_GATHER_TIMEOUT = 30.0
_CLOSED = object()


class WebRTCChannel(Channel):
    """A Channel over one ordered, reliable ``RTCDataChannel``; owns its peer connection."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        dc: RTCDataChannel,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        stall_timeout_secs: float = DEFAULT_STALL_TIMEOUT,
    ) -> None:
        self._pc = pc
        self._dc = dc
        self.chunk_size = chunk_size
        self._stall_timeout = stall_timeout_secs
        self._reassembler = chunking.Reassembler(max_frame_bytes)
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._send_lock = asyncio.Lock()
        self._send_seq = 0
        self._drained = asyncio.Event()
        self._opened = asyncio.Event()
        self._closed = False
        self._reason = ""
        self._close_task: asyncio.Task[None] | None = None
        # when the peer last sent us anything, even a chunk of a frame still arriving: the
        # session's heartbeat counts it, so a long transfer is not taken for a dead peer
        self.last_activity = time.monotonic()
        dc.bufferedAmountLowThreshold = LOW_WATER
        dc.on("message", self._on_message)
        dc.on("bufferedamountlow", self._drained.set)
        dc.on("open", self._opened.set)
        dc.on("close", lambda: self._lost("the peer closed the data channel"))
        pc.on("connectionstatechange", self._on_connection_state)
        if dc.readyState == "open":
            self._opened.set()
        elif dc.readyState in ("closing", "closed"):
            self._lost("the data channel closed before it opened")

    # -- events (called synchronously by aiortc; must not raise) ---------------------------

    def _on_message(self, data: object) -> None:
        if self._closed:
            return
        self.last_activity = time.monotonic()
        if not isinstance(data, bytes):
            self._protocol_failure(ProtocolError("received a text message on the data channel"))
            return
        try:
            frame = self._reassembler.feed(data)
        except ProtocolError as exc:
            self._protocol_failure(exc)
            return
        if frame is not None:
            self._inbox.put_nowait(frame)

    def _protocol_failure(self, exc: ProtocolError) -> None:
        logger.warning("closing the WebRTC channel: %s", exc)
        self._inbox.put_nowait(exc)
        self._lost(f"protocol error: {exc}")

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        logger.debug("peer connection state: %s", state)
        if state in ("failed", "closed"):
            self._lost(f"the peer connection is {state}")

    def _lost(self, reason: str) -> None:
        """Mark closed, wake every waiter and release the connection in the background."""
        if not self._closed:
            logger.info("WebRTC channel closed: %s", reason)
            self._closed = True
            self._reason = reason
            self._inbox.put_nowait(_CLOSED)
            self._drained.set()
            self._opened.set()
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._shutdown())

    async def _shutdown(self) -> None:
        try:
            if self._dc.readyState in ("connecting", "open"):
                self._dc.close()
            await self._pc.close()
        except Exception:
            logger.debug("error while closing the peer connection", exc_info=True)

    # -- Channel -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _closed_error(self) -> ChannelClosed:
        return ChannelClosed(f"the WebRTC channel is closed ({self._reason})")

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise self._closed_error()

    async def send(self, frame: bytes) -> None:
        if not isinstance(frame, bytes | bytearray | memoryview):
            raise TypeError("a channel carries encoded frames (bytes) only")
        self._raise_if_closed()
        async with self._send_lock:
            seq = self._send_seq
            self._send_seq = (seq + 1) % (1 << 32)
            sent = False
            try:
                for chunk in chunking.split_frame(frame, seq, self.chunk_size):
                    if self._dc.bufferedAmount > HIGH_WATER:
                        await self._wait_drained()
                    self._raise_if_closed()
                    self._dc.send(chunk)
                    sent = True
            except InvalidStateError as exc:
                self._lost("the data channel is no longer open")
                raise self._closed_error() from exc
            except BaseException:
                # Cancelled or failed half-way: keep the chunk stream consistent for the peer.
                if not sent:
                    self._send_seq = seq
                elif not self._closed and self._dc.readyState == "open":
                    self._dc.send(chunking.abort_chunk(seq))
                raise

    async def _wait_drained(self) -> None:
        while self._dc.bufferedAmount > LOW_WATER:
            self._raise_if_closed()
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), self._stall_timeout)
            except TimeoutError:
                self._lost("sending stalled")
                raise DuetTimeout(
                    f"the data channel did not drain for {self._stall_timeout:g} s "
                    f"({self._dc.bufferedAmount} bytes queued); closing the channel"
                ) from None
        self._raise_if_closed()

    async def recv(self) -> bytes:
        if self._closed and self._inbox.empty():
            raise self._closed_error()
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later recv raises too
            raise self._closed_error()
        if isinstance(item, ProtocolError):
            raise item
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        self._lost("closed locally")
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def _wait_open(self, timeout_secs: float) -> None:
        try:
            await asyncio.wait_for(self._opened.wait(), timeout_secs)
        except TimeoutError:
            await self.close()
            raise DuetTimeout(
                f"the WebRTC data channel did not open within {timeout_secs:g} s "
                f"(ICE state {self._pc.iceConnectionState}, connection state "
                f"{self._pc.connectionState})"
            ) from None
        if self._closed:
            await self.close()
            raise NetworkError(f"the WebRTC connection could not be set up ({self._reason})")


async def _set_local(pc: RTCPeerConnection, hosts: tuple[str, ...] | None, timeout: float) -> str:
    """Create and apply the local offer/answer (this gathers candidates); return its SDP."""
    try:
        with restricted_host_addresses(hosts):
            desc = await (pc.createOffer() if pc.signalingState == "stable" else pc.createAnswer())
            await asyncio.wait_for(pc.setLocalDescription(desc), timeout)
        sdp: str = pc.localDescription.sdp
        check_host_candidates(sdp, hosts)  # NetworkError: never hand out a foreign address
        return sdp
    except BaseException as exc:
        await pc.close()
        if isinstance(exc, DuetError) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, TimeoutError):
            raise DuetTimeout(f"ICE gathering did not finish within {timeout:g} s") from None
        raise NetworkError(f"could not create the local WebRTC description: {exc}") from exc


async def _set_remote(
    pc: RTCPeerConnection, sdp: str, kind: str, hosts: tuple[str, ...] | None
) -> None:
    if hosts is not None:
        sdp = without_mdns_candidates(sdp)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
    except Exception as exc:
        await pc.close()
        raise NetworkError(f"the peer's WebRTC {kind} was refused: {exc}") from exc


class OfferingPeer:
    """The scientist's side before the answer arrives. Show ``client_id`` to the owner."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        channel: WebRTCChannel,
        offer_sdp: str,
        hosts: tuple[str, ...] | None = None,
    ) -> None:
        self._pc = pc
        self._channel = channel
        self._hosts = hosts
        self.offer_sdp = offer_sdp
        self.fingerprint = dtls_fingerprint(offer_sdp)
        self.client_id = client_id_from_fingerprint(self.fingerprint)
        self.peer_fingerprint: str | None = None

    async def accept_answer(self, answer_sdp: str, *, timeout_secs: float) -> WebRTCChannel:
        """Apply the owner's answer and wait until the data channel is open."""
        try:
            self.peer_fingerprint = dtls_fingerprint(answer_sdp)
        except ProtocolError:
            await self.close()
            raise
        await _set_remote(self._pc, answer_sdp, "answer", self._hosts)
        self._channel.chunk_size = chunk_size_for_peer(answer_sdp, self._channel.chunk_size)
        await self._channel._wait_open(timeout_secs)
        return self._channel

    async def close(self) -> None:
        await self._channel.close()


class AnsweringPeer:
    """The owner's side after answering. ``peer_client_id`` must match what the scientist shows."""

    def __init__(self, pc: RTCPeerConnection, offer_sdp: str, **channel_options: Any) -> None:
        self._pc = pc
        self._options = channel_options
        self.offer_sdp = offer_sdp
        self.peer_fingerprint = dtls_fingerprint(offer_sdp)
        self.peer_client_id = client_id_from_fingerprint(self.peer_fingerprint)
        self.answer_sdp = ""
        self._channel: WebRTCChannel | None = None
        self._arrived = asyncio.Event()
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)

    def _on_datachannel(self, dc: RTCDataChannel) -> None:
        if self._channel is not None:
            logger.warning("ignoring an extra data channel %r from the peer", dc.label)
            dc.close()
            return
        # Created synchronously, so no message can arrive before its listener is attached.
        self._channel = WebRTCChannel(self._pc, dc, **self._options)
        self._arrived.set()

    def _on_connection_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed"):
            self._arrived.set()

    async def channel(self, timeout_secs: float) -> WebRTCChannel:
        """Wait until the scientist's data channel has arrived and is open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_secs
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout_secs)
        except TimeoutError:
            await self.close()
            raise DuetTimeout(
                f"the scientist's data channel did not arrive within {timeout_secs:g} s "
                f"(connection state {self._pc.connectionState})"
            ) from None
        if self._channel is None:
            state = self._pc.connectionState
            await self.close()
            raise NetworkError(f"the WebRTC connection is {state} before the data channel opened")
        await self._channel._wait_open(max(0.0, deadline - loop.time()))
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        else:
            await self._pc.close()


async def create_offer(
    *,
    ice_servers: Sequence[str | RTCIceServer] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = DEFAULT_GATHER_TIMEOUT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> tuple[OfferingPeer, str]:
    """Scientist: a peer connection with one data channel; returns it and the complete offer."""
    hosts = resolve_ice_hosts(ice_hosts)
    pc = RTCPeerConnection(ice_configuration(ice_servers))
    dc = pc.createDataChannel("duet", ordered=True)
    # Created now so its message listener is attached before the channel can open.
    channel = WebRTCChannel(pc, dc, chunk_size=chunk_size, max_frame_bytes=max_frame_bytes)
    sdp = await _set_local(pc, hosts, timeout_secs)
    return OfferingPeer(pc, channel, sdp, hosts), sdp


async def answer_offer(
    offer_sdp: str,
    *,
    ice_servers: Sequence[str | RTCIceServer] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = DEFAULT_GATHER_TIMEOUT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> tuple[AnsweringPeer, str]:
    """Owner: answer the scientist's offer; returns the peer and the complete answer SDP."""
    hosts = resolve_ice_hosts(ice_hosts)
    dtls_fingerprint(offer_sdp)  # ProtocolError before any socket is opened
    size = chunk_size_for_peer(offer_sdp, chunk_size)
    pc = RTCPeerConnection(ice_configuration(ice_servers))
    peer = AnsweringPeer(pc, offer_sdp, chunk_size=size, max_frame_bytes=max_frame_bytes)
    await _set_remote(pc, offer_sdp, "offer", hosts)
    peer.answer_sdp = await _set_local(pc, hosts, timeout_secs)
    return peer, peer.answer_sdp
