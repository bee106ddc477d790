"""Async client of the signaling server, used by both peers to exchange the WebRTC offer/answer.

Owner, one scientist::

    client = await SignalingClient.connect(url)
    session_id = await client.register()       # share this ID with the scientist
    await client.wait_peer_joined(None)         # bounded by the session TTL the server announced
    offer = await client.wait_offer(30)
    await client.send_answer(answer_sdp)
    await client.close()

Owner, an open session (several scientists, each with its own exchange)::

    client = await SignalingClient.connect(url)
    session_id = await client.register(max_peers=None)     # or max_peers=N
    async for peer, offer in client.offers(on_peer_left=forget):
        ...                                     # check the offer, confirm the client ID
        await client.send_answer(answer_sdp, peer=peer)     # or: await client.decline(peer, why)
    # the loop ends when the session does: max_peers answered, or close_session() was called

Scientist (the same for both kinds of session)::

    client = await SignalingClient.connect(url)
    await client.join(session_id)
    await client.send_offer(offer_sdp)
    answer = await client.wait_answer(30)
    await client.close()

Messages are the models of :mod:`signaling_server.protocol`, shared with the server, where the
wire protocol is documented (``signaling_server/__init__.py``).

Errors the server reports raise :class:`SignalingServerError` (a
:class:`~duet.errors.SignalingError` carrying the server's ``code``); finding nothing at the
server's address raises :class:`SignalingUnreachable` (a SignalingError: try again later);
a failed websocket handshake, losing the connection or receiving a message that is not a valid
one raise :class:`~duet.errors.SignalingError`; waits that run out of time raise
:class:`~duet.errors.DuetTimeout`; calls that do not fit the session (``wait_offer`` in an open
session, an answer naming no peer in one) raise :class:`~duet.errors.UsageError` before anything
is sent.

Concurrency: one task at a time may receive (``register``, ``join``, the ``wait_*`` methods,
``next_event``, ``next_offer``, ``offers``); ``send_answer``, ``decline``, ``keepalive`` and
``close_session`` may be called from other tasks on the same loop while it does. Cancelling a
receiving call is safe: no message is lost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TypeAlias, TypeVar

from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode

from signaling_server.protocol import (
    MAX_REASON_CHARS,
    MAX_SDP_CHARS,
    MAX_SESSION_ID_CHARS,
    Answer,
    ClientModel,
    Close,
    Closed,
    Decline,
    Error,
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
    WireError,
    parse_server_message,
    to_wire,
)

from ..errors import DuetTimeout, SignalingError, UsageError
from ..protocol.fields import Role

logger = logging.getLogger(__name__)

#: Extra time granted past the server's session TTL when ``wait_peer_joined(None)`` is used.
_TTL_SLACK_SECS = 10.0
#: An open session's owner pings at least this many times per session TTL while it waits.
_PINGS_PER_TTL = 3
#: Websocket keepalive: a server that stops answering pings is noticed within about 40 s, so
#: even a wait without a time limit ends when the connection dies.
_WS_PING_INTERVAL_SECS = 20.0
_WS_PING_TIMEOUT_SECS = 20.0
#: The peer ID of the one scientist of a one-scientist session (the wire names none).
ONLY_PEER = "p1"

#: What ``next_event`` returns to an owner.
OwnerEvent: TypeAlias = PeerJoined | Offer | PeerLeft | Closed
M = TypeVar("M", bound=BaseModel)
_PEER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

__all__ = [
    "ONLY_PEER",
    "Closed",
    "Offer",
    "OwnerEvent",
    "PeerJoined",
    "PeerLeft",
    "SignalingClient",
    "SignalingServerError",
    "SignalingUnreachable",
    "websocket_url",
]

_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def websocket_url(url: str) -> str:
    """The signaling server's websocket URL for ``url``: ``ws://`` and ``wss://`` as given,
    ``http://`` and ``https://`` (PySyft's ``network_url="http://localhost:5000"``) read as
    ``ws://`` and ``wss://`` (same host, port and path). Raises UsageError for anything else."""
    text = url.strip() if isinstance(url, str) else url
    parts = urllib.parse.urlsplit(text) if isinstance(text, str) else None
    scheme = _SCHEMES.get(parts.scheme.lower()) if parts is not None else None
    if parts is None or scheme is None or not parts.hostname:
        raise UsageError(
            f"{url!r} is not a signaling server URL; use ws://host:port or wss://host:port "
            "(http:// and https://, PySyft's form, are read as ws:// and wss://)"
        )
    return urllib.parse.urlunsplit(parts._replace(scheme=scheme))


