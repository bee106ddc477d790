"""A scientist on one instance joining a session held by another, relayed through Redis.

The scientist's instance (A) looks the session up in the directory and forwards the scientist's
raw messages to the session's instance (B) as envelopes (see :mod:`._redis`); B serves it as a
:class:`RelayedConnection`, an object that looks like a websocket to B's session code, so the
scientist goes through exactly the path of a local one: the same parsing, states, limits,
timeouts and errors. What B sends back, A checks against the server's message models before
writing it to the scientist's websocket, and it closes that websocket when B closes the
relayed one (with B's close code).

Cancellation: everything here is cancelled with the server's handlers on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close, CloseCode

from ._messages import Reject, short_id
from ._redis import Envelope, RedisBus, RedisUnavailable
from .protocol import WireError, parse_server_message

logger = logging.getLogger(__name__)

#: How often an instance with relayed scientists checks that the instances at the other ends
#: still listen (one ``PUBSUB NUMSUB`` for all of them): a relay whose other end died ends
#: within this time, not at its timeout. A heartbeat, like the websocket's keepalive ping.
WATCH_SECS = 2.0
#: Relayed messages one connection may have waiting: a scientist sends two (join, offer) and
#: receives two or three, so more means someone writes into Redis in its name; it is dropped.
MAX_WAITING = 16

#: B's side: serve a relayed scientist joining ``session_id`` (the server's scientist path).
ServeRelayed = Callable[["RelayedConnection", str], Awaitable[None]]
#: A's side: write to a scientist's websocket within the server's send timeout.
Write = Callable[[Any, str], Awaitable[None]]


class RelayedConnection:
    """B's stand-in for a scientist's websocket on instance ``src`` (A).

    ``send`` and ``close`` publish to A; ``recv`` returns what A forwarded. Once closed (by B,
    or because A said the scientist left, or A is gone), ``send`` and ``recv`` raise
    ``ConnectionClosed`` like a websocket's.
    """

    def __init__(self, bus: RedisBus, src: str, conn: str, ip: str) -> None:
        self._bus = bus
        self.src = src
        self.conn = conn
        self.remote_address = (ip or "unknown", 0)
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._closed = asyncio.Event()

    def deliver(self, envelope: Envelope) -> None:
        """A relayed a message from the scientist, or said it left."""
        if self._closed.is_set():
            return
        if envelope.kind == "gone":
            self._mark_closed()
        elif self._inbox.qsize() >= MAX_WAITING:
            logger.warning("dropped a relayed scientist: %d messages waiting", MAX_WAITING)
            self._mark_closed()
        elif envelope.binary:
            self._inbox.put_nowait(envelope.data.encode("latin-1", "replace"))
        else:
            self._inbox.put_nowait(envelope.data)

    async def recv(self) -> str | bytes:
        item = await self._inbox.get()
        if item is None:
            self._inbox.put_nowait(None)  # later calls fail the same way
            raise ConnectionClosedOK(Close(CloseCode.NORMAL_CLOSURE, ""), None)
        return item

    async def send(self, message: str) -> None:
        if self._closed.is_set():
            raise ConnectionClosedOK(None, Close(CloseCode.NORMAL_CLOSURE, ""))
        try:
            received = await self._bus.publish(self.src, self._envelope("send", data=message))
        except RedisUnavailable as exc:
            self._mark_closed()
            raise ConnectionClosedError(None, None) from exc
        if not received:  # A is gone, and its scientist with it
            self._mark_closed()
            raise ConnectionClosedError(None, None)

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        if self._closed.is_set():
            return
        self._mark_closed()
        with contextlib.suppress(RedisUnavailable):
            await self._bus.publish(self.src, self._envelope("close", code=code, reason=reason))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _mark_closed(self) -> None:
        self._closed.set()
        self._inbox.put_nowait(None)

    def _envelope(self, kind: Any, **fields: Any) -> Envelope:
        return Envelope(kind=kind, src=self._bus.instance, conn=self.conn, **fields)


class Relays:
    """This instance's relayed connections, both ways, and the envelopes addressed to them."""

    def __init__(self, bus: RedisBus, serve: ServeRelayed, write: Write) -> None:
        self.bus = bus
        self._serve = serve
        self._write = write
        #: B's side: scientists of other instances in our sessions, by (their instance, conn)
        self._inbound: dict[tuple[str, str], RelayedConnection] = {}
        #: A's side: our scientists in other instances' sessions: what B sends them, queued
        self._outbound: dict[str, asyncio.Queue[Envelope | Reject | None]] = {}
        #: A's side: the instance and (short) session ID each outbound scientist is relayed to
        self._holders: dict[str, tuple[str, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._updates: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching the other ends of the relays (on the running loop)."""
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECS)
            others = {src for src, _ in self._inbound} | {i for i, _ in self._holders.values()}
            if not others:
                continue
            try:
                listening = await self.bus.listening(others)
            except RedisUnavailable as exc:
                logger.warning("could not check the other signaling instances: %s", exc)
                continue
            for instance in others - listening:
                self._instance_gone(instance)

    def _instance_gone(self, instance: str) -> None:
        """End every relay with ``instance``: it no longer listens on its channel."""
        logger.warning("signaling instance %s stopped: ending its relays", instance)
        for (src, conn), inbound in list(self._inbound.items()):
            if src == instance:
                inbound.deliver(Envelope(kind="gone", src=src, conn=conn))
        for conn, (holder, sid) in list(self._holders.items()):
            queue = self._outbound.get(conn)
            if holder == instance and queue is not None:
                queue.put_nowait(_holder_gone(sid))

    def on_envelope(self, envelope: Envelope) -> None:
        """Route one envelope from the channel (called in arrival order; never blocks)."""
        if envelope.kind in ("send", "close"):
            queue = self._outbound.get(envelope.conn)
            if queue is None:
                logger.debug("relayed %s for a gone scientist ignored", envelope.kind)
            elif queue.qsize() >= MAX_WAITING:
                logger.warning("dropped a relayed scientist: %d replies waiting", MAX_WAITING)
                del self._outbound[envelope.conn]
                queue.put_nowait(None)
            else:
                queue.put_nowait(envelope)
            return
        key = (envelope.src, envelope.conn)
        if envelope.kind == "open":
            if key in self._inbound:
                logger.warning("refused a relayed join reusing a connection ID")
                return
            conn = RelayedConnection(self.bus, envelope.src, envelope.conn, envelope.ip)
            self._inbound[key] = conn
            task = asyncio.get_running_loop().create_task(self._serve_inbound(conn, envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        known = self._inbound.get(key)
        if known is None:
            logger.debug("relayed %s for an unknown scientist ignored", envelope.kind)
        else:
            known.deliver(envelope)

    async def _serve_inbound(self, conn: RelayedConnection, envelope: Envelope) -> None:
        try:
            await self._serve(conn, envelope.session_id)
        finally:
            del self._inbound[(conn.src, conn.conn)]
            await conn.close()

    async def close(self) -> None:
        """Cancel the relayed scientists' handlers; let the directory's updates finish."""
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._updates, return_exceptions=True)

    # ----------------------------------------------------------------- the directory

    async def claim(self, session_id: str, ttl: float) -> None:
        """List ``session_id`` as held here; raise :class:`Reject` (``unavailable``) if not."""
        try:
            await self.bus.claim(session_id, ttl)
        except RedisUnavailable as exc:
            raise Reject(
                "unavailable",
                f"this signaling server cannot reach Redis to share the session ({exc}); try "
                "again shortly, or ask its operator to check Redis",
            ) from None

    def renew(self, session_id: str, ttl: float) -> None:
        self._update(self.bus.renew(session_id, ttl))

    def forget(self, session_id: str) -> None:
        self._update(self.bus.forget(session_id))

    def _update(self, change: Coroutine[Any, Any, None]) -> None:
        """Run a directory update apart: an owner's messages never wait on Redis."""

        async def update() -> None:
            try:
                await change
            except RedisUnavailable as exc:
                logger.warning("could not update the Redis session directory: %s", exc)

        task = asyncio.get_running_loop().create_task(update())
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    # ----------------------------------------------------------------- A's side

    async def join_remote(self, ws: ServerConnection, session_id: str, bound: float) -> None:
        """Relay scientist ``ws`` to the instance holding ``session_id``, for at most ``bound``.

        Raises :class:`Reject` (``unknown_session``, ``peer_left``, ``expired``,
        ``unavailable``) for the scientist; returns once either side closed.
        """
        sid = short_id(session_id)
        try:
            instance = await self.bus.locate(session_id)
        except RedisUnavailable as exc:
            raise _unavailable(exc) from None
        if instance is None or instance == self.bus.instance:
            raise _unknown(sid)
        conn = secrets.token_hex(16)
        queue: asyncio.Queue[Envelope | Reject | None] = asyncio.Queue()
        self._outbound[conn] = queue
        self._holders[conn] = (instance, sid)
        ip = ws.remote_address[0] if ws.remote_address else ""
        pump: asyncio.Task[None] | None = None
        closed_by_holder = False
        try:
            opened = Envelope(kind="open", src=self.bus.instance, conn=conn, session_id=session_id,
                              ip=str(ip))  # fmt: skip
            if not await self._publish(instance, opened):
                raise _unknown(sid)  # the instance that held it is gone
            pump = asyncio.get_running_loop().create_task(
                self._pump(ws, instance, conn, queue, sid)
            )
            async with asyncio.timeout(bound):
                while (item := await queue.get()) is not None:
                    if isinstance(item, Reject):
                        raise item
                    if item.kind == "close":
                        closed_by_holder = True  # it has forgotten the scientist already
                        await ws.close(item.code, item.reason)
                        return
                    try:
                        parse_server_message(item.data)
                    except WireError as exc:
                        logger.warning("dropped an invalid relayed reply: %s", exc.message)
                        continue
                    try:
                        await self._write(ws, item.data)
                    except ConnectionClosed:
                        return
        except TimeoutError:
            raise Reject(
                "expired",
                f"session {sid}: the offer/answer exchange did not complete within "
                f"{bound:g} s of joining; join again",
            ) from None
        except RedisUnavailable as exc:
            raise _unavailable(exc) from None
        finally:
            self._outbound.pop(conn, None)
            self._holders.pop(conn, None)
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            if not closed_by_holder:
                gone = Envelope(kind="gone", src=self.bus.instance, conn=conn)
                with contextlib.suppress(RedisUnavailable):
                    await self.bus.publish(instance, gone)

    async def _pump(
        self,
        ws: ServerConnection,
        instance: str,
        conn: str,
        queue: asyncio.Queue[Envelope | Reject | None],
        sid: str,
    ) -> None:
        """Forward what the scientist sends to B; end the relay when it leaves or B is gone."""
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed:
                queue.put_nowait(None)
                return
            binary = isinstance(raw, bytes)
            data = raw.decode("latin-1") if isinstance(raw, bytes) else raw
            try:
                envelope = Envelope(
                    kind="msg", src=self.bus.instance, conn=conn, data=data, binary=binary
                )
                received = await self._publish(instance, envelope)
            except (RedisUnavailable, ValueError) as exc:
                queue.put_nowait(_unavailable(exc))
                return
            if not received:
                queue.put_nowait(_holder_gone(sid))
                return

    async def _publish(self, instance: str, envelope: Envelope) -> int:
        return await self.bus.publish(instance, envelope)


def _unknown(sid: str) -> Reject:
    return Reject(
        "unknown_session",
        f"session {sid} is unknown or expired; ask the owner for a new ID",
    )


def _holder_gone(sid: str) -> Reject:
    return Reject(
        "peer_left",
        f"the signaling instance holding session {sid} stopped before the offer/answer "
        "exchange completed; ask the owner for a new session ID",
    )


def _unavailable(exc: Exception) -> Reject:
    return Reject(
        "unavailable",
        f"this signaling server cannot reach the other instances through Redis ({exc}); "
        "try again shortly, or ask its operator to check Redis",
    )
