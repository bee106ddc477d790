"""The wire messages: one flat pydantic discriminated union, field ``k`` names the type.

A frame's header is a JSON list of messages (many small actions ride in one frame). Values inside
messages (``args``, ``value``) are serde data (see serde.py), validated when they are decoded.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ProtocolError
from .frames import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    FrameTooLarge,
    decode_frame,
    encode_frame,
)

ObjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ShortText = Annotated[str, Field(max_length=2000)]
RequestId = Annotated[int, Field(ge=0, lt=2**63)]
#: which side of a duet: the owner serves its data, the scientist drives it through pointers
Role = Literal["owner", "scientist"]

# The fields holding values (Call.args and kwargs, Put.value, Reply.value) are serde data, a
# serde.JSONValue, and are left dynamic on purpose: pydantic would walk a precisely typed field
# on every action (a cost on the hot path, and errors of its own); serde's Decoder checks them
# when they are decoded, and refuses what it did not write.


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hello(_Message):
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


class Auth(_Message):
    """Sent once the peer's Hello arrived: this side's identity key signs what makes this
    connection unique (both sides' DTLS fingerprints and both nonces; duet.identity)."""

    k: Literal["auth"] = "auth"
    signature: Annotated[str, Field(min_length=128, max_length=128, pattern=r"^[0-9a-f]+$")]


class Welcome(_Message):
    """The owner accepted this scientist (known, confirmed, or allowed by its rules): actions
    may start."""

    k: Literal["welcome"] = "welcome"
    scientist_id: ShortText = ""


class Call(_Message):
    """Run ``op`` (a function path, or a member name of ``target``) and store the result."""

    k: Literal["call"] = "call"
    op: Annotated[str, Field(min_length=1, max_length=200)]
    target: ObjectId | None = None
    # serde data, dynamic on purpose: see above _Message
    args: list[Any] = Field(default_factory=list, max_length=10_000)
    kwargs: dict[str, Any] = Field(default_factory=dict, max_length=1000)
    result: ObjectId


class Put(_Message):
    """Store a value the scientist sends (a tensor, a model, a number)."""

    k: Literal["put"] = "put"
    id: ObjectId
    value: Any  # serde data, dynamic on purpose: see above _Message
    tags: list[ShortText] = Field(default_factory=list, max_length=100)
    description: ShortText = ""


class Delete(_Message):
    k: Literal["del"] = "del"
    ids: list[ObjectId] = Field(max_length=100_000)


class Get(_Message):
    """Ask for a value; ``request`` asks the owner to release it when it is private."""

    k: Literal["get"] = "get"
    rid: RequestId
    id: ObjectId
    request: bool = False
    name: ShortText = ""
    reason: ShortText = ""
    timeout_secs: float | None = None
    delete_obj: bool = False


class Sync(_Message):
    """Replied to once every action before it has run: a barrier."""

    k: Literal["sync"] = "sync"
    rid: RequestId


class ListStore(_Message):
    k: Literal["store"] = "store"
    rid: RequestId


class ErrorInfo(_Message):
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


class Reply(_Message):
    k: Literal["reply"] = "reply"
    rid: RequestId
    status: Literal["ok", "accepted", "denied", "timeout", "pending", "error"] = "ok"
    value: Any = None  # serde data, dynamic on purpose: see above _Message
    error: ErrorInfo | None = None
    note: ShortText = ""


class Failure(_Message):
    """Sent as soon as an action fails, so the scientist can log it; raised on use."""

    k: Literal["failure"] = "failure"
    result: ObjectId | None
    error: ErrorInfo


class Notice(_Message):
    """The owner tells the scientist something about a request that is still waiting (why no
    handler decided it), or how far a DP training job is; ``rid`` is the get's or the job's."""

    k: Literal["notice"] = "notice"
    rid: RequestId
    text: ShortText


class Ping(_Message):
    k: Literal["ping"] = "ping"
    seq: int = 0


class Pong(_Message):
    k: Literal["pong"] = "pong"
    seq: int = 0


class DefinePlan(_Message):
    """A recorded sequence of calls with symbolic inputs, replayed by ``RunPlan``.

    Each call is checked against the allowlist when it runs, like any other action.
    """

    k: Literal["plan"] = "plan"
    id: ObjectId
    inputs: list[ObjectId] = Field(max_length=1000)
    outputs: list[ObjectId] = Field(max_length=1000)
    calls: list[Call] = Field(min_length=1, max_length=10_000)


class RunPlan(_Message):
    """Run a defined plan: ``inputs`` bind its symbolic inputs, ``outputs`` name its results."""

    k: Literal["run"] = "run"
    plan: ObjectId
    inputs: list[ObjectId] = Field(max_length=1000)
    outputs: list[ObjectId] = Field(max_length=1000)


# ---- differential privacy (issue 19): asked by the scientist, decided by the owner's budget

#: a number from the wire the owner computes with: finite, and of JSON's number type (a
#: string or a boolean is refused, not coerced)
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1e6)]
#: a published dataset's tag (what budgets are set on)
DatasetTag = Annotated[str, Field(min_length=1, max_length=200)]
MAX_DP_BINS = 10_000  # privacy.statistics.MAX_BINS (protocol imports nothing of duet)
MAX_DP_KEYS = 10_000  # privacy.grouped.MAX_KEYS
#: a published table's column: printable text (no control characters), as tables.py allows
ColumnName = Annotated[
    str, Field(strict=True, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]


WaitSecs = Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]


