"""A connection joins a Channel to a role: handshake, ordered sending, receiving, heartbeat.

It knows its role only as data (announced in its Hello, signed in its proof); what one side
does that the other does not is the session's (duet/sessions/), given to it as hooks: what to
do with messages it could not take is ``refusals`` (the owner answers them).

Lifecycle: ``connecting -> open -> closing -> closed``, changed only by ``_set_state``. When the
peer goes away (the channel closes, the heartbeat hears nothing for ``dead_after_secs``, or the
peer takes nothing we send for ``stall_timeout_secs``), ``on_lost`` runs once and every later
send raises ConnectionLost.

Memory is bounded on both paths:

- Sending: ``send`` packs the frame on the calling thread and queues it for the loop. The queue
  is bounded in bytes by ``max_outbox_bytes``: a thread that would pass it waits (no polling)
  until the loop has sent enough, so a worker producing replies faster than the peer reads them
  is paced by the peer. A peer that stops reading is dropped after ``stall_timeout_secs`` with a
  reason saying so, and every waiting sender gets ConnectionLost. Calls from the loop thread
  never wait. A frame that cannot be built (over the peer's frame limit, or out of memory)
  raises FrameTooLarge from ``send``; the connection is unaffected.
- Receiving: frames over ``max_frame_bytes`` (adjustable at any time with
  ``set_max_frame_bytes``) are refused from their first bytes and discarded as they arrive;
  ``refusals`` hears of each message the frame held (as far as its head shows), and the session
  goes on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import torch

from ._version import __version__
from .display import quoted
from .errors import ConnectionLost, DuetTimeout, HandshakeError, ProtocolError
from .identity import Identity, auth_message, verify
from .protocol import allowlist
from .protocol.fields import Role
from .protocol.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    FrameTooLarge,
    header_of,
)
from .protocol.messages import (
    Auth,
    Bye,
    ErrorInfo,
    Hello,
    Message,
    Ping,
    Pong,
    Welcome,
    pack,
    unpack,
    unpack_header,
)
from .runtime import get_loop, on_loop_thread
from .transport.channel import DEFAULT_STALL_SECS, Channel, ChannelClosed

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_OUTBOX_BYTES = int(os.environ.get("DUET_OUTBOX_BYTES", 64 << 20))
"""Bytes of packed frames that may wait to be sent before sending threads wait for the peer."""
FRAME_OVERHEAD = MAX_HEADER_BYTES + (1 << 20)
"""Room in a frame besides its values' bytes: the largest header, and the buffer table."""


def frame_limit_for(max_bytes: int) -> int:
    """The largest frame worth accepting from a peer that may store ``max_bytes`` bytes."""
    return min(DEFAULT_MAX_FRAME_BYTES, max(0, max_bytes) + FRAME_OVERHEAD)


@dataclass(frozen=True)
class PeerIdentity:
    """Who the peer proved to be on this connection (``id``), and the name it gave (not proof)."""

    id: str
    public_key: bytes
    name: str = ""


