"""Async client of the signaling server, used by both peers to exchange the WebRTC offer/answer.

Owner::

    client = await SignalingClient.connect(url)
    session_id = await client.register()       # share this ID with the scientist
    await client.wait_peer_joined(None)         # bounded by the session TTL the server announced
    offer = await client.wait_offer(30)
    await client.send_answer(answer_sdp)
    await client.close()

Scientist::

    client = await SignalingClient.connect(url)
    await client.join(session_id)
    await client.send_offer(offer_sdp)
    answer = await client.wait_answer(30)
    await client.close()

Errors the server reports raise :class:`SignalingServerError` (a
:class:`~duet.errors.SignalingError` carrying the server's ``code``); failing to reach the server
or losing the connection raise :class:`~duet.errors.SignalingError`; waits that run out of time
raise :class:`~duet.errors.DuetTimeout`. The wire protocol is documented in
``signaling_server/__init__.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..errors import DuetTimeout, SignalingError, UsageError

logger = logging.getLogger(__name__)

#: Extra time granted past the server's session TTL when ``wait_peer_joined(None)`` is used.
_TTL_SLACK_SECS = 10.0


class SignalingServerError(SignalingError):
    """The signaling server refused a request; ``server_code`` is its error code.

    Codes: ``unknown_session``, ``session_taken``, ``malformed``, ``too_big``,
    ``too_many_sessions``, ``server_full``, ``expired``, ``peer_left``.
    """

    def __init__(self, server_code: str, message: str) -> None:
        super().__init__(f"signaling server: {message} [{server_code}]")
        self.server_code = server_code


class SignalingClient:
    """One websocket connection to the signaling server, as owner or as scientist."""

    def __init__(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self.url = url
        self.session_id: str | None = None
        self.ttl_secs: float | None = None
        self._peer_joined = False

    @classmethod
    async def connect(cls, url: str, *, timeout_secs: float = 10.0) -> SignalingClient:
        """Open a connection to the signaling server at ``url`` (``ws://host:port``)."""
        try:
            async with asyncio.timeout(timeout_secs):
                ws = await ws_connect(url, compression=None, open_timeout=None)
        except TimeoutError as exc:
            raise DuetTimeout(
                f"connecting to the signaling server at {url} did not finish within "
                f"{timeout_secs:g} s; check the URL and that the server is reachable"
            ) from exc
        except InvalidURI as exc:
            raise SignalingError(
                f"{url!r} is not a websocket URL; use ws://host:port or wss://host:port"
            ) from exc
        except (OSError, InvalidHandshake) as exc:
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

    # ----------------------------------------------------------------- owner

    async def register(self, timeout_secs: float | None = 10.0) -> str:
        """Register a new session as the data owner; return its session ID."""
        await self._send({"type": "register"})
        msg = await self._wait_for("registered", timeout_secs, "the reply to register")
        session_id = msg.get("session_id")
        if not isinstance(session_id, str):
            raise SignalingError(f"signaling server sent a registration without an ID: {msg!r}")
        ttl = msg.get("ttl_secs")
        self.ttl_secs = float(ttl) if isinstance(ttl, int | float) else None
        self.session_id = session_id
        return session_id

    async def wait_peer_joined(self, timeout_secs: float | None = None) -> None:
        """Wait until a scientist joins the session.

        ``None`` waits as long as the session lives on the server (its TTL, plus slack).
        """
        if self._peer_joined:
            return
        if timeout_secs is None and self.ttl_secs is not None:
            timeout_secs = self.ttl_secs + _TTL_SLACK_SECS
        await self._wait_for("peer_joined", timeout_secs, "a scientist to join")

    async def wait_offer(self, timeout_secs: float | None = 30.0) -> str:
        """Wait for the scientist's offer (SDP); ``None`` waits without a limit."""
        msg = await self._wait_for("offer", timeout_secs, "the scientist's offer")
        return self._sdp(msg)

    async def send_answer(self, sdp: str) -> None:
        """Send the answer (SDP) to the scientist; the server then ends the session."""
        await self._send({"type": "answer", "sdp": _check_sdp(sdp)})

    # ----------------------------------------------------------------- scientist

    async def join(self, session_id: str, timeout_secs: float | None = 10.0) -> None:
        """Join the owner's session as the data scientist."""
        if not isinstance(session_id, str):
            raise UsageError(f"session_id must be a str, got {type(session_id).__name__}")
        session_id = session_id.strip()
        await self._send({"type": "join", "session_id": session_id})
        await self._wait_for("joined", timeout_secs, "the reply to join")
        self.session_id = session_id

    async def send_offer(self, sdp: str) -> None:
        """Send the offer (SDP) to the owner."""
        await self._send({"type": "offer", "sdp": _check_sdp(sdp)})

    async def wait_answer(self, timeout_secs: float | None = 30.0) -> str:
        """Wait for the owner's answer (SDP); ``None`` waits without a limit."""
        msg = await self._wait_for("answer", timeout_secs, "the owner's answer")
        return self._sdp(msg)

    # ----------------------------------------------------------------- common

    async def close(self) -> None:
        """Close the connection; idempotent."""
        await self._ws.close()

    @property
    def closed(self) -> bool:
        return self._ws.close_code is not None

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise SignalingError(
                f"lost the connection to the signaling server at {self.url} ({_why(exc)})"
            ) from exc

    async def _wait_for(
        self, expected: str, timeout_secs: float | None, what: str
    ) -> dict[str, Any]:
        """Receive until a message of type ``expected``; ``peer_joined`` is noted on the way."""
        try:
            async with asyncio.timeout(timeout_secs):
                while True:  # bounded by the timeout and by the server's few messages
                    msg = await self._recv(what)
                    kind = msg.get("type")
                    if kind == "error":
                        raise SignalingServerError(
                            str(msg.get("code", "unknown")), str(msg.get("message", msg))
                        )
                    if kind == "peer_joined":
                        self._peer_joined = True
                    if kind == expected:
                        return msg
                    if kind != "peer_joined":
                        raise SignalingError(
                            f"signaling server sent {kind!r} while waiting for {what}"
                        )
        except TimeoutError as exc:
            raise DuetTimeout(
                f"waited {timeout_secs:g} s for {what} from the signaling server at {self.url}"
            ) from exc

    async def _recv(self, what: str) -> dict[str, Any]:
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise SignalingError(
                f"the signaling server at {self.url} closed the connection while waiting for "
                f"{what} ({_why(exc)})"
            ) from exc
        try:
            msg = json.loads(raw)
        except ValueError as exc:
            raise SignalingError(f"signaling server sent invalid JSON: {raw[:80]!r}") from exc
        if not isinstance(msg, dict):
            raise SignalingError(f"signaling server sent a non-object message: {raw[:80]!r}")
        logger.debug("signaling <- %s", msg.get("type"))
        return msg

    @staticmethod
    def _sdp(msg: dict[str, Any]) -> str:
        sdp = msg.get("sdp")
        if not isinstance(sdp, str):
            raise SignalingError(f"signaling server relayed a {msg.get('type')} without SDP")
        return sdp


def _check_sdp(sdp: str) -> str:
    if not isinstance(sdp, str) or not sdp:
        raise UsageError(f"sdp must be a non-empty str, got {sdp!r:.40}")
    return sdp


def _why(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "no close frame"
    return f"close code {close.code}" + (f", {close.reason}" if close.reason else "")
