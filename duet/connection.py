"""A connection joins a Channel to a role: handshake, ordered sending, receiving, heartbeat.

Lifecycle: ``connecting -> open -> closing -> closed``, changed only by ``_set_state``. When the
peer goes away (the channel closes, or the heartbeat hears nothing for ``dead_after_secs``),
``on_lost`` runs once and every later send raises ConnectionLost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from . import __version__
from .errors import ConnectionLost, HandshakeError, ProtocolError
from .protocol import allowlist
from .protocol.frames import DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION
from .protocol.messages import Bye, ErrorInfo, Failure, Hello, Ping, Pong, pack, unpack
from .runtime import get_loop
from .transport.channel import Channel, ChannelClosed

log = logging.getLogger(__name__)


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Connection:
    def __init__(
        self,
        channel: Channel,
        role: str,
        *,
        on_messages: Callable[[list[Any], list[memoryview]], None],
        on_lost: Callable[[ConnectionLost], None],
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        heartbeat_secs: float = 1.0,
        dead_after_secs: float = 5.0,
        client_id: str = "",
    ):
        self.channel = channel
        self.role = role
        self.on_messages = on_messages
        self.on_lost = on_lost
        self.max_frame_bytes = max_frame_bytes
        self.heartbeat_secs = heartbeat_secs
        self.dead_after_secs = dead_after_secs
        self.client_id = client_id
        self.state = State.CONNECTING
        self.peer_hello: Hello | None = None
        self.lost: ConnectionLost | None = None
        self.loop = get_loop()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._hello: asyncio.Future[Hello] = self.loop.create_future()
        self._last_heard = time.monotonic()
        self._closed_event = asyncio.Event()
        self.frames_sent = 0
        self.frames_received = 0

    # ---- lifecycle (on the loop)
    async def open(self, *, timeout_secs: float) -> Hello:
        """Exchange Hello messages and check that both sides speak the same protocol."""
        self._tasks = [
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._recv_loop()),
        ]
        hello = Hello(
            duet_version=__version__,
            torch_version=torch.__version__,
            allowlist=allowlist.digest(),
            role=self.role,  # type: ignore[arg-type]
            client_id=self.client_id,
        )
        self._outbox.put_nowait(pack([hello]))
        try:
            peer = await asyncio.wait_for(asyncio.shield(self._hello), timeout_secs)
        except TimeoutError as exc:
            await self.close("handshake timed out")
            raise HandshakeError(
                f"the peer did not complete the handshake within {timeout_secs} s"
            ) from exc
        except ConnectionLost:
            await self.close("lost during handshake")
            raise
        problem = None
        if peer.protocol_version != PROTOCOL_VERSION:
            problem = (
                f"protocol version {peer.protocol_version} (peer) vs {PROTOCOL_VERSION} (here)"
            )
        elif peer.allowlist != hello.allowlist:
            problem = (
                f"allowlist {peer.allowlist} (peer, duet {peer.duet_version}) vs {hello.allowlist} "
                f"(here, duet {__version__}); install the same duet version on both sides"
            )
        elif peer.role == self.role:
            problem = f"both sides are {self.role}s"
        if problem:
            await self.close(f"handshake failed: {problem}")
            raise HandshakeError(f"cannot connect: {problem}")
        self.peer_hello = peer
        self._set_state(State.OPEN)
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        return peer

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
        if not self._hello.done():
            self._hello.set_exception(self.lost)
        try:
            self.on_lost(self.lost)
        finally:
            self._tasks.append(asyncio.ensure_future(self._shutdown()))

    # ---- sending (thread-safe entry point)
    def send(self, messages: list[Any], buffers: list[memoryview] | None = None) -> None:
        """Encode here (any thread) and queue the frame for the loop to send, in order."""
        if self.lost is not None:
            raise ConnectionLost(str(self.lost))
        if self.state in (State.CLOSING, State.CLOSED):
            raise ConnectionLost("the session is closed")
        frame = pack(messages, buffers)
        self.loop.call_soon_threadsafe(self._outbox.put_nowait, frame)

    def send_if_open(self, messages: list[Any], buffers: list[memoryview] | None = None) -> None:
        """Like send, but a reply to a peer that has gone is dropped quietly."""
        try:
            self.send(messages, buffers)
        except ConnectionLost:
            log.debug("dropped %d messages for a peer that has gone", len(messages))

    async def _send_loop(self) -> None:
        while True:
            frame = await self._outbox.get()
            if frame is None:
                return
            try:
                await self.channel.send(frame)
                self.frames_sent += 1
            except ChannelClosed as exc:
                self._lose(f"the channel closed while sending: {exc}")
                return
            except Exception as exc:
                self._lose(f"sending failed: {exc!r}")
                return

    async def _recv_loop(self) -> None:
        while True:
            try:
                data = await self.channel.recv()
            except ChannelClosed as exc:
                if self.state not in (State.CLOSING, State.CLOSED):
                    self._lose(f"the peer's channel closed ({exc})")
                return
            except Exception as exc:
                self._lose(f"receiving failed: {exc!r}")
                return
            self._last_heard = time.monotonic()
            self.frames_received += 1
            try:
                messages, buffers = unpack(data, max_frame_bytes=self.max_frame_bytes)
            except ProtocolError as exc:
                log.warning("refused a malformed frame from the peer: %s", exc)
                self._reply_protocol_error(exc)
                continue
            rest = []
            for message in messages:
                if isinstance(message, Ping):
                    self._outbox.put_nowait(pack([Pong(seq=message.seq)]))
                elif isinstance(message, Pong):
                    pass
                elif isinstance(message, Hello):
                    if not self._hello.done():
                        self._hello.set_result(message)
                elif isinstance(message, Bye):
                    log.info("the peer closed the session: %s", message.reason)
                    self.lost = ConnectionLost(f"the peer closed the session ({message.reason})")
                    self.on_lost(self.lost)
                    self._tasks.append(asyncio.ensure_future(self._shutdown()))
                    return
                else:
                    rest.append(message)
            if rest:
                if self.state is not State.OPEN:
                    self._reply_protocol_error(ProtocolError("messages before the handshake"))
                    continue
                try:
                    self.on_messages(rest, buffers)
                except Exception:
                    log.exception("handling the peer's messages failed")

    def _reply_protocol_error(self, exc: ProtocolError) -> None:
        if self.role == "owner":
            info = ErrorInfo(code=exc.code, message=str(exc), op="frame")
            self._outbox.put_nowait(pack([Failure(result=None, error=info)]))

    async def _heartbeat(self) -> None:
        seq = 0
        while self.state is State.OPEN:
            await asyncio.sleep(self.heartbeat_secs)  # a timer, not a poll: it sends the ping
            activity = max(self._last_heard, getattr(self.channel, "last_activity", 0.0))
            silent = time.monotonic() - activity
            if silent > self.dead_after_secs:
                self._lose(f"no word from the peer for {silent:.1f} s")
                return
            seq += 1
            self._outbox.put_nowait(pack([Ping(seq=seq)]))
