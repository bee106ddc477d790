"""The signaling wire protocol as one set of pydantic models, shared by the server and duet's client.

No I/O and no dependency beyond pydantic: :func:`parse_client_message` turns what a client sent
into a model (the server's side), :func:`parse_server_message` what the server sent (the
client's side), and :func:`to_wire` a model into the JSON text sent. Both parsers raise
:class:`WireError` (code ``malformed`` or ``too_big``, and a message that names the offending
value and the fix) for anything else, whatever the input.

The messages, their order and the limits are documented in ``signaling_server/__init__.py``.
This module lives in the server package rather than in ``duet.protocol`` so that the server,
which imports it, does not import ``duet`` (and with it torch: 1.7 s and 700 MB for a process
that relays a few KB of SDP).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeAlias

import pydantic
from pydantic import BaseModel, ConfigDict, Field

#: The largest SDP accepted in an offer or answer, whatever the server's ``max_message_bytes``.
MAX_SDP_CHARS = 1 << 20
#: The largest ``max_peers`` an owner may ask for (``null`` asks for no limit).
MAX_PEERS_LIMIT = 1_000_000
MAX_SESSION_ID_CHARS = 256
MAX_REASON_CHARS = 500
MAX_ERROR_MESSAGE_CHARS = 2000

#: Limits on what one owner's registration may hold (a record beyond them is refused whole).
MAX_DATASETS = 64
MAX_TAGS = 16
MAX_TAG_CHARS = 64
MAX_DESCRIPTION_CHARS = 1000
MAX_OWNER_NAME_CHARS = 100
MAX_DIMS = 8
MAX_RECORD_TTL_SECS = 3600
MAX_SEARCH_TAGS = 8
MAX_SEARCH_RESULTS = 200
#: the most scientists a record may name as the only ones to see it
MAX_AUDIENCE = 1000
#: sequence numbers and times stay below 2**53, so every JSON reader reads them exactly
MAX_SAFE_INT = (1 << 53) - 1

SessionId = Annotated[str, Field(min_length=1, max_length=MAX_SESSION_ID_CHARS)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_SDP_CHARS)]
#: Names one scientist's join within an open session (``p1``, ``p2``...); never a session ID.
PeerId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Reason = Annotated[str, Field(max_length=MAX_REASON_CHARS)]
Code = Annotated[str, Field(min_length=1, max_length=64)]

#: What each field must be, in the words of an error message (``needs field "x" to be ...``).
_FIELD_HINTS = {
    "session_id": f"a non-empty string of at most {MAX_SESSION_ID_CHARS} characters",
    "sdp": f"a non-empty string (SDP) of at most {MAX_SDP_CHARS} characters",
    "peer": 'a peer ID such as "p1", as the server named it',
    "max_peers": f"an integer from 1 to {MAX_PEERS_LIMIT}, or null for no limit",
    "reason": f"a string of at most {MAX_REASON_CHARS} characters",
    "open": "true or false",
    "signed": "a signed record as duet.registry makes it",
    "tags": f"a list of at most {MAX_SEARCH_TAGS} tags of 1 to {MAX_TAG_CHARS} characters",
    "owner": 'an owner ID such as "3fa2-91bc-0d4e-77a1"',
    "limit": f"an integer from 1 to {MAX_SEARCH_RESULTS}",
}


class _Model(BaseModel):
    # Strict: a number is not a string, true is not 1. Unknown extra fields are ignored, as the
    # protocol has always promised, so a newer peer may add fields an older one does not know.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# --------------------------------------------------------------------------- client -> server


class Register(_Model):
    """Owner: open a session.

    ``max_peers`` 1 (the default) is the one-scientist session of old; more, or ``None`` for no
    limit, opens a session that accepts scientists until it closes. ``open=True`` asks for an
    open session whatever ``max_peers`` is (an open session that ends after one answer, where a
    scientist who fails does not end it).
    """

    type: Literal["register"] = "register"
    max_peers: Annotated[int, Field(ge=1, le=MAX_PEERS_LIMIT)] | None = 1
    open: bool = False

    @property
    def opens(self) -> bool:
        """True if this registers an open session."""
        return self.open or self.max_peers != 1


class Join(_Model):
    """Scientist: join the session the owner shared."""

    type: Literal["join"] = "join"
    session_id: SessionId


class Offer(_Model):
    """Scientist -> server: its offer. Server -> owner: that offer, naming the scientist's
    ``peer`` in an open session. A scientist never names a peer."""

    type: Literal["offer"] = "offer"
    sdp: Sdp
    peer: PeerId | None = None


class Answer(_Model):
    """Owner -> server: the answer to ``peer``'s offer (in an open session; no peer in a
    one-scientist session). Server -> scientist: that answer, without the peer."""

    type: Literal["answer"] = "answer"
    sdp: Sdp
    peer: PeerId | None = None


class Decline(_Model):
    """Owner, open session: refuse ``peer`` without ending the session; ``reason`` is shown to
    that scientist."""

    type: Literal["decline"] = "decline"
    peer: PeerId
    reason: Reason = ""


class Ping(_Model):
    """Owner, open session: I am still here (restarts the session's TTL); answered by ``pong``."""

    type: Literal["ping"] = "ping"


class Close(_Model):
    """Owner, open session: accept no more scientists; answered by ``closed``."""

    type: Literal["close"] = "close"


# --------------------------------------------------------------------------- the registry

Tag = Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS, pattern=r"^[^\x00-\x1f]+$")]
OwnerIdText = Annotated[str, Field(pattern=r"^[0-9a-f]{4}(-[0-9a-f]{4}){3}$")]
KeyHex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SignatureHex = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]
SafeInt = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]


