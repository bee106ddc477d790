"""The server's limits and what it holds for each session: its owner, its scientists.

See the package docstring (``signaling_server/__init__.py``) for the protocol these follow.
"""

from __future__ import annotations

import asyncio
import enum
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection

DEFAULT_SESSION_TTL = 600.0
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
DEFAULT_MAX_SESSIONS_PER_IP = 64
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_FIRST_MESSAGE_TIMEOUT = 5.0
DEFAULT_MAX_PENDING_JOINS = 8
#: a scientist in an open session must have its exchange done this soon after joining: duet's
#: scientist offers right after joining and its owner answers at once, so only a client that
#: holds a place without using it needs longer
DEFAULT_JOIN_TIMEOUT = 30.0
#: a client that has not read what the server sends it within this time is dropped
DEFAULT_SEND_TIMEOUT = 10.0
#: new connections one source address may open: this many a second, after a first burst
DEFAULT_CONNECTIONS_PER_SEC = 20.0
DEFAULT_CONNECTION_BURST = 100

#: Messages up to this many times ``max_message_bytes`` get a ``too_big`` error message; larger
#: ones are cut off by the websocket layer (close code 1009, no message) before being buffered.
HARD_SIZE_FACTOR = 4

_PEER_ID = re.compile(r"p([1-9][0-9]{0,17})")


@dataclass(frozen=True)
class Limits:
    """The server's limits; see ``python -m signaling_server --help``."""

    session_ttl: float = DEFAULT_SESSION_TTL
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_sessions_per_ip: int = DEFAULT_MAX_SESSIONS_PER_IP
    max_sessions: int = DEFAULT_MAX_SESSIONS
    first_message_timeout: float = DEFAULT_FIRST_MESSAGE_TIMEOUT
    max_pending_joins: int = DEFAULT_MAX_PENDING_JOINS
    join_timeout: float = DEFAULT_JOIN_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    connections_per_sec: float = DEFAULT_CONNECTIONS_PER_SEC
    connection_burst: int = DEFAULT_CONNECTION_BURST

    def __post_init__(self) -> None:
        for name in (
            "session_ttl",
            "max_message_bytes",
            "max_sessions_per_ip",
            "max_sessions",
            "first_message_timeout",
            "max_pending_joins",
            "join_timeout",
            "send_timeout",
            "connections_per_sec",
            "connection_burst",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


class PeerState(enum.Enum):
    """One scientist's exchange: ``joined -> offered -> answered``, or ``gone`` at any point."""

    JOINED = "joined"
    OFFERED = "offered"
    ANSWERED = "answered"
    GONE = "gone"


class Connection(Protocol):
    """What the session code needs of a scientist's connection: a websocket, or a scientist of
    another instance relayed through Redis (``_relay.RelayedConnection``)."""

    @property
    def remote_address(self) -> Any: ...

    async def recv(self) -> str | bytes: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    async def wait_closed(self) -> None: ...


@dataclass(eq=False)
class Peer:
    id: str
    ws: Connection
    state: PeerState = PeerState.JOINED


@dataclass(eq=False)
class Session:
    id: str
    owner: ServerConnection
    owner_ip: str
    started: float
    #: the session ends once it has answered this many scientists (None: no limit)
    max_peers: int | None = 1
    #: an open session (max_peers other than 1, or asked for): a scientist's failure ends only
    #: its own exchange
    open: bool = False
    #: scientists mid-exchange (joined or offered), by peer ID
    peers: dict[str, Peer] = field(default_factory=dict)
    issued: int = 0  # peer IDs handed out: p1 .. p{issued}
    answered: int = 0
    left: int = 0
    declined: int = 0
    state: str = "registered"  # one-scientist session: -> joined -> offered -> answered
    events: list[str] = field(default_factory=lambda: ["registered"])
    deadline: asyncio.Timeout | None = None
    ended: bool = False
    #: when the Redis directory's entry for this session was last renewed (loop time)
    renewed: float = 0.0

    def was_issued(self, peer_id: str) -> bool:
        match = _PEER_ID.fullmatch(peer_id)
        return match is not None and int(match.group(1)) <= self.issued

    def life(self) -> str:
        """What happened in the session, for its one log line."""
        if not self.open:
            return " -> ".join(self.events)
        limit = "no limit" if self.max_peers is None else f"max_peers {self.max_peers}"
        return (
            f"open ({limit}): {self.issued} joined, {self.answered} answered, "
            f"{self.left} left, {self.declined} declined"
        )


def secs(value: float) -> str:
    return f"{value:g}"


def wire_secs(value: float) -> int | float:
    """Whole seconds as an int on the wire (``600``, as ever), others as they are."""
    return int(value) if value == int(value) else value
