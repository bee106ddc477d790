"""Parsing and validating signaling messages, and the errors the server sends back.

See the package docstring (``signaling_server/__init__.py``) for the wire protocol.
"""

from __future__ import annotations

import json
from typing import Any

from websockets.frames import CloseCode

#: The fields (all non-empty strings) each message type must carry.
FIELDS: dict[str, tuple[str, ...]] = {
    "register": (),
    "join": ("session_id",),
    "offer": ("sdp",),
    "answer": ("sdp",),
}

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


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
        return json.dumps({"type": "error", "code": self.code, "message": self.message})


def short_id(session_id: str) -> str:
    """The first 8 characters of a session ID, for logs and messages (never the whole ID)."""
    head = session_id[:8]
    return head + "…" if len(session_id) > 8 else head


def show(value: Any, limit: int = 40) -> str:
    """A short repr of a client-supplied value, safe to echo in an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Decode one client message; raise :class:`Reject` if it is not a valid one.

    The result is a dict whose ``type`` is a key of :data:`FIELDS` and which carries the fields
    that type requires, each a non-empty string. Ordering is checked by the caller.
    """
    if isinstance(raw, bytes):
        raise Reject(
            "malformed",
            f"got a binary message of {len(raw)} bytes; send one JSON object as a text message",
        )
    size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise Reject(
            "too_big",
            f"message of {size} bytes exceeds the limit of {max_bytes} bytes; signaling carries "
            "only SDP (a few KB), raise --max-message-bytes on the server if you need more",
            CloseCode.MESSAGE_TOO_BIG,
        )
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise Reject(
            "malformed",
            f"message {show(raw)} is not valid JSON ({exc}); "
            'send one JSON object such as {"type": "register"}',
        ) from None
    if not isinstance(msg, dict):
        json_type = _JSON_TYPE_NAMES.get(type(msg), type(msg).__name__)
        raise Reject(
            "malformed",
            f'message must be a JSON object with a "type" field, got a JSON {json_type}',
        )
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise Reject(
            "malformed",
            f"unknown message type {show(kind)}; expected one of {', '.join(FIELDS)}",
        )
    for name in FIELDS[kind]:
        value = msg.get(name)
        if not isinstance(value, str) or not value:
            raise Reject(
                "malformed",
                f'a "{kind}" message needs a non-empty string field "{name}", got {show(value)}',
            )
    return msg


def out_of_order(role: str, kind: str, state: str, session_id: str) -> Reject:
    """The error for a well-formed message that is not allowed at this point of the session."""
    sid = short_id(session_id)
    if role == "owner":
        if kind == "answer":
            hint = f'"answer" arrived before the scientist\'s offer in session {sid}'
            fix = "wait for the offer, then answer it"
        elif kind == "register":
            hint = f"this connection already registered session {sid}"
            fix = "open a new connection to register another session"
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
