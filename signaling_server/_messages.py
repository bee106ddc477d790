"""Parsing what clients send, and the errors the server sends back.

The messages themselves are the models of :mod:`signaling_server.protocol`, shared with duet's
client; see the package docstring (``signaling_server/__init__.py``) for the wire protocol.
"""

from __future__ import annotations

from websockets.frames import CloseCode

from .protocol import ClientModel, Error, WireError, parse_client_message, show, to_wire

__all__ = ["Reject", "out_of_order", "parse", "short_id", "show"]


class Reject(Exception):
    """Refuse a connection: send it an error message, then close it.

    ``code`` is the wire error code, ``message`` names the offending value and the fix.
    """

    def __init__(
        self, code: str, message: str, close_code: int = CloseCode.POLICY_VIOLATION
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code

    def to_wire(self) -> str:
        return to_wire(Error(code=self.code, message=self.message))


def short_id(session_id: str) -> str:
    """The first 8 characters of a session ID, for logs and messages (never the whole ID)."""
    head = session_id[:8]
    return head + "…" if len(session_id) > 8 else head


def parse(raw: str | bytes, max_bytes: int) -> ClientModel:
    """Decode one client message; raise :class:`Reject` if it is not a valid one.

    Whether the message is allowed at this point of the session is checked by the caller.
    """
    try:
        return parse_client_message(raw, max_bytes)
    except WireError as exc:
        close_code = (
            CloseCode.MESSAGE_TOO_BIG if exc.code == "too_big" else CloseCode.POLICY_VIOLATION
        )
        raise Reject(exc.code, exc.message, close_code) from None


def out_of_order(role: str, kind: str, state: str, session_id: str) -> Reject:
    """The error for a well-formed message that is not allowed at this point of the session.

    ``state`` is the session's (one-scientist session), the scientist's (open session), or
    ``open`` for the owner of an open session.
    """
    sid = short_id(session_id)
    if role == "owner":
        if kind == "answer":
            hint = f'"answer" arrived before the scientist\'s offer in session {sid}'
            fix = "wait for the offer, then answer it"
        elif kind == "register":
            hint = f"this connection already registered session {sid}"
            fix = "open a new connection to register another session"
        elif state == "open":
            hint = f'the owner of the open session {sid} cannot send "{kind}"'
            fix = 'it sends "answer" or "decline" (naming a peer), "ping" or "close"'
        elif kind in ("decline", "ping", "close"):
            hint = f'the owner of the one-scientist session {sid} cannot send "{kind}"'
            fix = 'register with "max_peers" above 1 (or null) for a session open to several'
        else:
            hint = f'the owner of session {sid} cannot send "{kind}"'
            fix = 'an owner sends only "answer", after the offer arrives'
    elif kind == "offer" and state != "joined":
        hint = f"the offer of session {sid} was already relayed"
        fix = "send one offer, then wait for the answer"
    else:
        hint = f'a scientist in session {sid} cannot send "{kind}"'
        fix = 'a scientist sends only one "offer" after joining; the owner sends the answer'
    return Reject("malformed", f"{hint}; {fix}")


def owner_misaddressed(session_id: str, kind: str, peer: str | None, why: str) -> Reject:
    """The error for an open session's owner naming no peer, or one it was never told of."""
    sid = short_id(session_id)
    if why == "no_peer":
        text = f'"{kind}" in the open session {sid} must name the "peer" it is for'
    elif why == "unknown":
        text = (
            f'session {sid} has no scientist {show(peer)}; "{kind}" only peers named in '
            '"peer_joined"'
        )
    elif why == "not_offered":
        text = f'"{kind}" to {show(peer)} arrived before its offer in session {sid}'
        text += "; wait for the offer, then answer it"
    else:  # "legacy": a one-scientist session has no peer IDs
        text = (
            f'"{kind}" in the one-scientist session {sid} names peer {show(peer)}; '
            'send it without "peer"'
        )
    return Reject("malformed", text)


def scientist_named_peer(session_id: str, peer: str) -> Reject:
    """The error for a scientist that names a peer: only the server assigns and routes them."""
    return Reject(
        "malformed",
        f"a scientist does not name a peer (got {show(peer)}) in session {short_id(session_id)}; "
        'send {"type": "offer", "sdp": ...} alone',
    )