class Refusals(Protocol):
    """What one side does about messages it could not take, on the loop: ``held`` is what a
    frame over its limit held (as far as its head shows; empty for a malformed frame), ``info``
    the error. Returns the messages to send the peer about them ([]: none; with ``held``
    empty, what stands for them all). The owner answers each (sessions/owner.py); the
    scientist fails its own requests whose replies were refused, and answers nothing."""

    def __call__(self, held: list[Message], info: ErrorInfo) -> list[Message]: ...


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    def __init__(
        self,
        channel: Channel,
        role: Role,
        *,
        on_messages: Callable[[list[Message], list[memoryview]], None],
        on_lost: Callable[[ConnectionLost], None],
        refusals: Refusals | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_outbox_bytes: int = DEFAULT_MAX_OUTBOX_BYTES,
        stall_timeout_secs: float = DEFAULT_STALL_SECS,
        max_bytes: int | None = None,
        heartbeat_secs: float = 1.0,
        dead_after_secs: float = 5.0,
        client_id: str = "",
        identity: Identity | None = None,
        fingerprints: tuple[str, str] = ("", ""),
    ):
        """``max_frame_bytes``: the largest frame accepted from the peer (announced in our
        Hello, adjustable with ``set_max_frame_bytes``). ``max_outbox_bytes``: packed frames
        that may wait to be sent before sending threads wait. ``stall_timeout_secs``: how long
        the peer may take nothing while we have something to send before it is dropped.
        ``max_bytes``: an owner's per-scientist quota, announced so the scientist can refuse
        what would not fit before sending it. ``identity``: who this side is (it signs this
        connection in the handshake); ``fingerprints``: this side's DTLS certificate fingerprint
        and the one the peer presented (empty over an in-memory channel), which the signatures
        cover. ``refusals``: what this side does about messages it could not take (None:
        nothing)."""
        self.channel = channel
        self.role = role
        self.on_messages = on_messages
        self.on_lost = on_lost
        self.refusals = refusals
        self.max_outbox_bytes = max_outbox_bytes
        self.stall_timeout_secs = stall_timeout_secs
        channel.stall_timeout_secs = stall_timeout_secs  # the transport's flow control agrees
        self.max_bytes = max_bytes
        self.heartbeat_secs = heartbeat_secs
        self.dead_after_secs = dead_after_secs
        self.client_id = client_id
        self.identity = identity or Identity.ephemeral()
        self.fingerprints = fingerprints
        self.peer_identity: PeerIdentity | None = None
        self._nonce = secrets.token_hex(16)
        self.state = State.CONNECTING
        self.peer_hello: Hello | None = None
        self.lost: ConnectionLost | None = None
        self.loop = get_loop()
        # frames to send, in order; with each, an event for a sender that waits until it went
        self._outbox: asyncio.Queue[tuple[bytes, threading.Event | None] | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._hello: asyncio.Future[Hello] = self.loop.create_future()
        self._welcome: asyncio.Future[Welcome] = self.loop.create_future()
        self._last_heard = time.monotonic()
        self._closed_event = asyncio.Event()
        # bytes packed and not yet handed to the channel; senders wait on this condition
        self._room = threading.Condition(threading.Lock())
        self._queued = 0
        self._progress_at = time.monotonic()  # when the outbox last moved (or became busy)
        self._max_frame_bytes = max_frame_bytes
        self._limit_reason = ""
        self.set_max_frame_bytes(max_frame_bytes)
        self.frames_sent = 0
        self.frames_received = 0
        self.frames_refused = 0
        self._deaf = False  # set by the peer's Bye: no later frame is taken

    # ---- limits
    @property
    def max_frame_bytes(self) -> int:
        """The largest frame accepted from the peer now."""
        return self._max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, limit: int) -> None:
        self.set_max_frame_bytes(limit)

    def set_max_frame_bytes(self, limit: int, *, reason: str = "") -> None:
        """Refuse incoming frames over ``limit`` bytes from now on. Safe from any thread.

        A larger frame is refused from its first bytes and dropped as it arrives, never
        buffered; the peer gets an error for each message it held (``reason``, if given, is
        added to that error: why the limit is what it is) and the connection goes on.
        """
        if limit < 0:
            raise ValueError("max_frame_bytes must be >= 0")
        self._max_frame_bytes = limit
        self._limit_reason = reason
        self.channel.set_max_frame_bytes(limit)

    @property
    def peer_max_frame_bytes(self) -> int:
        """The largest frame the peer said it accepts (the default before its Hello)."""
        hello = self.peer_hello
        if hello is None or hello.max_frame_bytes is None:
            return DEFAULT_MAX_FRAME_BYTES
        return hello.max_frame_bytes

    @property
    def queued_bytes(self) -> int:
        """Bytes of packed frames waiting to be sent (or being sent)."""
        return self._queued

    # ---- lifecycle (on the loop)
    async def open(self, *, timeout_secs: float) -> Hello:
        """Exchange Hello messages and check that both sides speak the same protocol."""
        self.channel.deliver_to(self._deliver)  # frames as they complete, where it can
        self._tasks = [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._recv_loop()),
        ]
        hello = Hello(
            duet_version=__version__,
            torch_version=torch.__version__,
            allowlist=allowlist.digest(),
            role=self.role,
            client_id=self.client_id,
            max_frame_bytes=self.max_frame_bytes,
            max_bytes=self.max_bytes,
            identity=self.identity.public_key.hex(),
            name=self.identity.name[:100],
            nonce=self._nonce,
        )
        self._put_nowait(pack([hello]))
        try:
            peer = await asyncio.wait_for(asyncio.shield(self._hello), timeout_secs)
        except TimeoutError as exc:
            await self.close("handshake timed out")
            raise HandshakeError(
                f"the peer did not complete the handshake within {timeout_secs} s"
            ) from exc
        except HandshakeError as exc:
            await self.close(f"handshake failed: {exc}")
            raise
        except ConnectionLost:
            await self.close("lost during handshake")
            raise
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        return peer

    def _on_hello(self, peer: Hello) -> None:
        """Check the peer's Hello where it arrives, in the receive loop: the connection is open
        before the next frame is read, so the peer's first messages are never refused."""
        if self._hello.done():
            return  # a second Hello changes nothing
        problem = None
        if peer.protocol_version != PROTOCOL_VERSION:
            problem = (
                f"protocol version {peer.protocol_version} (peer) vs {PROTOCOL_VERSION} (here)"
            )
        elif peer.allowlist != allowlist.digest():
            problem = (
                f"allowlist {peer.allowlist} (peer, duet {peer.duet_version}) vs "
                f"{allowlist.digest()} (here, duet {__version__}); install the same duet version "
                "on both sides"
            )
        elif peer.role == self.role:
            problem = f"both sides are {self.role}s"
        elif not peer.identity or not peer.nonce:
            problem = "the peer presented no identity (a duet too old to prove who it is)"
        if problem:
            self._hello.set_exception(HandshakeError(f"cannot connect: {problem}"))
            return
        self.peer_hello = peer
        own_fp, peer_fp = self.fingerprints
        signature = self.identity.sign(
            auth_message(self.role, own_fp, peer_fp, self._nonce, peer.nonce)
        )
        self._put_nowait(pack([Auth(signature=signature.hex())]))

    def _on_auth(self, auth: Auth) -> None:
        """The peer's proof of identity: its key signed this connection. Open on success."""
        peer = self.peer_hello
        if self._hello.done():
            return
        if peer is None:
            self._hello.set_exception(HandshakeError("cannot connect: a proof before the Hello"))
            return
        own_fp, peer_fp = self.fingerprints
        who = f"the {peer.role}"
        try:
            peer_id = verify(
                bytes.fromhex(peer.identity),
                bytes.fromhex(auth.signature),
                auth_message(peer.role, peer_fp, own_fp, peer.nonce, self._nonce),
                who=who,
            )
        except HandshakeError as exc:
            self._hello.set_exception(exc)
            return
        self.peer_identity = PeerIdentity(peer_id, bytes.fromhex(peer.identity), peer.name)
        self._set_state(State.OPEN)
        self._hello.set_result(peer)

    # ---- acceptance (an owner decides after the handshake whether to serve this scientist)
    def welcome(self) -> None:
        """(Owner) tell the scientist it is accepted."""
        scientist = self.peer_identity.id if self.peer_identity else ""
        self.send([Welcome(scientist_id=scientist)])

    async def wait_welcome(self, timeout_secs: float) -> None:
        """(Scientist) wait until the owner accepts us; DuetTimeout or ConnectionLost if not."""
        try:
            await asyncio.wait_for(asyncio.shield(self._welcome), timeout_secs)
        except TimeoutError as exc:
            await self.close("the owner did not accept in time")
            raise DuetTimeout(
                f"the owner did not accept you within {timeout_secs:g} s (it may still be "
                "confirming your client ID)"
            ) from exc

    async def close(self, reason: str = "closed") -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        was_open = self.state is State.OPEN
        self._set_state(State.CLOSING)
        if was_open and not self.channel.closed:
            try:
                await asyncio.wait_for(self.channel.send(pack([Bye(reason=reason)])), 2.0)
            except Exception:  # the peer may already be gone; closing goes on
                pass
        await self._shutdown()

    async def _shutdown(self) -> None:
        # what was waiting to be sent will never be: free it now, and wake waiting senders
        while not self._outbox.empty():
            item = self._outbox.get_nowait()
            if item is not None and item[1] is not None:
                item[1].set()  # never sent: its sender need not wait
        with self._room:
            self._queued = 0
            self._room.notify_all()
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self.channel.close(), 5.0)
        except Exception as exc:
            log.debug("closing the channel failed: %s", exc)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._set_state(State.CLOSED)

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            log.info("%s connection: %s -> %s", self.role, self.state.value, state.value)
            self.state = state
            if state is State.CLOSED:
                self._closed_event.set()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def _lose(self, reason: str) -> None:
        if self.lost is not None or self.state is State.CLOSED:
            return
        self.lost = ConnectionLost(reason)
        log.warning("%s connection lost: %s", self.role, reason)
        with self._room:
            self._room.notify_all()
        _fail(self._hello, self.lost)
        _fail(self._welcome, self.lost)
        try:
            self.on_lost(self.lost)
        finally:
            self._tasks.append(asyncio.ensure_future(self._shutdown()))

    # ---- sending (thread-safe entry point)
    def send(
        self,
        messages: list[Message],
        buffers: list[memoryview] | None = None,
        *,
        until_sent: float | None = None,
    ) -> None:
        """Encode here (any thread) and queue the frame for the loop to send, in order.

        From any thread but the loop's, waits while the outbox holds ``max_outbox_bytes`` (the
        peer is slower than we produce); on the loop thread it never waits. ``until_sent``
        (seconds; not on the loop thread): then also wait, at most that long, until the frame
        has been handed to the network. A thread that goes on computing in Python holds the
        interpreter's lock, and the loop could send nothing until it let go (up to the
        interpreter's switch interval, 5 ms): this lets go at once, for a frame the peer is
        idle without.

        Raises FrameTooLarge (a ProtocolError; nothing was queued and the connection is fine)
        when the frame is over the peer's frame limit or the header or buffer-count limits, or
        could not be built in memory. Raises ConnectionLost when the connection is lost or
        closed, also while waiting (a peer that stopped reading is dropped after
        ``stall_timeout_secs``).
        """
        self._raise_if_gone()
        frame = pack(messages, buffers, max_frame_bytes=self.peer_max_frame_bytes)
        elsewhere = not on_loop_thread()
        self._admit(len(frame), wait=elsewhere)
        if until_sent is None or not elsewhere:
            self.loop.call_soon_threadsafe(self._accept, frame, None)
            return
        sent = threading.Event()
        self.loop.call_soon_threadsafe(self._accept, frame, sent)
        sent.wait(until_sent)

    def send_if_open(
        self, messages: list[Message], buffers: list[memoryview] | None = None
    ) -> None:
        """Like send, but a reply to a peer that has gone is dropped quietly.

        FrameTooLarge still raises: the reply could not be sent, the peer is still there.
        """
        try:
            self.send(messages, buffers)
        except ConnectionLost:
            log.debug("dropped %d messages for a peer that has gone", len(messages))

    def _raise_if_gone(self) -> None:
        if self.lost is not None:
            raise ConnectionLost(str(self.lost))
        if self.state in (State.CLOSING, State.CLOSED):
            raise ConnectionLost("the session is closed")

    def _admit(self, size: int, *, wait: bool) -> None:
        """Count ``size`` bytes into the outbox, first waiting for room if ``wait``."""
        with self._room:
            while wait and self._queued and self._queued + size > self.max_outbox_bytes:
                self._raise_if_gone()
                idle = time.monotonic() - max(self._progress_at, self.channel.last_progress)
                # the heartbeat drops a stalled peer; this bound holds if it does not run
                remaining = self.stall_timeout_secs + 2 * self.heartbeat_secs - idle
                if remaining <= 0:
                    reason = self._stall_reason(idle)
                    self.loop.call_soon_threadsafe(self._lose, reason)
                    raise ConnectionLost(reason)
                self._room.wait(remaining)
            self._raise_if_gone()
            if not self._queued:
                self._progress_at = time.monotonic()
            self._queued += size

    def _accept(self, frame: bytes, sent: threading.Event | None) -> None:
        """On the loop: a frame a thread packed joins the outbox, unless it is closed."""
        if self.state is State.CLOSED:
            with self._room:
                self._queued = max(0, self._queued - len(frame))
            if sent is not None:
                sent.set()
            return
        self._outbox.put_nowait((frame, sent))

    def _put_nowait(self, frame: bytes) -> None:
        """On the loop: queue a frame of our own (a Hello, a Pong, an error); never waits.

        Dropped once the connection is going away."""
        try:
            self._admit(len(frame), wait=False)
        except ConnectionLost:
            return
        self._outbox.put_nowait((frame, None))

    def _room_left(self) -> bool:
        return self._queued <= self.max_outbox_bytes

    def _stall_reason(self, idle: float) -> str:
        return (
            f"the peer stopped reading for {idle:.0f} s ({self._queued} bytes waiting to be "
            "sent); closed"
        )

    def _stalled_for(self) -> float:
        with self._room:
            if not self._queued:
                return 0.0
            return time.monotonic() - max(self._progress_at, self.channel.last_progress)

    async def _send_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is None:
                return
            frame, sent = item
            try:
                await self.channel.send(frame)
                self.frames_sent += 1
                if sent is not None:
                    # a transport may send from a task of its own (aiortc does): one turn of
                    # the loop, and it has
                    await asyncio.sleep(0)
            except ChannelClosed as exc:
                self._lose(f"the channel closed while sending: {exc}")
                return
            except Exception as exc:
                self._lose(f"sending failed: {exc!r}")
                return
            finally:
                if sent is not None:
                    sent.set()
            with self._room:
                self._queued = max(0, self._queued - len(frame))
                self._progress_at = time.monotonic()
                self._room.notify_all()
            del frame, item  # do not hold the last frame's bytes while waiting for the next

    async def _recv_loop(self) -> None:
        """What the channel did not hand to ``_receive`` itself: frames, refusals, its end."""
        while not self._deaf:
            try:
                data = await self.channel.recv()
            except FrameTooLarge as exc:  # refused by the channel; the stream goes on
                self._last_heard = time.monotonic()
                self._refuse(exc)
                continue
            except ChannelClosed as exc:
                if self.state not in (State.CLOSING, State.CLOSED):
                    self._lose(f"the peer's channel closed ({exc})")
                return
            except Exception as exc:
                self._lose(f"receiving failed: {exc!r}")
                return
            self._receive(data)

    def _deliver(self, data: bytes) -> None:
        """A frame the channel hands on as it completes (``Channel.deliver_to``): taken at
        once, inside the transport's callback, which must not see an exception."""
        try:
            self._receive(data)
        except Exception as exc:  # not expected: _receive answers what it cannot take
            log.exception("taking a frame from the channel failed")
            self._lose(f"receiving failed: {exc!r}")

    def _receive(self, data: bytes) -> None:
        """One frame from the peer, in order: answer pings, the handshake and a Bye here, and
        hand the rest to ``on_messages``."""
        if self._deaf:  # the peer said Bye: nothing after it is taken
            return
        self._last_heard = time.monotonic()
        self.frames_received += 1
        try:
            messages, buffers = unpack(data, max_frame_bytes=self.max_frame_bytes)
        except FrameTooLarge as exc:
            self._refuse(exc)
            return
        except ProtocolError as exc:
            log.warning("refused a malformed frame from the peer: %s", exc)
            self._reply_protocol_error(exc)
            return
        rest: list[Message] = []
        ping: Ping | None = None
        early = False
        for message in messages:
            if isinstance(message, Ping):
                ping = message  # one Pong per frame answers them all
            elif isinstance(message, Pong):
                pass
            elif isinstance(message, Hello):
                self._on_hello(message)
            elif isinstance(message, Auth):
                self._on_auth(message)
            elif isinstance(message, Welcome):
                if not self._welcome.done():  # for whoever waits for one (wait_welcome)
                    self._welcome.set_result(message)
            elif isinstance(message, Bye):
                # the peer's words, as data: they reach the other side's console and logs
                reason = quoted(message.reason)
                log.info("the peer closed the session: %s", reason)
                self._deaf = True
                self.lost = ConnectionLost(f"the peer closed the session ({reason})")
                _fail(self._hello, self.lost)
                # before a welcome: the owner would not serve this scientist
                refused = HandshakeError(f"the owner refused to serve you: {message.reason}")
                _fail(self._welcome, refused)
                self.on_lost(self.lost)
                self._tasks.append(asyncio.ensure_future(self._shutdown()))
                return
            elif self.state is State.OPEN:
                rest.append(message)
            else:
                early = True
        if ping is not None and self._room_left():  # a peer that does not read gets none
            self._put_nowait(pack([Pong(seq=ping.seq)]))
        if early:
            self._reply_protocol_error(ProtocolError("messages before the handshake"))
        if rest:
            try:
                self.on_messages(rest, buffers)
            except Exception:
                log.exception("handling the peer's messages failed")

    def _reply_protocol_error(self, exc: ProtocolError) -> None:
        info = ErrorInfo(code=exc.code, message=str(exc), op="frame")
        self._answer([], info)

    def _refuse(self, exc: FrameTooLarge) -> None:
        """A frame over our limit was dropped: ``refusals`` hears of what it held (as far as its
        head shows), and the peer is sent what it answers."""
        self.frames_refused += 1
        log.warning("refused a frame from the peer: %s", exc)
        messages: list[Message] = []
        header = header_of(exc.head)
        if header is not None:
            try:
                messages = unpack_header(header)
            except ProtocolError:
                messages = []
        text = f"{exc} ({self._limit_reason})" if self._limit_reason else str(exc)
        info = ErrorInfo(code=exc.code, message=text[:20_000], op="frame")
        self._answer(messages, info)

    def _answer(self, held: list[Message], info: ErrorInfo) -> None:
        """Send the peer what ``refusals`` answers about ``held`` (a peer that does not read
        gets nothing); if that would not fit in a frame, what it answers for none of them."""
        refusals = self.refusals
        if refusals is None:
            return
        answers = refusals(held, info)
        if not answers or not self._room_left():
            return
        try:
            self._put_nowait(pack(answers))
        except FrameTooLarge:  # answering every message would not fit in a frame
            self._put_nowait(pack(refusals([], info)))

    async def _heartbeat(self) -> None:
        seq = 0
        while self.state is State.OPEN:
            await asyncio.sleep(self.heartbeat_secs)  # a timer, not a poll: it sends the ping
            activity = max(self._last_heard, getattr(self.channel, "last_activity", 0.0))
            silent = time.monotonic() - activity
            if silent > self.dead_after_secs:
                self._lose(f"no word from the peer for {silent:.1f} s")
                return
            stalled = self._stalled_for()
            if stalled > self.stall_timeout_secs:
                self._lose(self._stall_reason(stalled))
                return
            seq += 1
            if self._room_left():
                self._put_nowait(pack([Ping(seq=seq)]))


def _fail(future: asyncio.Future[T], exc: BaseException) -> None:
    """End a handshake step that will not happen; whoever waits for it gets ``exc`` (and no one
    waiting is fine: the future does not log it as never retrieved)."""
    if not future.done():
        future.set_exception(exc)
        future.exception()  # retrieved: a step nobody awaits is not an error to report
