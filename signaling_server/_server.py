"""The signaling server: sessions, pairing, relaying, limits and expiry.

See the package docstring (``signaling_server/__init__.py``) for the wire protocol. The owner's
connection handler owns a session's lifetime: it waits under an ``asyncio.timeout`` that the
scientist's join (one-scientist session) or each owner message (open session) reschedules, so
expiry needs no polling. In an open session each scientist's handler owns that scientist's
exchange, under its own timeout (``join_timeout``, or the TTL if shorter); the owner's handler
relays answers and declines to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import weakref
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, Literal

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from ._limits import Admission, RateLimiter
from ._messages import (
    Reject,
    out_of_order,
    owner_misaddressed,
    parse,
    scientist_named_peer,
    short_id,
)
from ._redis import RedisBus
from ._registry import REGISTRY_TYPES, Registry  # the registry (issue 21)
from ._registry_store import RedisRegistryStore
from ._relay import RelayedConnection, Relays
from ._sessions import (
    HARD_SIZE_FACTOR,
    Connection,
    Limits,
    Peer,
    PeerState,
    Session,
    secs,
    wire_secs,
)
from .protocol import (
    Answer,
    ClientModel,
    Close,
    Closed,
    Decline,
    Join,
    Joined,
    Offer,
    PeerJoined,
    PeerLeft,
    Ping,
    Pong,
    Register,
    Registered,
    ServerModel,
    to_wire,
)

logger = logging.getLogger(__name__)

#: How long ``close()`` lets closing handshakes it started run on once every connection is closed.
_SHUTDOWN_WAIT_SECS = 5.0
#: Bytes buffered for a client below which a send cannot wait (websockets' write limit is 32 KiB;
#: what the server sends is ASCII JSON, one byte a character).
_UNBLOCKED = 16 * 1024


class _Gone(Exception):
    """The connection this handler serves was closed."""


class SignalingServer:
    """Pairs owners with scientists and relays offers and answers between them."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        redis_url: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        """``redis_url`` (``redis://...`` or ``unix:///...``): share sessions and the registry
        with the other instances using that Redis (see :mod:`._redis`); None: this instance
        alone, in memory. ``registry``: the owners' registry (issue 21); by default one kept in
        that Redis (``RedisRegistryStore``, set up by ``start``) or, without one, in memory."""
        self.limits = limits or Limits()
        # --- the registry (issue 21): owners' signed listings
        self.registry = registry if registry is not None else Registry()
        self._registry_given = registry is not None
        self._sessions: dict[str, Session] = {}
        self._sessions_per_ip: dict[str, int] = {}
        self._ws_server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""
        self.redis_url = redis_url
        #: the redis.asyncio client once started with a Redis URL (None without one)
        self.redis: Any = None
        self._relays: Relays | None = None
        self._rate = RateLimiter(self.limits.connections_per_sec, self.limits.connection_burst)
        #: connections over their address's rate, to be told so once the handshake is done
        self._over_rate: weakref.WeakSet[ServerConnection] = weakref.WeakSet()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start listening on the running loop; return the ``ws://`` URL.

        With a Redis URL, connect to it first: raises ``RedisUnavailable`` if it cannot.
        """
        if self.redis_url is not None and self._relays is None:
            bus = RedisBus(self.redis_url, lambda envelope: relays.on_envelope(envelope))
            relays = Relays(bus, self._serve_relayed, self._write)
            await bus.start()
            relays.start()
            self._relays, self.redis = relays, bus.redis
            if not self._registry_given:  # one registry for every instance sharing the Redis
                self.registry = Registry(RedisRegistryStore(bus.redis), self.registry.limits)
        self._ws_server = await serve(
            self._handle,
            host,
            port,
            compression=None,
            max_size=self.limits.max_message_bytes * HARD_SIZE_FACTOR,
            process_request=self._screen,
        )
        bound_host, bound_port = self._ws_server.sockets[0].getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"ws://{shown}:{bound_port}"
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def instance(self) -> str | None:
        """This instance's ID among those sharing a Redis (None without Redis)."""
        return self._relays.bus.instance if self._relays is not None else None

    async def serve_forever(self) -> None:
        if self._ws_server is None:
            raise RuntimeError("call start() first")
        await self._ws_server.serve_forever()

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001); idempotent."""
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._tasks:  # closing handshakes with scientists: their connections are closed now
            _, pending = await asyncio.wait(set(self._tasks), timeout=_SHUTDOWN_WAIT_SECS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._relays is not None:
            await self._relays.close()
            await self._relays.bus.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` apart, so an owner's handler never waits on one scientist's socket."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("closing a scientist's connection failed", exc_info=task.exception())

    # ----------------------------------------------------------------- connections

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            self._admit_connection(ws)
            await self._serve_connection(ws)
        except Reject as rej:
            logger.debug("refused %s: %s", _ip(ws), rej)
            await self._reject(ws, rej)
        except _Gone:
            pass

    async def _serve_connection(self, ws: ServerConnection) -> None:
        # An idle connection costs little, but it must not linger: one that says nothing is
        # dropped after a few seconds, so idle sockets never hold a place.
        wait = self.limits.first_message_timeout
        try:
            async with asyncio.timeout(wait):
                first = await self._recv(ws)
        except TimeoutError:
            raise Reject(
                "expired",
                f"no register or join message within {secs(wait)} s of connecting; "
                "send one right after connecting",
            ) from None
        if isinstance(first, Register):
            await self._run_owner(ws, first)
        elif isinstance(first, Join):
            if self._relays is not None and first.session_id not in self._sessions:
                bound = self.limits.session_ttl + self.limits.first_message_timeout
                await self._relays.join_remote(ws, first.session_id, bound)
            else:
                await self._run_scientist(ws, first.session_id)
        elif isinstance(first, REGISTRY_TYPES):  # --- the registry (issue 21)
            recv = lambda: self._recv(ws)  # noqa: E731
            await self.registry.serve(ws, first, recv=recv, address=_ip(ws), online=self._online)
        else:
            raise Reject(
                "malformed",
                f'a new connection must start with "register" (owner) or "join" (scientist), '
                f'not "{first.type}"',
            )

    def _screen(self, ws: ServerConnection, request: Request) -> Response | None:
        """Before the websocket handshake: take a token from the address's bucket.

        A connection over the rate is told so (``rate_limited``) after the handshake; one from
        an address whose bucket is at its floor (see ``_limits``) gets a bare HTTP 429.
        """
        admission = self._rate.admit(_ip(ws), asyncio.get_running_loop().time())
        if admission is Admission.REFUSE:
            self._over_rate.add(ws)
        elif admission is Admission.SHUT:
            return ws.respond(HTTPStatus.TOO_MANY_REQUESTS, f"rate_limited: {self._too_fast(ws)}\n")
        return None

    def _admit_connection(self, ws: ServerConnection) -> None:
        """Refuse a connection from an address that opens them faster than its bucket allows."""
        if ws in self._over_rate:
            self._over_rate.discard(ws)
            logger.debug("rate limited %s", _ip(ws))
            raise Reject("rate_limited", self._too_fast(ws))

    def _too_fast(self, ws: ServerConnection) -> str:
        return (
            f"{_ip(ws)} opens connections faster than this signaling server allows "
            f"({self.limits.connections_per_sec:g} a second after the first "
            f"{self.limits.connection_burst}); wait a second and try again"
        )

    async def _serve_relayed(self, conn: RelayedConnection, session_id: str) -> None:
        """A scientist of another instance joins a session held here (see ``_relay``)."""
        try:
            await self._run_scientist(conn, session_id)
        except Reject as rej:
            logger.debug("refused %s (relayed): %s", _ip(conn), rej)
            await self._reject(conn, rej)
        except _Gone:
            pass

    async def _recv(self, ws: Connection) -> ClientModel:
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise _Gone from exc
        return parse(raw, self.limits.max_message_bytes)

    async def _send(self, ws: Connection, message: ServerModel) -> None:
        try:
            await self._write(ws, to_wire(message))
        except ConnectionClosed as exc:
            raise _Gone from exc

    async def _reject(self, ws: Connection, rej: Reject) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._write(ws, rej.to_wire())
        await ws.close(rej.close_code, rej.code)

    async def _write(self, ws: Connection, text: str) -> None:
        """Send ``text``, or drop a client that reads nothing for ``send_timeout``.

        Raises ``ConnectionClosed`` if the connection is closed, or was dropped here.
        """
        transport = getattr(ws, "transport", None)  # None: a relayed scientist (_relay)
        if transport is None or transport.get_write_buffer_size() + len(text) < _UNBLOCKED:
            # below websockets' write limit a send never waits, so no timer is set (the usual
            # case); a relayed scientist's send is a publish, bounded by Redis's own timeout
            await ws.send(text)
            return
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await ws.send(text)
        except TimeoutError:
            logger.warning(
                "dropped %s: it read nothing for %s s", _ip(ws), secs(self.limits.send_timeout)
            )
            transport.abort()
            raise ConnectionClosedError(None, None) from None

    # ----------------------------------------------------------------- owners

    def _admit_owner(self, ws: ServerConnection, register: Register) -> Session:
        limits = self.limits
        if len(self._sessions) >= limits.max_sessions:
            logger.warning("refused to register: %d sessions open", len(self._sessions))
            raise Reject(
                "server_full",
                f"the signaling server already holds {len(self._sessions)} sessions "
                f"(limit {limits.max_sessions}); try again later or raise --max-sessions",
            )
        ip = _ip(ws)
        held = self._sessions_per_ip.get(ip, 0)
        if held >= limits.max_sessions_per_ip:
            logger.warning("refused to register for %s: it holds %d sessions", ip, held)
            raise Reject(
                "too_many_sessions",
                f"{ip} already holds {held} open sessions on this signaling server (limit "
                f"{limits.max_sessions_per_ip}); finish or close some, or raise "
                "--max-sessions-per-ip on the server",
            )
        session_id = secrets.token_hex(16)
        while session_id in self._sessions:  # pragma: no cover - 128 random bits
            session_id = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        session = Session(
            session_id, ws, ip, loop.time(), max_peers=register.max_peers, open=register.opens
        )
        self._sessions[session_id] = session
        self._sessions_per_ip[ip] = held + 1
        return session

    async def _run_owner(self, ws: ServerConnection, register: Register) -> None:
        session = self._admit_owner(ws, register)
        ttl = self.limits.session_ttl
        try:
            await self._claim(session)
            await self._send(ws, Registered(session_id=session.id, ttl_secs=wire_secs(ttl)))
            async with asyncio.timeout(ttl) as deadline:
                session.deadline = deadline
                while True:
                    msg = await self._recv(ws)
                    if not session.open:
                        if await self._owner_message(session, msg):
                            return
                        continue
                    # an open session lives as long as its owner keeps talking (see "ping")
                    deadline.reschedule(asyncio.get_running_loop().time() + ttl)
                    self._renew(session)
                    if await self._open_owner_message(session, msg):
                        return
        except TimeoutError:
            raise await self._owner_expired(session) from None
        except Reject as rej:
            await self._end(
                session,
                f"owner refused ({rej.code}) after {self._age(session)}",
                Reject(
                    "peer_left",
                    f"the owner was disconnected ({rej.code}) before the offer/answer exchange "
                    "completed; ask the owner for a new session ID",
                ),
            )
            raise
        except _Gone:
            await self._end(
                session,
                f"owner left after {self._age(session)}",
                Reject(
                    "peer_left",
                    "the owner disconnected before the offer/answer exchange completed; "
                    "ask the owner for a new session ID",
                ),
            )
            raise
        finally:
            # Covers cancellation (server shutdown); a no-op if the session already ended.
            self._mark_ended(session, f"interrupted after {self._age(session)}")

    async def _owner_expired(self, session: Session) -> Reject:
        """End a session whose TTL ran out; return the error for its owner."""
        ttl = self.limits.session_ttl
        sid = short_id(session.id)
        if session.open:
            text = f"session {sid} expired after {secs(ttl)} s without a message from its owner"
            outcome = "without a message from its owner"
            tell_peers = Reject(
                "expired", f"{text}; ask the owner for a new session ID if they are still there"
            )
        elif not session.issued:
            text = f"session {sid} expired after {secs(ttl)} s without a scientist joining"
            outcome = "unpaired"
            tell_peers = Reject("expired", f"{text}; register again for a new session ID")
        else:
            text = (
                f"session {sid}: the offer/answer exchange did not complete within "
                f"{secs(ttl)} s of joining"
            )
            outcome = "before the offer/answer exchange completed"
            tell_peers = Reject("expired", f"{text}; register again for a new session ID")
        rej = Reject("expired", f"{text}; register again for a new session ID")
        await self._end(session, f"expired after {self._age(session)} {outcome}", tell_peers)
        return rej

    async def _owner_message(self, session: Session, msg: ClientModel) -> bool:
        """One-scientist session: handle the owner's message; True once the session is done."""
        if not (isinstance(msg, Answer) and session.state == "offered"):
            raise out_of_order("owner", msg.type, session.state, session.id)
        if msg.peer is not None:
            raise owner_misaddressed(session.id, msg.type, msg.peer, "legacy")
        peer = next(iter(session.peers.values()))
        await self._send_to_scientist(session, peer, Answer(sdp=msg.sdp))
        peer.state = PeerState.ANSWERED
        session.state = "answered"
        session.events[-1] = "relayed offer/answer"
        self._mark_ended(session, f"closed after {self._age(session)}")
        await asyncio.gather(
            peer.ws.close(CloseCode.NORMAL_CLOSURE), session.owner.close(CloseCode.NORMAL_CLOSURE)
        )
        return True

    async def _open_owner_message(self, session: Session, msg: ClientModel) -> bool:
        """Open session: handle the owner's message; True once the session is done."""
        if isinstance(msg, Ping):
            await self._send(session.owner, Pong(ttl_secs=wire_secs(self.limits.session_ttl)))
            return False
        if isinstance(msg, Close):
            await self._close_open(session, "closed")
            return True
        if not isinstance(msg, Answer | Decline):
            raise out_of_order("owner", msg.type, "open", session.id)
        if msg.peer is None:
            raise owner_misaddressed(session.id, msg.type, None, "no_peer")
        peer = session.peers.get(msg.peer)
        if peer is None:
            if session.was_issued(msg.peer):
                # it left (the owner is told, or about to be, with peer_left) or was declined
                logger.debug(
                    "session %s: %s for gone %s ignored", short_id(session.id), msg.type, msg.peer
                )
                return False
            raise owner_misaddressed(session.id, msg.type, msg.peer, "unknown")
        if isinstance(msg, Decline):
            self._finish_peer(session, peer, PeerState.GONE)
            session.declined += 1
            reason = msg.reason or "no reason given"
            self._spawn(
                self._reject(
                    peer.ws,
                    Reject(
                        "declined",
                        f"the owner of session {short_id(session.id)} declined this connection "
                        f"({reason}); ask the owner what they expect",
                    ),
                )
            )
            return False
        if peer.state is not PeerState.OFFERED:
            raise owner_misaddressed(session.id, msg.type, msg.peer, "not_offered")
        self._finish_peer(session, peer, PeerState.ANSWERED)
        try:
            await self._write(peer.ws, to_wire(Answer(sdp=msg.sdp)))
        except ConnectionClosed:
            # it left just now; its own handler sees ANSWERED and says nothing, so tell here
            peer.state = PeerState.GONE
            session.left += 1
            await self._send(
                session.owner,
                PeerLeft(
                    peer=peer.id,
                    reason="left",
                    message="the scientist disconnected before the answer reached it",
                ),
            )
            return False
        session.answered += 1
        self._spawn(peer.ws.close(CloseCode.NORMAL_CLOSURE))
        if session.max_peers is not None and session.answered >= session.max_peers:
            await self._close_open(session, "max_peers")
            return True
        return False

    async def _close_open(self, session: Session, reason: str) -> None:
        """End an open session normally: tell its owner why, and close the connection (1000)."""
        note = "max_peers reached" if reason == "max_peers" else "closed by the owner"
        await self._end(
            session,
            f"{note} after {self._age(session)}",
            Reject(
                "peer_left",
                f"the owner closed session {short_id(session.id)} before answering; ask the "
                "owner for a new session ID",
            ),
        )
        closed = Closed(
            reason="max_peers" if reason == "max_peers" else "closed", answered=session.answered
        )
        with contextlib.suppress(_Gone):
            await self._send(session.owner, closed)
        await session.owner.close(CloseCode.NORMAL_CLOSURE)

    # ----------------------------------------------------------------- scientists

    async def _online(self, session_id: str) -> bool:
        """Whether ``session_id`` is open: here, or on another instance sharing this Redis
        (the registry's ``online`` column)."""
        if session_id in self._sessions:
            return True
        if self._relays is None:
            return False
        return await self._relays.bus.locate(session_id) is not None

    async def _run_scientist(self, ws: Connection, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            raise Reject(
                "unknown_session",
                f"session {short_id(session_id)} is unknown or expired; ask the owner for a new ID",
            )
        if session.open:
            await self._run_open_scientist(ws, session)
            return
        if session.issued:
            raise Reject(
                "session_taken",
                f"session {short_id(session_id)} already has a scientist connected; "
                "ask the owner for a new session ID",
            )
        peer = self._add_peer(session, ws)
        session.state = "joined"
        session.events.append("joined")
        if session.deadline is not None:
            loop = asyncio.get_running_loop()
            session.deadline.reschedule(loop.time() + self.limits.session_ttl)
            self._renew(session)
        try:
            await self._send(ws, Joined())
            await self._send_to_owner(session, PeerJoined())
            while True:
                msg = await self._recv(ws)
                if isinstance(msg, Offer) and session.state == "joined":
                    if msg.peer is not None:
                        raise scientist_named_peer(session_id, msg.peer)
                    # before relaying: the owner may answer before this handler runs again
                    session.state = "offered"
                    peer.state = PeerState.OFFERED
                    await self._send_to_owner(session, Offer(sdp=msg.sdp))
                    session.events.append("relayed offer")
                    continue
                raise out_of_order("scientist", msg.type, session.state, session_id)
        except Reject as rej:
            self._finish_peer(session, peer, PeerState.GONE)
            await self._end(
                session,
                f"scientist refused ({rej.code}) after {self._age(session)}",
                Reject(
                    "peer_left",
                    f"the scientist was disconnected ({rej.code}) before the offer/answer "
                    "exchange completed; register again and share the new session ID",
                ),
                owner=True,
            )
            raise
        except _Gone:
            self._finish_peer(session, peer, PeerState.GONE)
            await self._end(
                session,
                f"scientist left after {self._age(session)}",
                Reject(
                    "peer_left",
                    "the scientist disconnected before the offer/answer exchange completed; "
                    "register again and share the new session ID",
                ),
                owner=True,
            )
            raise

    async def _run_open_scientist(self, ws: Connection, session: Session) -> None:
        """One scientist's exchange in an open session; its failure ends only this exchange.

        Whoever ends the exchange closes the connection: this handler if the scientist failed,
        the owner's if it answered or declined, or the session ended. In the latter cases this
        handler waits for that close (returning would close the connection with 1000 first).
        """
        peer = self._admit_to_open(session, ws)
        # a join holds one of the session's few places: one that sends no offer, or whose
        # exchange does not finish, gives it back soon, not after the session's TTL
        bound = min(self.limits.session_ttl, self.limits.join_timeout)
        sid = short_id(session.id)
        logger.debug("session %s: %s joined from %s", sid, peer.id, _ip(ws))
        try:
            async with asyncio.timeout(bound):
                await self._send(ws, Joined())
                await self._send_to_owner(session, PeerJoined(peer=peer.id))
                while True:
                    msg = await self._recv(ws)
                    if not (isinstance(msg, Offer) and peer.state is PeerState.JOINED):
                        raise out_of_order("scientist", msg.type, peer.state.value, session.id)
                    if msg.peer is not None:
                        raise scientist_named_peer(session.id, msg.peer)
                    peer.state = PeerState.OFFERED  # before relaying, as above
                    await self._send_to_owner(session, Offer(sdp=msg.sdp, peer=peer.id))
        except TimeoutError:
            rej = Reject(
                "expired",
                f"session {sid}: the offer/answer exchange did not complete within "
                f"{secs(bound)} s of joining; join again (send the offer right after joining)",
            )
            if await self._peer_gone(session, peer, "expired", rej.message):
                raise rej from None
            await ws.wait_closed()
        except Reject as rej:
            message = f"the scientist was refused ({rej.code}): {rej.message}"
            if await self._peer_gone(session, peer, "refused", message):
                raise
            await ws.wait_closed()
        except _Gone:
            await self._peer_gone(session, peer, "left", "the scientist disconnected")
        finally:
            if session.peers.get(peer.id) is peer:  # cancelled: the server is shutting down
                self._finish_peer(session, peer, PeerState.GONE)

    def _add_peer(self, session: Session, ws: Connection) -> Peer:
        session.issued += 1
        peer = Peer(f"p{session.issued}", ws)
        session.peers[peer.id] = peer
        return peer

    def _admit_to_open(self, session: Session, ws: Connection) -> Peer:
        sid = short_id(session.id)
        pending = len(session.peers)
        if pending >= self.limits.max_pending_joins:
            raise Reject(
                "session_busy",
                f"session {sid} has {pending} scientists mid-exchange already (limit "
                f"{self.limits.max_pending_joins}); try again in a minute",
            )
        if session.max_peers is not None and session.answered + pending >= session.max_peers:
            raise Reject(
                "session_busy",
                f"session {sid} accepts {session.max_peers} scientists and is answering the "
                "last of them; try again in a minute, or ask the owner for a new session ID",
            )
        return self._add_peer(session, ws)

    @staticmethod
    def _finish_peer(session: Session, peer: Peer, state: PeerState) -> None:
        peer.state = state
        if session.peers.get(peer.id) is peer:
            del session.peers[peer.id]

    async def _peer_gone(
        self,
        session: Session,
        peer: Peer,
        reason: Literal["left", "refused", "expired"],
        message: str,
    ) -> bool:
        """Open session: end ``peer``'s exchange and tell the owner; False if it had ended."""
        if peer.state in (PeerState.ANSWERED, PeerState.GONE):
            return False
        self._finish_peer(session, peer, PeerState.GONE)
        session.left += 1
        logger.debug("session %s: %s %s", short_id(session.id), peer.id, reason)
        if not session.ended:
            with contextlib.suppress(ConnectionClosed):  # the owner's handler sees it gone
                await self._write(
                    session.owner, to_wire(PeerLeft(peer=peer.id, reason=reason, message=message))
                )
        return True

    # ----------------------------------------------------------------- relaying and ending

    async def _send_to_owner(self, session: Session, message: ServerModel) -> None:
        """Relay to the owner; if it is gone, end the session and refuse this scientist."""
        try:
            await self._write(session.owner, to_wire(message))
        except ConnectionClosed:
            self._mark_ended(session, f"owner left after {self._age(session)}")
            raise Reject(
                "peer_left",
                "the owner disconnected before the offer/answer exchange completed; "
                "start a new session",
            ) from None

    async def _send_to_scientist(self, session: Session, peer: Peer, message: Answer) -> None:
        """One-scientist session: relay to the scientist; if it is gone, end the session."""
        try:
            await self._write(peer.ws, to_wire(message))
        except ConnectionClosed:
            self._mark_ended(session, f"scientist left after {self._age(session)}")
            raise Reject(
                "peer_left",
                "the scientist disconnected before the offer/answer exchange completed; "
                "start a new session",
            ) from None

    async def _end(
        self, session: Session, outcome: str, tell: Reject, *, owner: bool = False
    ) -> None:
        """End the session (once) and tell the other side(s) why, closing their connections.

        ``owner``: a scientist's handler ends a one-scientist session, so tell the owner;
        otherwise the owner's handler ends it, so tell every scientist mid-exchange.
        """
        ended_now = self._mark_ended(session, outcome)
        if owner:
            if ended_now:
                await self._reject(session.owner, tell)
            return
        for peer in list(session.peers.values()):
            self._finish_peer(session, peer, PeerState.GONE)
            if session.open:  # one slow scientist must not hold up the others
                self._spawn(self._reject(peer.ws, tell))
            else:
                await self._reject(peer.ws, tell)

    def _mark_ended(self, session: Session, outcome: str) -> bool:
        """Forget the session and log its life in one line; False if it had already ended."""
        if session.ended:
            return False
        session.ended = True
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        left = self._sessions_per_ip[session.owner_ip] - 1
        if left:
            self._sessions_per_ip[session.owner_ip] = left
        else:
            del self._sessions_per_ip[session.owner_ip]
        logger.info("session %s %s, %s", short_id(session.id), session.life(), outcome)
        if self._relays is not None:
            self._relays.forget(session.id)
        return True

    # ----------------------------------------------------------------- the Redis directory

    async def _claim(self, session: Session) -> None:
        """With Redis: list the session as held here, before its owner learns its ID."""
        if self._relays is not None:
            session.renewed = asyncio.get_running_loop().time()
            await self._relays.claim(session.id, self.limits.session_ttl)

    def _renew(self, session: Session) -> None:
        """With Redis: push the directory entry's expiry back (at most ten times a TTL)."""
        now = asyncio.get_running_loop().time()
        if self._relays is not None and now - session.renewed >= self.limits.session_ttl / 10:
            session.renewed = now
            self._relays.renew(session.id, self.limits.session_ttl)

    @staticmethod
    def _age(session: Session) -> str:
        return f"{asyncio.get_running_loop().time() - session.started:.1f} s"


def _ip(ws: Connection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else "unknown"


async def start_embedded_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    redis_url: str | None = None,
    registry: Registry | None = None,
    **limits: Any,
) -> tuple[SignalingServer, str]:
    """Run a signaling server on the current asyncio loop; return it and its ``ws://`` URL.

    ``limits`` are the fields of :class:`Limits` (``session_ttl``, ``max_message_bytes``,
    ``max_sessions_per_ip``, ``max_sessions``, ``first_message_timeout``,
    ``max_pending_joins``, ``join_timeout``, ``send_timeout``, ``connections_per_sec``,
    ``connection_burst``); ``redis_url`` shares its sessions and registry with the other
    instances using that Redis; ``registry`` the owners' registry (see SignalingServer). Stop it
    with ``await server.close()``.
    """
    server = SignalingServer(Limits(**limits), redis_url=redis_url, registry=registry)
    url = await server.start(host, port)
    return server, url
