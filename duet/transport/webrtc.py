"""A Channel over one aiortc WebRTC data channel, and the offer/answer helpers that set it up.

The scientist calls ``create_offer`` and ships the offer SDP through signaling; the owner calls
``answer_offer`` with it and ships the answer back; then ``OfferingPeer.accept_answer`` and
``AnsweringPeer.channel`` each return a connected ``WebRTCChannel``. Nothing here speaks to a
signaling server: SDP strings are passed in and out by the caller.

Frames are split into chunks (``duet.protocol.chunking``) no larger than the peer's advertised
``max-message-size``. ``send`` stops queueing while the data channel's ``bufferedAmount`` is above
a high-water mark and resumes on ``bufferedamountlow``, so a 50 MB frame never sits in memory
twice. A peer that takes nothing for ``stall_timeout_secs`` (it stopped acknowledging) closes the
channel with that reason. Incoming frames over ``max_frame_bytes`` (adjustable with
``set_max_frame_bytes``) are refused from their first chunk and the rest of them dropped as it
arrives; ``recv`` raises FrameTooLarge in their place and the channel stays open. ICE uses only the configured STUN/TURN servers (never aiortc's default public STUN
server) and, if ``ice_hosts`` or ``$DUET_ICE_HOSTS`` is set, only those local addresses
(see ``duet.transport.ice``).

Who the peer is: each side's DTLS certificate is shortened to an ID (the scientist's client ID,
the owner's ID; ``duet.transport.identity``). A peer SDP is read strictly (``duet.transport.sdp``)
and its fingerprint gives the ID to confirm; once the data channel is open, and before it is
handed to anyone, the certificate the peer actually presented in the DTLS handshake is compared
with that ID (or with the one the caller expects): a mismatch closes the connection with a
HandshakeError, however the SDP was written.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import (
    InvalidStateError,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcdtlstransport import RTCCertificate

from ..errors import DuetError, DuetTimeout, HandshakeError, NetworkError, ProtocolError
from ..protocol import chunking
from ..protocol.chunking import DEFAULT_CHUNK_SIZE
from ..protocol.frames import FrameTooLarge, declared_size
from .channel import DEFAULT_STALL_SECS, Channel, ChannelClosed
from .ice import (
    check_host_candidates,
    ice_configuration,
    resolve_ice_hosts,
    restricted_host_addresses,
    sdp_candidate_addresses,
    without_mdns_candidates,
)
from .identity import (
    certificate_fingerprint,
    check_presented,
    client_id_from_fingerprint,
    new_certificate,
    normalize_id,
    peer_connection,
    presented_fingerprint,
)
from .peer import Certificate
from .sdp import check_peer_sdp, chunk_size_for_peer, dtls_fingerprint

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
# no drain progress for this long: the peer stopped acknowledging, the channel is closed
DEFAULT_STALL_TIMEOUT = DEFAULT_STALL_SECS
# Network emulation (benchmarks, tests of slow links): with DUET_EMULATED_DELAY_MS set when a
# channel is made, each frame it receives is handed on that many milliseconds after it arrived,
# in order, as over a link with that one-way latency.
EMULATED_DELAY_VAR = "DUET_EMULATED_DELAY_MS"
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
        self.stall_timeout_secs = stall_timeout_secs
        self.max_frame_bytes = max_frame_bytes
        self._reassembler = chunking.Reassembler(max_frame_bytes, frame_size=declared_size)
        self._inbox: asyncio.Queue[object] = asyncio.Queue()
        self._receiver: Callable[[bytes], None] | None = None
        self._delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self._delay_secs = float(os.environ.get(EMULATED_DELAY_VAR) or 0) / 1000
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
        self.last_progress = time.monotonic()
        dc.bufferedAmountLowThreshold = LOW_WATER
        dc.on("message", self._on_message)
        dc.on("bufferedamountlow", self._on_drained)
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
        except FrameTooLarge as exc:  # this frame only: the rest of it is dropped as it comes
            logger.info("refused an incoming frame: %s", exc)
            self._inbox.put_nowait(exc)
            return
        except ProtocolError as exc:
            self._protocol_failure(exc)
            return
        if frame is None:
            return
        if self._delay_secs <= 0:
            if self._receiver is not None and self._inbox.empty():
                # nothing waits in front of it: the reader takes it now, before aiortc goes
                # on to acknowledge the packet (recv would run it a step later)
                self._receiver(frame)
            else:
                self._inbox.put_nowait(frame)
            return
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + self._delay_secs, frame))
        if len(self._delayed) == 1:
            loop.call_later(self._delay_secs, self._hand_on_delayed)

    def _hand_on_delayed(self) -> None:
        """Hand on, in order, the delayed frames whose time has come (network emulation)."""
        loop = asyncio.get_running_loop()
        while self._delayed and self._delayed[0][0] <= loop.time() + 1e-3:  # clock resolution
            self._inbox.put_nowait(self._delayed.popleft()[1])
        if self._delayed:
            loop.call_at(self._delayed[0][0], self._hand_on_delayed)

    def _on_drained(self) -> None:
        self.last_progress = time.monotonic()
        self._drained.set()

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

    def deliver_to(self, receiver: Callable[[bytes], None]) -> bool:
        self._receiver = receiver
        return True

    def set_max_frame_bytes(self, limit: int) -> None:
        super().set_max_frame_bytes(limit)
        self._reassembler.max_frame_bytes = limit

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
                    self.last_progress = time.monotonic()
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
                await asyncio.wait_for(self._drained.wait(), self.stall_timeout_secs)
            except TimeoutError:
                self._lost(
                    f"the peer stopped reading for {self.stall_timeout_secs:g} s "
                    f"({self._dc.bufferedAmount} bytes unacknowledged); closed"
                )
                raise self._closed_error() from None
        self._raise_if_closed()

    async def recv(self) -> bytes:
        if self._closed and self._inbox.empty():
            raise self._closed_error()
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later recv raises too
            raise self._closed_error()
        if isinstance(item, ProtocolError):  # FrameTooLarge: that frame only; else fatal
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


async def _set_local(
    pc: RTCPeerConnection,
    hosts: tuple[str, ...] | None,
    timeout: float,
    certificate: RTCCertificate,
) -> str:
    """Create and apply the local offer/answer (this gathers candidates); return its SDP."""
    try:
        with restricted_host_addresses(hosts):
            desc = await (pc.createOffer() if pc.signalingState == "stable" else pc.createAnswer())
            await asyncio.wait_for(pc.setLocalDescription(desc), timeout)
        sdp: str = pc.localDescription.sdp
        check_host_candidates(sdp, hosts)  # NetworkError: never hand out a foreign address
        if dtls_fingerprint(sdp) != certificate_fingerprint(certificate):
            raise NetworkError(
                "aiortc did not use the DTLS certificate duet gave it, so the ID shown would not "
                "be this connection's; install aiortc 1.16 (pip install 'aiortc==1.16.*')"
            )
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


async def _check_peer(
    channel: WebRTCChannel,
    pc: RTCPeerConnection,
    expected_id: str,
    *,
    peer: str,
    expected_from: str,
) -> str:
    """The fingerprint the peer presented, once it is checked against ``expected_id``.

    On a mismatch the connection is closed and HandshakeError raised: nothing has been sent on
    the channel yet and nothing received on it has been read.
    """
    try:
        presented = presented_fingerprint(pc)
        check_presented(presented, expected_id, peer=peer, expected_from=expected_from)
    except HandshakeError:
        await channel.close()
        raise
    return presented


class OfferingPeer:
    """The scientist's side before the answer arrives. Show ``client_id`` to the owner."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        channel: WebRTCChannel,
        offer_sdp: str,
        hosts: tuple[str, ...] | None,
        certificate: RTCCertificate,
    ) -> None:
        self._pc = pc
        self._channel = channel
        self._hosts = hosts
        self.offer_sdp = offer_sdp
        self.fingerprint = certificate_fingerprint(certificate)
        self.client_id = client_id_from_fingerprint(self.fingerprint)
        #: the fingerprint the owner presented in the DTLS handshake, once connected
        self.peer_fingerprint: str | None = None

    async def accept_answer(
        self, answer_sdp: str, *, timeout_secs: float, expected_peer_id: str | None = None
    ) -> WebRTCChannel:
        """Apply the owner's answer and wait until the data channel is open.

        With ``expected_peer_id`` (the owner's ID), an answer from anyone else is refused with
        HandshakeError: at once if the answer names another certificate, else once DTLS shows
        the certificate actually presented. Raises ProtocolError for a malformed answer.
        """
        try:
            fingerprint = check_peer_sdp(answer_sdp, "the owner's answer")
            answer_id = client_id_from_fingerprint(fingerprint)
            if expected_peer_id is not None and normalize_id(answer_id) != normalize_id(
                expected_peer_id
            ):
                raise HandshakeError(
                    f"the answer came from {answer_id}, not from the owner {expected_peer_id} "
                    "(the owner_id you gave join_duet): someone else answered, most likely the "
                    "signaling server; refusing it before connecting. Check the owner_id, start "
                    "a new session, and use a signaling server you trust"
                )
        except (ProtocolError, HandshakeError):
            await self.close()
            raise
        await _set_remote(self._pc, answer_sdp, "answer", self._hosts)
        self._channel.chunk_size = chunk_size_for_peer(answer_sdp, self._channel.chunk_size)
        await self._channel._wait_open(timeout_secs)
        if expected_peer_id is None:
            expected, source = answer_id, "the certificate its answer named"
        else:
            expected, source = expected_peer_id, "the owner_id you gave join_duet"
        self.peer_fingerprint = await _check_peer(
            self._channel, self._pc, expected, peer="owner", expected_from=source
        )
        return self._channel

    async def close(self) -> None:
        await self._channel.close()