class DpStatistic(_Message):
    """A DP statistic of one of the owner's published datasets, released under the
    scientist's privacy budget, not through a request. ``quote``: price it only (nothing is
    reserved, run or released). On a published table: ``column`` (a count may name none),
    and for groups ``by`` (the key column) with ``keys`` (the groups asked about). The owner
    checks every field again (the bounds' order, bins only for a histogram, the columns) and
    answers with a Reply."""

    k: Literal["dp_stat"] = "dp_stat"
    rid: RequestId
    kind: Literal["mean", "sum", "count", "histogram"]
    target: ObjectId
    bounds: tuple[Finite, Finite] | None = None
    epsilon: Positive
    bins: Annotated[int, Field(strict=True, ge=1, le=MAX_DP_BINS)] | None = None
    column: ColumnName | None = None
    by: ColumnName | None = None
    keys: Annotated[list[Finite], Field(min_length=1, max_length=MAX_DP_KEYS)] | None = None
    quote: bool = False
    # how long the scientist waits when the owner reviews DP releases by hand (None: as long
    # as the owner lets a request wait)
    timeout_secs: WaitSecs | None = None


class DpTraining(_Message):
    """A DP-SGD job the owner runs (Opacus) on its published dataset ``data`` (a tag), for
    the scientist's model ``model`` (one of its own objects); the trained weights are released
    under its privacy budget. Give exactly one of ``noise_multiplier`` and ``epsilon``;
    ``delta``, if given, must be the budget's. ``quote``: price it only."""

    k: Literal["dp_train"] = "dp_train"
    rid: RequestId
    model: ObjectId
    data: DatasetTag
    loss: Annotated[str, Field(min_length=1, max_length=40)]
    optimizer: Annotated[str, Field(min_length=1, max_length=40)]
    lr: Positive
    batch_size: Annotated[int, Field(strict=True, ge=1, le=10_000_000)]
    epochs: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    max_grad_norm: Positive
    noise_multiplier: Positive | None = None
    epsilon: Positive | None = None
    delta: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, lt=1)] | None = None
    quote: bool = False


MAX_DP_CHARGES = 10_000  # the most charges a scientist's history reply lists


class DpBudget(_Message):
    """What is left of the scientist's privacy budget on the published dataset ``data``;
    with ``charges``, also the newest that many of its charges there."""

    k: Literal["dp_budget"] = "dp_budget"
    rid: RequestId
    data: DatasetTag
    charges: Annotated[int, Field(strict=True, ge=1, le=MAX_DP_CHARGES)] | None = None