class SignalingServerError(SignalingError):
    """The signaling server refused a request; ``server_code`` is its error code.

    Codes: ``unknown_session``, ``session_taken``, ``session_busy``, ``declined``,
    ``malformed``, ``too_big``, ``too_many_sessions``, ``server_full``, ``expired``,
    ``peer_left``.
    """

    def __init__(self, server_code: str, message: str) -> None:
        super().__init__(f"signaling server: {message} [{server_code}]")
        self.server_code = server_code


class SignalingUnreachable(SignalingError):
    """Nothing answered at the signaling server's address (refused, unreachable): it may not
    be running yet, so a caller may try again later."""


class SignalingClient:
    """One websocket connection to the signaling server, as owner or as scientist."""

    def __init__(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self.url = url
        self.session_id: str | None = None
        self.ttl_secs: float | None = None
        #: the owner's session ends once it has answered this many scientists (None: no limit)
        self.max_peers: int | None = 1
        self.role: Role | None = None  # "owner" once registered, "scientist" once joined
        self._open = False
        self._peer_joined = False
        self._answered = False
        self._closed_event: Closed | None = None
        self._last_sent = 0.0  # loop time of the last message sent (register sets it)

    @classmethod
    async def connect(cls, url: str, *, timeout_secs: float = 10.0) -> SignalingClient:
        """Open a connection to the signaling server at ``url`` (``ws://host:port``; an
        ``http://`` URL is read as ``ws://``, see ``websocket_url``)."""
        url = websocket_url(url)
        try:
            async with asyncio.timeout(timeout_secs):
                ws = await ws_connect(
                    url,
                    compression=None,
                    open_timeout=None,
                    ping_interval=_WS_PING_INTERVAL_SECS,
                    ping_timeout=_WS_PING_TIMEOUT_SECS,
                )
        except TimeoutError as exc:
            raise DuetTimeout(
                f"connecting to the signaling server at {url} did not finish within "
                f"{timeout_secs:g} s; check the URL and that the server is reachable"
            ) from exc
        except InvalidURI as exc:
            raise SignalingError(
                f"{url!r} is not a websocket URL; use ws://host:port or wss://host:port"
            ) from exc
        except OSError as exc:
            raise SignalingUnreachable(
                f"cannot connect to the signaling server at {url}: {exc}; "
                "check that it is running and the URL is right"
            ) from exc
        except InvalidHandshake as exc:
            raise SignalingError(
                f"cannot connect to the signaling server at {url}: {exc}; "
                "check that it is running and the URL is right"
            ) from exc
        return cls(ws, url)

    async def __aenter__(self) -> SignalingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def open_session(self) -> bool:
        """True once registered as the owner of an open session."""
        return self.role == "owner" and self._open

    # ----------------------------------------------------------------- owner

    async def register(
        self,
        timeout_secs: float | None = 10.0,
        *,
        max_peers: int | None = 1,
        open_session: bool = False,
    ) -> str:
        """Register a new session as the data owner; return its session ID.

        ``max_peers=1`` (the default) registers a one-scientist session: ``wait_offer`` and
        ``send_answer(sdp)``, and the server ends the session after the answer, or when the
        scientist fails. Any other number, or ``None`` for no limit, or ``open_session=True``,
        registers an open session: it accepts scientists, each with its own exchange (one that
        fails ends only its own), until :meth:`close_session` or until it has answered
        ``max_peers`` of them. Use :meth:`next_offer` (or :meth:`offers`) and
        ``send_answer(sdp, peer=...)`` there.

        Raises UsageError (a bad ``max_peers``, already registered or joined),
        SignalingServerError (``too_many_sessions``, ``server_full``...), DuetTimeout.
        """
        if max_peers is not None and (
            isinstance(max_peers, bool) or not isinstance(max_peers, int) or max_peers < 1
        ):
            raise UsageError(f"max_peers must be a positive int or None, got {max_peers!r}")
        if self.role is not None:
            raise UsageError(f"this connection already serves a session as the {self.role}")
        register = Register(max_peers=max_peers, open=bool(open_session))
        await self.send(register)
        msg = await self.wait_for(Registered, timeout_secs, "the reply to register")
        self.ttl_secs = float(msg.ttl_secs)
        self.session_id = msg.session_id
        self.max_peers = max_peers
        self._open = register.opens
        self.role = "owner"
        return msg.session_id

    async def wait_peer_joined(self, timeout_secs: float | None = None) -> None:
        """One-scientist session: wait until the scientist joins.

        ``None`` waits as long as the session lives on the server (its TTL, plus slack).
        """
        self._require_owner("wait_peer_joined", open_session=False)
        if self._peer_joined:
            return
        if timeout_secs is None and self.ttl_secs is not None:
            timeout_secs = self.ttl_secs + _TTL_SLACK_SECS
        await self.wait_for(PeerJoined, timeout_secs, "a scientist to join")

    async def wait_offer(self, timeout_secs: float | None = 30.0) -> str:
        """One-scientist session: wait for the scientist's offer (SDP); ``None`` waits without
        a limit."""
        self._require_owner("wait_offer", open_session=False)
        msg = await self.wait_for(Offer, timeout_secs, "the scientist's offer")
        return msg.sdp

    async def send_answer(self, sdp: str, *, peer: str | None = None) -> None:
        """Send the answer (SDP) to the scientist whose offer it answers.

        In an open session ``peer`` (from :meth:`next_offer`) is required and the answer goes to
        that scientist only; in a one-scientist session it may be left out (or be
        :data:`ONLY_PEER`) and the server then ends the session. An answer for a scientist who
        has just left is dropped by the server (``next_offer`` reports it as ``peer_left``).
        """
        if self.open_session:
            if peer is None:
                raise UsageError(
                    "this session is open to several scientists: name the one you answer, "
                    "send_answer(sdp, peer=peer) with the peer next_offer() returned"
                )
            await self.send(Answer(sdp=_check_sdp(sdp), peer=_check_peer(peer)))
            return
        if peer not in (None, ONLY_PEER):
            raise UsageError(
                f"this session has one scientist, {ONLY_PEER!r}; there is no peer {peer!r}"
            )
        await self.send(Answer(sdp=_check_sdp(sdp)))
        self._answered = True

    async def next_event(self, timeout_secs: float | None = 600.0) -> OwnerEvent:
        """Owner: the next thing that happens in the session.

        ``PeerJoined`` (a scientist joined), ``Offer`` (its offer: ``peer`` and ``sdp``),
        ``PeerLeft`` (open session: a scientist left, was refused or expired before its answer;
        the session goes on), or ``Closed`` (the session ended normally; returned again by any
        later call). In a one-scientist session ``peer`` is :data:`ONLY_PEER`, and the end of
        the session after the answer is ``Closed(reason="max_peers", answered=1)``.

        In an open session this sends ``ping`` while it waits, so the session stays registered.
        ``None`` waits until the session ends (a dead connection is noticed by websocket
        keepalive within about 40 s). Raises SignalingServerError (the session expired, or, in a
        one-scientist session, ``peer_left``), SignalingError (connection lost), DuetTimeout.
        """
        self._require_owner("next_event")
        if self._closed_event is not None:
            return self._closed_event
        loop = asyncio.get_running_loop()
        deadline = None if timeout_secs is None else loop.time() + timeout_secs
        ping_every = (self.ttl_secs or 600.0) / _PINGS_PER_TTL
        while True:  # bounded by the deadline: each turn receives, or pings on a quiet line
            wait = None
            if self.open_session:
                wait = max(0.0, self._last_sent + ping_every - loop.time())
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise DuetTimeout(
                        f"waited {timeout_secs:g} s for a scientist from the signaling server "
                        f"at {self.url}"
                    )
                wait = left if wait is None else min(wait, left)
            try:
                async with asyncio.timeout(wait):
                    msg = await self._recv("a scientist")
            except TimeoutError:
                if self.open_session and loop.time() >= self._last_sent + ping_every:
                    await self.send(Ping())
                continue
            except SignalingError:
                if self._answered and self._ws.close_code == CloseCode.NORMAL_CLOSURE:
                    self._closed_event = Closed(reason="max_peers", answered=1)
                    return self._closed_event
                raise
            event = self._owner_event(msg)
            if event is not None:
                return event

    async def next_offer(
        self,
        timeout_secs: float | None = 600.0,
        *,
        on_peer_left: Callable[[PeerLeft], None] | None = None,
    ) -> tuple[str, str] | None:
        """Owner: wait for the next scientist's offer; return ``(peer, sdp)``, or None once the
        session has ended normally (``max_peers`` answered, or :meth:`close_session`).

        Scientists that leave before their answer are passed to ``on_peer_left`` (or logged);
        answer each offer with ``send_answer(sdp, peer=peer)`` or refuse it with
        :meth:`decline`. Raises as :meth:`next_event`.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout_secs is None else loop.time() + timeout_secs
        while True:  # bounded by the deadline
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event = await self.next_event(left)
            except DuetTimeout:
                raise DuetTimeout(
                    f"waited {timeout_secs:g} s for a scientist's offer from the signaling "
                    f"server at {self.url}"
                ) from None
            if isinstance(event, Offer):
                return event.peer or ONLY_PEER, event.sdp
            if isinstance(event, Closed):
                return None
            if isinstance(event, PeerLeft):
                if on_peer_left is not None:
                    on_peer_left(event)
                else:
                    logger.info(
                        "scientist %s left (%s): %s", event.peer, event.reason, event.message
                    )

    async def offers(
        self,
        *,
        timeout_secs: float | None = None,
        on_peer_left: Callable[[PeerLeft], None] | None = None,
    ) -> AsyncIterator[tuple[str, str]]:
        """Owner: ``(peer, sdp)`` for each scientist's offer, until the session ends normally.

        ``timeout_secs`` bounds each wait (DuetTimeout); None waits as long as the session and
        its connection live. Raises as :meth:`next_offer`.
        """
        while (offer := await self.next_offer(timeout_secs, on_peer_left=on_peer_left)) is not None:
            yield offer

    async def decline(self, peer: str, reason: str = "") -> None:
        """Open session: refuse ``peer`` (its exchange ends, the session goes on); ``reason`` is
        shown to that scientist (its first 500 characters). A peer that already left is
        ignored by the server."""
        self._require_owner("decline", open_session=True)
        if not isinstance(reason, str):
            raise UsageError(f"reason must be a str, got {type(reason).__name__}")
        await self.send(Decline(peer=_check_peer(peer), reason=reason[:MAX_REASON_CHARS]))

    async def keepalive(self) -> None:
        """Open session: tell the server the owner is still there (restarts the session TTL).
        :meth:`next_event` does this by itself while it waits."""
        self._require_owner("keepalive", open_session=True)
        await self.send(Ping())

    async def close_session(self) -> None:
        """Owner: accept no more scientists. In an open session the server answers ``closed``
        (``next_offer`` then returns None) and closes the connection; scientists mid-exchange
        get ``peer_left``. In a one-scientist session this closes the connection."""
        self._require_owner("close_session")
        if not self.open_session:
            await self.close()
            return
        await self.send(Close())

    # ----------------------------------------------------------------- scientist

    async def join(self, session_id: str, timeout_secs: float | None = 10.0) -> None:
        """Join the owner's session as the data scientist."""
        if not isinstance(session_id, str):
            raise UsageError(f"session_id must be a str, got {type(session_id).__name__}")
        session_id = session_id.strip()
        if not session_id or len(session_id) > MAX_SESSION_ID_CHARS:
            raise UsageError(
                f"session_id {session_id[:40]!r} is not a session ID; pass the ID the owner "
                "was given (32 hex characters)"
            )
        if self.role is not None:
            raise UsageError(f"this connection already serves a session as the {self.role}")
        await self.send(Join(session_id=session_id))
        await self.wait_for(Joined, timeout_secs, "the reply to join")
        self.session_id = session_id
        self.role = "scientist"

    async def send_offer(self, sdp: str) -> None:
        """Send the offer (SDP) to the owner."""
        await self.send(Offer(sdp=_check_sdp(sdp)))

    async def wait_answer(self, timeout_secs: float | None = 30.0) -> str:
        """Wait for the owner's answer (SDP); ``None`` waits without a limit."""
        msg = await self.wait_for(Answer, timeout_secs, "the owner's answer")
        return msg.sdp

    # ----------------------------------------------------------------- common

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._ws.close()

    @property
    def closed(self) -> bool:
        return self._ws.close_code is not None

    def _require_owner(self, call: str, *, open_session: bool | None = None) -> None:
        if self.role != "owner":
            raise UsageError(f"{call}() is for the owner of a session: register() first")
        if open_session is True and not self.open_session:
            raise UsageError(
                f"{call}() is for an open session; this one has one scientist "
                "(register(max_peers=...) for more)"
            )
        if open_session is False and self.open_session:
            raise UsageError(
                f"{call}() is for a one-scientist session; this one is open to several: use "
                "next_offer(), which names the scientist each offer is from"
            )

    def _owner_event(self, msg: ServerModel) -> OwnerEvent | None:
        """What an owner's message means for ``next_event``; None for one to skip."""
        if isinstance(msg, Error):
            raise SignalingServerError(msg.code, msg.message)
        if isinstance(msg, PeerJoined):
            self._peer_joined = True
            return msg if msg.peer else PeerJoined(peer=ONLY_PEER)
        if isinstance(msg, Offer):
            return msg if msg.peer else Offer(sdp=msg.sdp, peer=ONLY_PEER)
        if isinstance(msg, PeerLeft):
            return msg
        if isinstance(msg, Closed):
            self._closed_event = msg
            return msg
        if isinstance(msg, Pong):
            self.ttl_secs = float(msg.ttl_secs)
            return None
        raise SignalingError(f"signaling server sent {msg.type!r} to the owner of a session")

    async def send(self, message: ClientModel) -> None:
        """Send one message of the protocol (the registry's client sends its own this way)."""
        try:
            await self._ws.send(to_wire(message))
        except ConnectionClosed as exc:
            raise SignalingError(
                f"lost the connection to the signaling server at {self.url} ({_why(exc)})"
            ) from exc
        self._last_sent = asyncio.get_running_loop().time()

    async def wait_for(self, expected: type[M], timeout_secs: float | None, what: str) -> M:
        """Receive until a message of type ``expected``; ``peer_joined`` is noted on the way."""
        try:
            async with asyncio.timeout(timeout_secs):
                while True:  # bounded by the timeout and by the server's few messages
                    msg = await self._recv(what)
                    if isinstance(msg, Error):
                        raise SignalingServerError(msg.code, msg.message)
                    if isinstance(msg, PeerJoined):
                        self._peer_joined = True
                    if isinstance(msg, expected):
                        return msg
                    if not isinstance(msg, PeerJoined | Pong):
                        raise SignalingError(
                            f"signaling server sent {msg.type!r} while waiting for {what}"
                        )
        except TimeoutError as exc:
            raise DuetTimeout(
                f"waited {timeout_secs:g} s for {what} from the signaling server at {self.url}"
            ) from exc

    async def _recv(self, what: str) -> ServerModel:
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise SignalingError(
                f"the signaling server at {self.url} closed the connection while waiting for "
                f"{what} ({_why(exc)})"
            ) from exc
        try:
            msg = parse_server_message(raw)
        except WireError as exc:
            raise SignalingError(
                f"signaling server sent an invalid message: {exc.message}"
            ) from None
        logger.debug("signaling <- %s", msg.type)
        return msg


def _check_sdp(sdp: str) -> str:
    if not isinstance(sdp, str) or not sdp:
        raise UsageError(f"sdp must be a non-empty str, got {sdp!r:.40}")
    if len(sdp) > MAX_SDP_CHARS:
        raise UsageError(
            f"an SDP of {len(sdp)} characters is more than signaling carries ({MAX_SDP_CHARS})"
        )
    return sdp


def _check_peer(peer: str) -> str:
    if not isinstance(peer, str) or not _PEER_ID.fullmatch(peer):
        raise UsageError(f"peer must be the peer ID next_offer() returned, got {peer!r:.40}")
    return peer


def _why(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "no close frame"
    return f"close code {close.code}" + (f", {close.reason}" if close.reason else "")
