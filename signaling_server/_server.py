"""The signaling server: sessions, pairing, relaying, limits and expiry.

See the package docstring (``signaling_server/__init__.py``) for the wire protocol. The owner's
connection handler owns a session's lifetime: it waits under an ``asyncio.timeout`` that the
scientist's join reschedules, so expiry needs no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from ._messages import Reject, out_of_order, parse, short_id

logger = logging.getLogger(__name__)

DEFAULT_SESSION_TTL = 600.0
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_MAX_SESSIONS_PER_IP = 64
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_FIRST_MESSAGE_TIMEOUT = 5.0

#: Messages up to this many times ``max_message_bytes`` get a ``too_big`` error message; larger
#: ones are cut off by the websocket layer (close code 1009, no message) before being buffered.
HARD_SIZE_FACTOR = 4


@dataclass(frozen=True)
class Limits:
    """The server's limits; see ``python -m signaling_server --help``."""

    session_ttl: float = DEFAULT_SESSION_TTL
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_sessions_per_ip: int = DEFAULT_MAX_SESSIONS_PER_IP
    max_sessions: int = DEFAULT_MAX_SESSIONS
    first_message_timeout: float = DEFAULT_FIRST_MESSAGE_TIMEOUT

    def __post_init__(self) -> None:
        for name in (
            "session_ttl",
            "max_message_bytes",
            "max_sessions_per_ip",
            "max_sessions",
            "first_message_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


class _Gone(Exception):
    """The connection this handler serves was closed."""


@dataclass(eq=False)
class _Session:
    id: str
    owner: ServerConnection
    owner_ip: str
    started: float
    scientist: ServerConnection | None = None
    state: str = "registered"  # -> joined -> offered -> answered
    events: list[str] = field(default_factory=lambda: ["registered"])
    deadline: asyncio.Timeout | None = None
    ended: bool = False


def _secs(value: float) -> str:
    return f"{value:g}"


class SignalingServer:
    """Pairs owners with scientists and relays one offer and one answer per session."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._sessions: dict[str, _Session] = {}
        self._sessions_per_ip: dict[str, int] = {}
        self._ws_server: Server | None = None
        self.url = ""

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start listening on the running loop; return the ``ws://`` URL."""
        self._ws_server = await serve(
            self._handle,
            host,
            port,
            compression=None,
            max_size=self.limits.max_message_bytes * HARD_SIZE_FACTOR,
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

    async def serve_forever(self) -> None:
        if self._ws_server is None:
            raise RuntimeError("call start() first")
        await self._ws_server.serve_forever()

    async def close(self) -> None:
        """Stop listening and close every connection (code 1001); idempotent."""
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()

    # ----------------------------------------------------------------- connections

    async def _handle(self, ws: ServerConnection) -> None:
        try:
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
                f"no register or join message within {_secs(wait)} s of connecting; "
                "send one right after connecting",
            ) from None
        if first["type"] == "register":
            await self._run_owner(ws)
        elif first["type"] == "join":
            await self._run_scientist(ws, first["session_id"])
        else:
            raise Reject(
                "malformed",
                f'a new connection must start with "register" (owner) or "join" (scientist), '
                f'not "{first["type"]}"',
            )

    async def _recv(self, ws: ServerConnection) -> dict[str, Any]:
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise _Gone from exc
        return parse(raw, self.limits.max_message_bytes)

    @staticmethod
    async def _send(ws: ServerConnection, message: dict[str, Any]) -> None:
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise _Gone from exc

    @staticmethod
    async def _reject(ws: ServerConnection, rej: Reject) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(rej.to_wire())
        await ws.close(rej.close_code, rej.code)

    # ----------------------------------------------------------------- sessions

    async def _run_owner(self, ws: ServerConnection) -> None:
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
        session = _Session(session_id, ws, ip, loop.time())
        self._sessions[session_id] = session
        self._sessions_per_ip[ip] = held + 1
        ttl = limits.session_ttl
        try:
            await self._send(
                ws,
                {
                    "type": "registered",
                    "session_id": session_id,
                    "ttl_secs": int(ttl) if ttl == int(ttl) else ttl,
                },
            )
            async with asyncio.timeout(ttl) as deadline:
                session.deadline = deadline
                while True:
                    msg = await self._recv(ws)
                    if msg["type"] == "answer" and session.state == "offered":
                        await self._relay_answer(session, msg["sdp"])
                        return
                    raise out_of_order("owner", msg["type"], session.state, session_id)
        except TimeoutError:
            unpaired = session.scientist is None
            sid = short_id(session_id)
            if unpaired:
                text = f"session {sid} expired after {_secs(ttl)} s without a scientist joining"
            else:
                text = (
                    f"session {sid}: the offer/answer exchange did not complete within "
                    f"{_secs(ttl)} s of joining"
                )
            rej = Reject("expired", f"{text}; register again for a new session ID")
            outcome = "unpaired" if unpaired else "before the offer/answer exchange completed"
            await self._end(
                session, f"expired after {self._age(session)} {outcome}", session.scientist, rej
            )
            raise rej from None
        except Reject as rej:
            await self._end(
                session,
                f"owner refused ({rej.code}) after {self._age(session)}",
                session.scientist,
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
                session.scientist,
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

    async def _run_scientist(self, ws: ServerConnection, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.ended:
            raise Reject(
                "unknown_session",
                f"session {short_id(session_id)} is unknown or expired; ask the owner for a new ID",
            )
        if session.scientist is not None:
            raise Reject(
                "session_taken",
                f"session {short_id(session_id)} already has a scientist connected; "
                "ask the owner for a new session ID",
            )
        session.scientist = ws
        session.state = "joined"
        session.events.append("joined")
        if session.deadline is not None:
            loop = asyncio.get_running_loop()
            session.deadline.reschedule(loop.time() + self.limits.session_ttl)
        try:
            await self._send(ws, {"type": "joined"})
            await self._send_to_peer(session, "owner", {"type": "peer_joined"})
            while True:
                msg = await self._recv(ws)
                if msg["type"] == "offer" and session.state == "joined":
                    await self._send_to_peer(session, "owner", {"type": "offer", "sdp": msg["sdp"]})
                    session.state = "offered"
                    session.events.append("relayed offer")
                    continue
                raise out_of_order("scientist", msg["type"], session.state, session_id)
        except Reject as rej:
            await self._end(
                session,
                f"scientist refused ({rej.code}) after {self._age(session)}",
                session.owner,
                Reject(
                    "peer_left",
                    f"the scientist was disconnected ({rej.code}) before the offer/answer "
                    "exchange completed; register again and share the new session ID",
                ),
            )
            raise
        except _Gone:
            await self._end(
                session,
                f"scientist left after {self._age(session)}",
                session.owner,
                Reject(
                    "peer_left",
                    "the scientist disconnected before the offer/answer exchange completed; "
                    "register again and share the new session ID",
                ),
            )
            raise

    async def _relay_answer(self, session: _Session, sdp: str) -> None:
        await self._send_to_peer(session, "scientist", {"type": "answer", "sdp": sdp})
        session.state = "answered"
        session.events[-1] = "relayed offer/answer"
        self._mark_ended(session, f"closed after {self._age(session)}")
        scientist = session.scientist
        assert scientist is not None
        await asyncio.gather(
            scientist.close(CloseCode.NORMAL_CLOSURE), session.owner.close(CloseCode.NORMAL_CLOSURE)
        )

    async def _send_to_peer(self, session: _Session, role: str, message: dict[str, Any]) -> None:
        """Send to the other side; if it is gone, end the session and refuse this side."""
        peer = session.owner if role == "owner" else session.scientist
        assert peer is not None
        try:
            await peer.send(json.dumps(message))
        except ConnectionClosed:
            self._mark_ended(session, f"{role} left after {self._age(session)}")
            raise Reject(
                "peer_left",
                f"the {role} disconnected before the offer/answer exchange completed; "
                "start a new session",
            ) from None

    async def _end(
        self, session: _Session, outcome: str, peer: ServerConnection | None, tell_peer: Reject
    ) -> None:
        """End the session (once) and tell the other side why, closing its connection."""
        if self._mark_ended(session, outcome) and peer is not None:
            await self._reject(peer, tell_peer)

    def _mark_ended(self, session: _Session, outcome: str) -> bool:
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
        logger.info("session %s %s, %s", short_id(session.id), " -> ".join(session.events), outcome)
        return True

    @staticmethod
    def _age(session: _Session) -> str:
        return f"{asyncio.get_running_loop().time() - session.started:.1f} s"


def _ip(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else "unknown"


async def start_embedded_server(
    host: str = "127.0.0.1", port: int = 0, **limits: Any
) -> tuple[SignalingServer, str]:
    """Run a signaling server on the current asyncio loop; return it and its ``ws://`` URL.

    ``limits`` are the fields of :class:`Limits` (``session_ttl``, ``max_message_bytes``,
    ``max_sessions_per_ip``, ``max_sessions``, ``first_message_timeout``). Stop it with
    ``await server.close()``.
    """
    server = SignalingServer(Limits(**limits))
    url = await server.start(host, port)
    return server, url