# ---- secure aggregation (issue 20): the scientist relays a round between owners. What it
# carries is public keys, signatures and sealed shares (hex, of fixed or bounded lengths); the
# masked input comes back in a Reply, its uint64 values as a buffer. The owner checks every
# field again against the round it holds (duet/secure); these bounds only keep it small.
MAX_SECAGG_OWNERS = 100  # owners in one round's roster
#: an owner's identity ID as duet.identity writes it ("3fa2-91bc-0d4e-77a1")
OwnerIdentity = Annotated[
    str, Field(strict=True, min_length=1, max_length=40, pattern=r"^[0-9a-f-]+$")
]
Hex32 = Annotated[str, Field(strict=True, min_length=64, max_length=64, pattern=r"^[0-9a-f]+$")]
Hex64 = Annotated[str, Field(strict=True, min_length=128, max_length=128, pattern=r"^[0-9a-f]+$")]
RoundName = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
Roster = Annotated[list[OwnerIdentity], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggKeys(_Message):
    """Round 0 of an owner's part in a secure-aggregation round of ``federation``: the round
    (id, roster, threshold, quantiser) and the two of the scientist's objects at the owner it
    is about: ``model``, the global model the round starts from, and ``trained``, the model
    trained from it on the owner's data. The owner fixes its update now and answers with its
    signed round keys."""

    k: Literal["secagg_keys"] = "secagg_keys"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    roster: Annotated[list[OwnerIdentity], Field(min_length=3, max_length=MAX_SECAGG_OWNERS)]
    threshold: Annotated[int, Field(strict=True, ge=2, le=MAX_SECAGG_OWNERS)]
    clip: Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1e12)]
    fractional_bits: Annotated[int, Field(strict=True, ge=0, le=52)]
    model: ObjectId
    trained: ObjectId


class KeyAdvertisementWire(_Message):
    """An owner's round keys as relayed (duet.secure.KeyAdvertisement, bytes as hex)."""

    owner: OwnerIdentity
    identity_key: Hex32
    cipher_key: Hex32
    mask_key: Hex32
    seed_commitment: Hex32
    round_digest: Hex32
    model_digest: Hex32
    signature: Hex64


class SealedShareWire(_Message):
    """One owner's sealed shares for another (duet.secure.EncryptedShare, bytes as hex): 64
    bytes of shares and a 16-byte tag."""

    sender: OwnerIdentity
    receiver: OwnerIdentity
    nonce: Annotated[str, Field(strict=True, min_length=24, max_length=24, pattern=r"^[0-9a-f]+$")]
    ciphertext: Annotated[
        str, Field(strict=True, min_length=2, max_length=512, pattern=r"^[0-9a-f]+$")
    ]