class DatasetListing(_Model):
    """One dataset an owner lists: what it is, never its values."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = []
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)] = ""
    shape: Annotated[list[SafeInt], Field(max_length=MAX_DIMS)] | None = None
    dtype: Annotated[str, Field(max_length=32)] = ""
    size: SafeInt = 0  # bytes


class OwnerRecord(_Model):
    """What an owner registers, signed whole with its identity key (``signaling_server.records``).

    ``seq`` grows with every record the owner signs (a registration with a ``seq`` not above the
    stored one is a replay); ``issued_at`` is Unix seconds; the record lives ``ttl_secs`` unless
    renewed by a newer one. ``audience``: the scientists (IDs) the owner admits, the only ones
    the server shows the record to (a search signed by one of them); None: anyone."""

    owner_key: KeyHex  # the raw Ed25519 public key, hex
    owner_id: OwnerIdText  # id_of(owner_key): checked by the server and by every scientist
    session_id: SessionId  # the open session scientists join
    owner_name: Annotated[str, Field(max_length=MAX_OWNER_NAME_CHARS)] = ""
    datasets: Annotated[list[DatasetListing], Field(max_length=MAX_DATASETS)] = []
    issued_at: SafeInt
    seq: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    ttl_secs: Annotated[int, Field(ge=1, le=MAX_RECORD_TTL_SECS)]
    audience: Annotated[list[OwnerIdText], Field(max_length=MAX_AUDIENCE)] | None = None


class SignedRecord(_Model):
    record: OwnerRecord
    signature: SignatureHex


class Withdrawal(_Model):
    """An owner takes its registration down; signed like a record, and newer than it."""

    owner_key: KeyHex
    owner_id: OwnerIdText
    issued_at: SafeInt
    seq: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]


class SignedWithdrawal(_Model):
    withdrawal: Withdrawal
    signature: SignatureHex


class Announce(_Model):
    """Owner: register (or renew, or change) its listing."""

    type: Literal["announce"] = "announce"
    signed: SignedRecord


class Withdraw(_Model):
    """Owner: take its listing down."""

    type: Literal["withdraw"] = "withdraw"
    signed: SignedWithdrawal


class SearchProof(_Model):
    """Who searches: a scientist's key, its ID and its signature over the search (see
    ``signaling_server.records.search_payload``), fresh like a record."""

    scientist_key: KeyHex
    scientist_id: OwnerIdText
    issued_at: SafeInt
    signature: SignatureHex


class Search(_Model):
    """Anyone: the live records with a dataset carrying every tag in ``tags`` (all records when
    there are none), of ``owner`` only if given. With a ``proof``, also the records whose
    audience names the scientist who signed it."""

    type: Literal["search"] = "search"
    tags: Annotated[list[Tag], Field(max_length=MAX_SEARCH_TAGS)] = []
    owner: OwnerIdText | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_RESULTS)] = 50
    proof: SearchProof | None = None


ClientModel: TypeAlias = (
    Register | Join | Offer | Answer | Decline | Ping | Close | Announce | Withdraw | Search
)
#: What a client may send: one of the models above, told apart by ``type``.
ClientMessage: TypeAlias = Annotated[ClientModel, Field(discriminator="type")]


# --------------------------------------------------------------------------- server -> client


class Registered(_Model):
    type: Literal["registered"] = "registered"
    session_id: SessionId
    ttl_secs: Annotated[int | float, Field(gt=0, allow_inf_nan=False)]


class Joined(_Model):
    type: Literal["joined"] = "joined"


class PeerJoined(_Model):
    """A scientist joined; ``peer`` names it in an open session (absent in a one-scientist one)."""

    type: Literal["peer_joined"] = "peer_joined"
    peer: PeerId | None = None


class PeerLeft(_Model):
    """Open session: ``peer`` is gone before its exchange completed; the session goes on.

    ``reason``: ``left`` (it disconnected), ``refused`` (it sent something the server refused),
    ``expired`` (the exchange did not complete within the session TTL of its joining).
    """

    type: Literal["peer_left"] = "peer_left"
    peer: PeerId
    reason: Literal["left", "refused", "expired"]
    message: Annotated[str, Field(max_length=MAX_ERROR_MESSAGE_CHARS)] = ""


class Pong(_Model):
    type: Literal["pong"] = "pong"
    ttl_secs: Annotated[int | float, Field(gt=0, allow_inf_nan=False)]


class Closed(_Model):
    """Open session: it ended normally (``max_peers`` answered, or the owner closed it)."""

    type: Literal["closed"] = "closed"
    reason: Literal["max_peers", "closed"]
    answered: Annotated[int, Field(ge=0)]


class Error(_Model):
    """The server refuses; it closes the connection right after (see the codes in the docs)."""

    type: Literal["error"] = "error"
    code: Code
    message: Annotated[str, Field(max_length=MAX_ERROR_MESSAGE_CHARS)]


class Announced(_Model):
    """The registration is stored; it expires after ``ttl_secs`` unless renewed."""

    type: Literal["announced"] = "announced"
    owner_id: OwnerIdText
    seq: Annotated[int, Field(ge=1, le=MAX_SAFE_INT)]
    ttl_secs: Annotated[int, Field(ge=1, le=MAX_RECORD_TTL_SECS)]


class Withdrawn(_Model):
    type: Literal["withdrawn"] = "withdrawn"
    owner_id: OwnerIdText
    found: bool


class Listing(_Model):
    """One search result: the record as its owner signed it, and whether its session is open
    on this server (the server's word, signed by no one)."""

    signed: SignedRecord
    online: bool = False


class Listings(_Model):
    type: Literal["listings"] = "listings"
    results: Annotated[list[Listing], Field(max_length=MAX_SEARCH_RESULTS)] = []


ServerModel: TypeAlias = (
    Registered
    | Joined
    | PeerJoined
    | Offer
    | Answer
    | PeerLeft
    | Pong
    | Closed
    | Error
    | Announced
    | Withdrawn
    | Listings
)
#: What the server may send: one of the models above, told apart by ``type``.
ServerMessage: TypeAlias = Annotated[ServerModel, Field(discriminator="type")]

CLIENT_TYPES = (
    "register",
    "join",
    "offer",
    "answer",
    "decline",
    "ping",
    "close",
    "announce",
    "withdraw",
    "search",
)
SERVER_TYPES = (
    "registered",
    "joined",
    "peer_joined",
    "offer",
    "answer",
    "peer_left",
    "pong",
    "closed",
    "error",
    "announced",
    "withdrawn",
    "listings",
)

_CLIENT_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ClientMessage)
_SERVER_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ServerMessage)

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class WireError(ValueError):
    """A message that is not a valid one: ``code`` is ``malformed`` or ``too_big``."""

    def __init__(self, code: Literal["malformed", "too_big"], message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def to_wire(message: ClientModel | ServerModel) -> str:
    """The JSON text of ``message``; fields at their default value are left out, so a
    one-scientist session's messages are exactly what they were before open sessions."""
    fields = message.model_dump(mode="json", exclude_defaults=True)
    return json.dumps({"type": message.type, **fields})


def show(value: Any, limit: int = 40) -> str:
    """A short repr of a client-supplied value, safe to echo in an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_client_message(raw: str | bytes, max_bytes: int) -> ClientModel:
    """Decode one message a client sent; raise :class:`WireError` if it is not a valid one.

    Which message is allowed when is the server's to check, not this function's.
    """
    msg = _decode(raw, max_bytes, CLIENT_TYPES)
    result: ClientModel = _validate(_CLIENT_ADAPTER, msg)
    return result


def parse_server_message(raw: str | bytes, max_bytes: int = 4 * MAX_SDP_CHARS) -> ServerModel:
    """Decode one message the server sent; raise :class:`WireError` if it is not a valid one."""
    msg = _decode(raw, max_bytes, SERVER_TYPES)
    result: ServerModel = _validate(_SERVER_ADAPTER, msg)
    return result


def _validate(adapter: pydantic.TypeAdapter[Any], msg: dict[str, Any]) -> Any:
    try:
        return adapter.validate_python(msg)
    except pydantic.ValidationError as exc:
        raise WireError("malformed", _explain(msg["type"], exc)) from None


def _explain(kind: str, exc: pydantic.ValidationError) -> str:
    """The first problem of a message, naming the field, what it must be and what it was."""
    error = exc.errors(include_url=False)[0]
    loc = error["loc"][1:]  # the first item is the union's tag, the message type
    name = ".".join(str(part) for part in loc) if loc else "?"  # nested: signed.record.seq
    got = "nothing" if error["type"] == "missing" else show(error.get("input"))
    hint = _FIELD_HINTS.get(name)
    article = "an" if kind[:1] in "aeiou" else "a"
    if hint is None:
        return (
            f'{article} "{kind}" message has an invalid field "{name}" ({error["msg"]}), got {got}'
        )
    return f'{article} "{kind}" message needs field "{name}" to be {hint}, got {got}'


def _decode(raw: str | bytes, max_bytes: int, types: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise WireError(
            "malformed",
            f"got a binary message of {len(raw)} bytes; send one JSON object as a text message",
        )
    size = len(raw.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise WireError(
            "too_big",
            f"message of {size} bytes exceeds the limit of {max_bytes} bytes; signaling carries "
            "only SDP (a few KB), raise --max-message-bytes on the server if you need more",
        )
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise WireError(
            "malformed",
            f"message {show(raw)} is not valid JSON ({exc}); "
            'send one JSON object such as {"type": "register"}',
        ) from None
    if not isinstance(msg, dict):
        json_type = _JSON_TYPE_NAMES.get(type(msg), type(msg).__name__)
        raise WireError(
            "malformed",
            f'message must be a JSON object with a "type" field, got a JSON {json_type}',
        )
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in types:
        raise WireError(
            "malformed",
            f"unknown message type {show(kind)}; expected one of {', '.join(types)}",
        )
    return msg