class AnsweringPeer:
    """The owner's side after answering. ``peer_client_id`` must match what the scientist shows.

    ``channel`` returns the data channel only once the scientist has presented, in the DTLS
    handshake, the certificate of ``expected_peer_id`` (by default the offer's own ID).
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        offer_sdp: str,
        expected_peer_id: str | None = None,
        **channel_options: Any,
    ) -> None:
        self._pc = pc
        self._options = channel_options
        self.offer_sdp = offer_sdp
        self.peer_fingerprint = check_peer_sdp(offer_sdp, "the scientist's offer")
        self.peer_client_id = client_id_from_fingerprint(self.peer_fingerprint)
        self.expected_peer_id = expected_peer_id or self.peer_client_id
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
        """Wait until the scientist's data channel has arrived, is open and its peer checked.

        Raises HandshakeError if the peer presented another certificate than expected.
        """
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
        await _check_peer(
            self._channel,
            self._pc,
            self.expected_peer_id,
            peer="scientist",
            expected_from="the client ID that was confirmed",
        )
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
    certificate: RTCCertificate | None = None,
) -> tuple[OfferingPeer, str]:
    """Scientist: a peer connection with one data channel; returns it and the complete offer.

    ``certificate`` (default: a new one) is the DTLS certificate the client ID is made from.
    """
    hosts = resolve_ice_hosts(ice_hosts)
    certificate = certificate or new_certificate()
    pc = peer_connection(ice_configuration(ice_servers), certificate)
    dc = pc.createDataChannel("duet", ordered=True)
    # Created now so its message listener is attached before the channel can open.
    channel = WebRTCChannel(pc, dc, chunk_size=chunk_size, max_frame_bytes=max_frame_bytes)
    sdp = await _set_local(pc, hosts, timeout_secs, certificate)
    return OfferingPeer(pc, channel, sdp, hosts, certificate), sdp


async def answer_offer(
    offer_sdp: str,
    *,
    ice_servers: Sequence[str | RTCIceServer] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = DEFAULT_GATHER_TIMEOUT,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    certificate: RTCCertificate | None = None,
    expected_peer_id: str | None = None,
) -> tuple[AnsweringPeer, str]:
    """Owner: answer the scientist's offer; returns the peer and the complete answer SDP.

    ``certificate`` (default: a new one) is the owner's, whose ID the scientist may check;
    ``expected_peer_id`` is the client ID the owner confirmed (default: the offer's own).
    Raises ProtocolError for an offer duet's peers would not write, and HandshakeError if the
    offer is not from ``expected_peer_id``, both before any socket is opened.
    """
    hosts = resolve_ice_hosts(ice_hosts)
    fingerprint = check_peer_sdp(offer_sdp, "the scientist's offer")
    offer_id = client_id_from_fingerprint(fingerprint)
    if expected_peer_id is not None and normalize_id(offer_id) != normalize_id(expected_peer_id):
        raise HandshakeError(
            f"the offer is from {offer_id}, not from the confirmed scientist {expected_peer_id}; "
            "refusing it before connecting"
        )
    size = chunk_size_for_peer(offer_sdp, chunk_size)
    certificate = certificate or new_certificate()
    pc = peer_connection(ice_configuration(ice_servers), certificate)
    peer = AnsweringPeer(
        pc, offer_sdp, expected_peer_id, chunk_size=size, max_frame_bytes=max_frame_bytes
    )
    await _set_remote(pc, offer_sdp, "offer", hosts)
    peer.answer_sdp = await _set_local(pc, hosts, timeout_secs, certificate)
    return peer, peer.answer_sdp


def _aiortcs(certificate: Certificate) -> RTCCertificate:
    """A certificate this implementation made (pairing hands back what ``new_certificate`` gave)."""
    if not isinstance(certificate, RTCCertificate):
        raise TypeError(f"not a certificate aiortc made: {type(certificate).__name__}")
    return certificate


class _Aiortc:
    """``Peers`` (transport/peer.py) made with aiortc: what pairing uses by default."""

    def new_certificate(self) -> RTCCertificate:
        return new_certificate()

    def fingerprint(self, certificate: Certificate) -> str:
        return certificate_fingerprint(_aiortcs(certificate))

    async def offer(
        self, *, ice_servers: Sequence[str] | None, ice_hosts: Sequence[str] | None
    ) -> tuple[OfferingPeer, str]:
        return await create_offer(ice_servers=ice_servers, ice_hosts=ice_hosts)

    async def answer(
        self,
        offer_sdp: str,
        *,
        ice_servers: Sequence[str] | None,
        ice_hosts: Sequence[str] | None,
        certificate: Certificate,
    ) -> tuple[AnsweringPeer, str]:
        return await answer_offer(
            offer_sdp,
            ice_servers=ice_servers,
            ice_hosts=ice_hosts,
            certificate=_aiortcs(certificate),
        )


#: the WebRTC implementation pairing uses (a ``transport.peer.Peers``)
WEBRTC = _Aiortc()
