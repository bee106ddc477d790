"""The wire messages: one flat pydantic discriminated union, field ``k`` names the type.

A frame's header is a JSON list of messages (many small actions ride in one frame). Values inside
messages (``args``, ``value``) are serde data (see serde.py), validated when they are decoded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import ConfigDict, Field

from ..errors import ProtocolError
from .dp_messages import DpBudget, DpStatistic, DpTraining
from .fields import ObjectId, RequestId, Role, ShortText, WireMessage
from .frames import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameTooLarge,
    decode_frame,
    encode_frame,
)
from .secagg_messages import SecAggInput, SecAggKeys, SecAggShare, SecAggUnmask
from .smpc_messages import (
    SmpcAccept,
    SmpcAgree,
    SmpcCompare,
    SmpcCompareDeal,
    SmpcDeal,
    SmpcDrop,
    SmpcKeys,
    SmpcLocal,
    SmpcMask,
    SmpcMultiply,
    SmpcReveal,
    SmpcRound,
    SmpcShare,
)

# The fields holding values (Call.args and kwargs, Put.value, Reply.value) are serde data, a
# serde.JSONValue, and are left dynamic on purpose: pydantic would walk a precisely typed field
# on every action (a cost on the hot path, and errors of its own); serde's Decoder checks them
# when they are decoded, and refuses what it did not write.


class Hello(WireMessage):
    k: Literal["hello"] = "hello"
    protocol_version: int = PROTOCOL_VERSION
    duet_version: ShortText
    torch_version: ShortText
    allowlist: ShortText
    role: Role
    client_id: ShortText = ""
    # the largest frame this side accepts now, and (an owner's) the bytes one scientist may
    # store: the peer refuses locally what could never be accepted, instead of sending it
    max_frame_bytes: Annotated[int, Field(ge=0)] | None = None
    max_bytes: Annotated[int, Field(ge=0)] | None = None
    # who this side is: its identity's Ed25519 public key (hex), a display name (not proof),
    # and a fresh nonce the peer's signature must cover (see Auth)
    identity: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")] = ""
    name: Annotated[str, Field(max_length=100)] = ""
    nonce: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")] = ""


class Auth(WireMessage):
    """Sent once the peer's Hello arrived: this side's identity key signs what makes this
    connection unique (both sides' DTLS fingerprints and both nonces; duet.identity)."""

    k: Literal["auth"] = "auth"
    signature: Annotated[str, Field(min_length=128, max_length=128, pattern=r"^[0-9a-f]+$")]


class Welcome(WireMessage):
    """The owner accepted this scientist (known, confirmed, or allowed by its rules): actions
    may start."""

    k: Literal["welcome"] = "welcome"
    scientist_id: ShortText = ""


class Call(WireMessage):
    """Run ``op`` (a function path, or a member name of ``target``) and store the result."""

    k: Literal["call"] = "call"
    op: Annotated[str, Field(min_length=1, max_length=200)]
    target: ObjectId | None = None
    # serde data, dynamic on purpose: see above WireMessage
    args: list[Any] = Field(default_factory=list, max_length=10_000)
    kwargs: dict[str, Any] = Field(default_factory=dict, max_length=1000)
    result: ObjectId


class Put(WireMessage):
    """Store a value the scientist sends (a tensor, a model, a number)."""

    k: Literal["put"] = "put"
    id: ObjectId
    value: Any  # serde data, dynamic on purpose: see above WireMessage
    tags: list[ShortText] = Field(default_factory=list, max_length=100)
    description: ShortText = ""


class Delete(WireMessage):
    k: Literal["del"] = "del"
    ids: list[ObjectId] = Field(max_length=100_000)


class Get(WireMessage):
    """Ask for a value; ``request`` asks the owner to release it when it is private."""

    k: Literal["get"] = "get"
    rid: RequestId
    id: ObjectId
    request: bool = False
    name: ShortText = ""
    reason: ShortText = ""
    timeout_secs: float | None = None
    delete_obj: bool = False


class Sync(WireMessage):
    """Replied to once every action before it has run: a barrier."""

    k: Literal["sync"] = "sync"
    rid: RequestId


class ListStore(WireMessage):
    k: Literal["store"] = "store"
    rid: RequestId


class ErrorInfo(WireMessage):
    code: ShortText
    message: Annotated[str, Field(max_length=20_000)]
    op: ShortText | None = None
    remote_type: ShortText | None = None


class RequestStatus(StrEnum):
    """Where a request for a release stands: one vocabulary for the owner's queue, the reply on
    the wire and the scientist's record of what it asked."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DENIED = "denied"
    TIMEOUT = "timeout"
    ERROR = "error"  # refused before the queue (a rule, a quota): the scientist's record only
    LOST = "lost"  # the connection closed before the answer: the scientist's record only


class Reply(WireMessage):
    k: Literal["reply"] = "reply"
    rid: RequestId
    status: Literal["ok", "accepted", "denied", "timeout", "pending", "error"] = "ok"
    value: Any = None  # serde data, dynamic on purpose: see above WireMessage
    error: ErrorInfo | None = None
    note: ShortText = ""


class Failure(WireMessage):
    """Sent as soon as an action fails, so the scientist can log it; raised on use."""

    k: Literal["failure"] = "failure"
    result: ObjectId | None
    error: ErrorInfo


class Notice(WireMessage):
    """The owner tells the scientist something about a request that is still waiting (why no
    handler decided it), or how far a DP training job is; ``rid`` is the get's or the job's."""

    k: Literal["notice"] = "notice"
    rid: RequestId
    text: ShortText


class Ping(WireMessage):
    k: Literal["ping"] = "ping"
    seq: int = 0


class Pong(WireMessage):
    k: Literal["pong"] = "pong"
    seq: int = 0


class DefinePlan(WireMessage):
    """A recorded sequence of calls with symbolic inputs, replayed by ``RunPlan``.

    Each call is checked against the allowlist when it runs, like any other action.
    """

    k: Literal["plan"] = "plan"
    id: ObjectId
    inputs: list[ObjectId] = Field(max_length=1000)
    outputs: list[ObjectId] = Field(max_length=1000)
    calls: list[Call] = Field(min_length=1, max_length=10_000)


class RunPlan(WireMessage):
    """Run a defined plan: ``inputs`` bind its symbolic inputs, ``outputs`` name its results."""

    k: Literal["run"] = "run"
    plan: ObjectId
    inputs: list[ObjectId] = Field(max_length=1000)
    outputs: list[ObjectId] = Field(max_length=1000)


class Bye(WireMessage):
    k: Literal["bye"] = "bye"
    reason: ShortText = ""


Message = Annotated[
    Hello
    | Auth
    | Welcome
    | Call
    | Put
    | Delete
    | Get
    | Sync
    | ListStore
    | DefinePlan
    | RunPlan
    | DpStatistic
    | DpTraining
    | DpBudget
    | SecAggKeys
    | SecAggShare
    | SecAggInput
    | SecAggUnmask
    | SmpcKeys
    | SmpcAgree
    | SmpcShare
    | SmpcAccept
    | SmpcLocal
    | SmpcDeal
    | SmpcMask
    | SmpcMultiply
    | SmpcCompareDeal
    | SmpcCompare
    | SmpcRound
    | SmpcReveal
    | SmpcDrop
    | Reply
    | Failure
    | Notice
    | Ping
    | Pong
    | Bye,
    Field(discriminator="k"),
]
# ids never repeat: caching every string parsed would only churn memory
_MESSAGES = pydantic.TypeAdapter(list[Message], config=ConfigDict(cache_strings="keys"))
MAX_MESSAGES_PER_FRAME = 100_000


def pack(
    messages: list[Message],
    buffers: list[memoryview] | None = None,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> bytes:
    """Encode messages (and the buffers their values refer to) into one frame.

    Raises FrameTooLarge (a ProtocolError) when the frame would exceed ``max_frame_bytes`` or
    the header and buffer-count limits, or does not fit in memory; nothing is allocated for the
    frame itself in the first cases.
    """
    try:
        if len(messages) == 1:
            # one message (a reply, a get): its own model's serializer writes exactly what the
            # union's would, without looking for its type among them all
            only = messages[0]
            header = b"[" + type(only).__pydantic_serializer__.to_json(only) + b"]"
        else:
            header = _MESSAGES.dump_json(messages, exclude_defaults=False)
    except MemoryError:
        raise FrameTooLarge(
            f"the header of {len(messages)} messages could not be encoded: out of memory",
            size=0,
            limit=0,
        ) from None
    return encode_frame(header, buffers or [], max_frame_bytes=max_frame_bytes)


def unpack(data: bytes, *, max_frame_bytes: int) -> tuple[list[Message], list[memoryview]]:
    """Decode and validate a frame: its messages and buffers. Raises ProtocolError."""
    frame = decode_frame(data, max_frame_bytes=max_frame_bytes)
    return unpack_header(frame.header), frame.buffers


def unpack_header(header: bytes) -> list[Message]:
    """Validate a frame's JSON header into its messages. Raises ProtocolError."""
    try:
        messages = _MESSAGES.validate_json(header)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProtocolError(
            f"malformed message at {where or 'header'}: {first.get('msg')}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed frame header: {exc}") from exc
    if len(messages) > MAX_MESSAGES_PER_FRAME:
        raise ProtocolError(
            f"{len(messages)} messages in one frame exceed {MAX_MESSAGES_PER_FRAME}"
        )
    return messages