class SecAggShare(_Message):
    """Round 1: every owner's keys; the owner answers with its shares, sealed to each."""

    k: Literal["secagg_share"] = "secagg_share"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    advertisements: Annotated[list[KeyAdvertisementWire], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggInput(_Message):
    """Round 2: the shares sealed to this owner; it answers with its masked input."""

    k: Literal["secagg_input"] = "secagg_input"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    shares: Annotated[list[SealedShareWire], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggUnmask(_Message):
    """Round 3: who survived and who dropped; the owner answers with its shares of the
    survivors' seeds and of the dropped owners' mask keys, once."""

    k: Literal["secagg_unmask"] = "secagg_unmask"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    survivors: Roster
    dropped: Roster


#: the scientist's secure-aggregation messages (each answered with a Reply)
SecAggMessage = SecAggKeys | SecAggShare | SecAggInput | SecAggUnmask


# ---- secret-shared computation over duets (issue 20): the scientist drives two share holders
# and a crypto provider (owner nodes) and relays what they send each other, sealed end to end
# (``SealedWire``: hex of ChaCha20-Poly1305 ciphertext); every message is answered with a Reply.
# The parties check every field again against the computation they hold (owner/smpc_desk.py);
# these bounds only keep messages small.
MAX_SMPC_SEALED_HEX = 2**28  # hex characters of one sealed value: 128 MiB of ciphertext
ComputationId = Annotated[
    str, Field(strict=True, min_length=32, max_length=32, pattern=r"^[0-9a-f]+$")
]
#: a parameter's qualified name in a published model ("0.weight")
PartName = Annotated[
    str, Field(strict=True, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.]+$")
]
SmpcShape = Annotated[list[Annotated[int, Field(strict=True, ge=0, le=2**31)]], Field(max_length=8)]


class SealedWire(_Message):
    """A value one party sealed to another for the scientist to relay (bytes as hex)."""

    sender: OwnerIdentity
    receiver: OwnerIdentity
    nonce: Annotated[str, Field(strict=True, min_length=24, max_length=24, pattern=r"^[0-9a-f]+$")]
    ciphertext: Annotated[
        str,
        Field(
            strict=True,
            min_length=32,
            max_length=MAX_SMPC_SEALED_HEX,
            pattern=r"^(?:[0-9a-f]{2})+$",  # whole bytes
        ),  # fmt: skip
    ]


class PartyKeyWire(_Message):
    """A party's key for one computation, signed by its identity over the transcript."""

    owner: OwnerIdentity
    role: Literal["holder", "provider"]
    identity_key: Hex32
    cipher_key: Hex32
    signature: Hex64


class SmpcKeys(_Message):
    """Start a computation: who holds shares (in order), who deals; the party answers with its
    signed key (a PartyKeyWire)."""

    k: Literal["smpc_keys"] = "smpc_keys"
    rid: RequestId
    computation: ComputationId
    holders: Annotated[list[OwnerIdentity], Field(min_length=2, max_length=2)]
    provider: OwnerIdentity
    fractional_bits: Annotated[int, Field(strict=True, ge=0, le=32)]


class SmpcAgree(_Message):
    """Every party's key: the party checks each signature and derives its pairwise keys."""

    k: Literal["smpc_agree"] = "smpc_agree"
    rid: RequestId
    computation: ComputationId
    keys: Annotated[list[PartyKeyWire], Field(min_length=3, max_length=3)]


class SmpcShare(_Message):
    """A holder splits its published object ``source`` (or one parameter of it, ``part``;
    or some of its rows) into shares named ``result``; it answers with the shape and the other holder's share,
    sealed to it."""

    k: Literal["smpc_share"] = "smpc_share"
    rid: RequestId
    computation: ComputationId
    source: ObjectId
    part: PartName | None = None
    #: only these rows (first dimension, start and stop) of the tensor
    rows: (
        Annotated[
            list[Annotated[int, Field(strict=True, ge=0, le=2**31)]],
            Field(min_length=2, max_length=2),
        ]
        | None
    ) = None
    result: ObjectId


class SmpcAccept(_Message):
    """The other holder takes its share of ``result`` (sealed to it by the one that split it)."""

    k: Literal["smpc_accept"] = "smpc_accept"
    rid: RequestId
    computation: ComputationId
    result: ObjectId
    shape: SmpcShape
    sealed: SealedWire


class SmpcLocal(_Message):
    """An operation each holder runs on its own shares: + - of two sharings, a public number
    added or multiplied in, a transpose, a sum (over ``dim``, or all)."""

    k: Literal["smpc_local"] = "smpc_local"
    rid: RequestId
    computation: ComputationId
    op: Literal["add", "sub", "neg", "add_public", "mul_public", "t", "sum"]
    inputs: Annotated[list[ObjectId], Field(min_length=1, max_length=2)]
    result: ObjectId
    scalar: Annotated[float, Field(strict=True, allow_inf_nan=False)] | int | None = None
    dim: Annotated[int, Field(strict=True, ge=-8, le=7)] | None = None


class SmpcDeal(_Message):
    """To the crypto provider: a Beaver triple for ``op`` on operands of these shapes; it
    answers with each holder's dealing (seed, and the last holder's correction), sealed to it."""

    k: Literal["smpc_deal"] = "smpc_deal"
    rid: RequestId
    computation: ComputationId
    triple: ObjectId
    op: Literal["mul", "matmul"]
    x_shape: SmpcShape
    y_shape: SmpcShape


class SmpcMask(_Message):
    """To a holder: its dealing for ``triple``; it answers with its shares of e = x - a and
    f = y - b (uniform: a and b are the provider's masks), sealed to the other holder."""

    k: Literal["smpc_mask"] = "smpc_mask"
    rid: RequestId
    computation: ComputationId
    triple: ObjectId
    op: Literal["mul", "matmul"]
    x: ObjectId
    y: ObjectId
    dealing: SealedWire


class SmpcMultiply(_Message):
    """To a holder: the other holder's shares of e and f; it computes its share of the
    product (Beaver), truncates it (fixed point) and keeps it as ``result``."""

    k: Literal["smpc_multiply"] = "smpc_multiply"
    rid: RequestId
    computation: ComputationId
    triple: ObjectId
    result: ObjectId
    opening: SealedWire


class SmpcReveal(_Message):
    """Reconstruct ``tensor``: a request to this holder (its handlers, its queue). ``to``
    "scientist": the accepted share comes back in the reply. ``to`` an owner ID (the other
    holder): the accepted share comes back sealed to it. To this holder itself, with
    ``sealed`` (the other's share): it adds the two and keeps the value; nothing comes back."""

    k: Literal["smpc_reveal"] = "smpc_reveal"
    rid: RequestId
    computation: ComputationId
    tensor: ObjectId
    to: Literal["scientist"] | OwnerIdentity
    name: ShortText = ""
    reason: ShortText = ""
    timeout_secs: WaitSecs | None = None
    sealed: SealedWire | None = None


CompareOp = Literal["relu", "negative"]
#: a comparison's part: its index; parts run over a tensor's flattened elements
PartIndex = Annotated[int, Field(strict=True, ge=0, lt=2**24)]


class SmpcCompareDeal(_Message):
    """To the crypto provider: the mask bits and Beaver triples of part ``part`` of comparison
    ``comparison`` (``shape``: the part's, 1-D); it answers with each holder's, sealed to it."""

    k: Literal["smpc_compare_deal"] = "smpc_compare_deal"
    rid: RequestId
    computation: ComputationId
    comparison: ObjectId
    part: PartIndex
    op: CompareOp
    shape: SmpcShape


class SmpcCompare(_Message):
    """To a holder: start part ``part`` of ``parts`` of comparing ``x`` with 0 (``op`` "relu":
    relu(x); "negative": [x < 0]), kept as ``result`` when every part is done; it answers with
    its first message (its share of x + r), sealed to the other holder."""

    k: Literal["smpc_compare"] = "smpc_compare"
    rid: RequestId
    computation: ComputationId
    comparison: ObjectId
    op: CompareOp
    x: ObjectId
    result: ObjectId
    part: PartIndex
    parts: Annotated[int, Field(strict=True, ge=1, le=2**24)]
    dealing: SealedWire


class SmpcRound(_Message):
    """To a holder: the other holder's message of one step of a comparison's part; it answers
    with its next message sealed to the other holder, or, once done, the result's shape (or
    None while other parts run)."""

    k: Literal["smpc_round"] = "smpc_round"
    rid: RequestId
    computation: ComputationId
    comparison: ObjectId
    part: PartIndex
    message: SealedWire


class SmpcDrop(_Message):
    """Forget these shares (or, with none named, the whole computation)."""

    k: Literal["smpc_drop"] = "smpc_drop"
    rid: RequestId
    computation: ComputationId
    tensors: Annotated[list[ObjectId], Field(max_length=10_000)] = []


#: the scientist's secret-shared-computation messages (each answered with a Reply)
SmpcMessage = (
    SmpcKeys | SmpcAgree | SmpcShare | SmpcAccept | SmpcLocal | SmpcDeal | SmpcMask
    | SmpcMultiply | SmpcCompareDeal | SmpcCompare | SmpcRound | SmpcReveal | SmpcDrop
)  # fmt: skip


class Bye(_Message):
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
