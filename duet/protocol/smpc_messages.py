"""The secret-shared-computation messages (issue 20): the scientist drives share holders and a
crypto provider and relays what they send each other, sealed. Part of the wire's union
(``messages.Message``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .fields import (
    Hex32,
    Hex64,
    ObjectId,
    OwnerIdentity,
    RequestId,
    ShortText,
    WaitSecs,
    WireMessage,
)

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


class SealedWire(WireMessage):
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


class PartyKeyWire(WireMessage):
    """A party's key for one computation, signed by its identity over the transcript."""

    owner: OwnerIdentity
    role: Literal["holder", "provider"]
    identity_key: Hex32
    cipher_key: Hex32
    signature: Hex64


class SmpcKeys(WireMessage):
    """Start a computation: who holds shares (in order), who deals; the party answers with its
    signed key (a PartyKeyWire)."""

    k: Literal["smpc_keys"] = "smpc_keys"
    rid: RequestId
    computation: ComputationId
    holders: Annotated[list[OwnerIdentity], Field(min_length=2, max_length=2)]
    provider: OwnerIdentity
    fractional_bits: Annotated[int, Field(strict=True, ge=0, le=32)]


class SmpcAgree(WireMessage):
    """Every party's key: the party checks each signature and derives its pairwise keys."""

    k: Literal["smpc_agree"] = "smpc_agree"
    rid: RequestId
    computation: ComputationId
    keys: Annotated[list[PartyKeyWire], Field(min_length=3, max_length=3)]


class SmpcShare(WireMessage):
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


class SmpcAccept(WireMessage):
    """The other holder takes its share of ``result`` (sealed to it by the one that split it)."""

    k: Literal["smpc_accept"] = "smpc_accept"
    rid: RequestId
    computation: ComputationId
    result: ObjectId
    shape: SmpcShape
    sealed: SealedWire


#: what a holder does to its own shares, alone (``SmpcLocal``)
LocalOp = Literal[
    "add", "sub", "neg", "add_public", "mul_public", "t", "sum", "narrow", "cat", "squeeze",
    "flatten",
]  # fmt: skip


class SmpcLocal(WireMessage):
    """An operation each holder runs on its own shares: + - of two sharings, a public number
    added or multiplied in, a transpose, a sum (over ``dim``, or all), and reshaping: a slice
    along ``dim`` (``narrow``: ``start``, ``length``), two sharings joined along ``dim``
    (``cat``), a dimension of size one dropped (``squeeze``), all flattened (``flatten``)."""

    k: Literal["smpc_local"] = "smpc_local"
    rid: RequestId
    computation: ComputationId
    op: LocalOp
    inputs: Annotated[list[ObjectId], Field(min_length=1, max_length=2)]
    result: ObjectId
    scalar: Annotated[float, Field(strict=True, allow_inf_nan=False)] | int | None = None
    dim: Annotated[int, Field(strict=True, ge=-8, le=7)] | None = None
    start: Annotated[int, Field(strict=True, ge=0, lt=2**31)] | None = None
    length: Annotated[int, Field(strict=True, ge=0, le=2**31)] | None = None


class SmpcDeal(WireMessage):
    """To the crypto provider: a Beaver triple for ``op`` on operands of these shapes; it
    answers with each holder's dealing (seed, and the last holder's correction), sealed to it."""

    k: Literal["smpc_deal"] = "smpc_deal"
    rid: RequestId
    computation: ComputationId
    triple: ObjectId
    op: Literal["mul", "matmul"]
    x_shape: SmpcShape
    y_shape: SmpcShape


class SmpcMask(WireMessage):
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


class SmpcMultiply(WireMessage):
    """To a holder: the other holder's shares of e and f; it computes its share of the
    product (Beaver), truncates it (fixed point) and keeps it as ``result``."""

    k: Literal["smpc_multiply"] = "smpc_multiply"
    rid: RequestId
    computation: ComputationId
    triple: ObjectId
    result: ObjectId
    opening: SealedWire


class SmpcReveal(WireMessage):
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


class SmpcCompareDeal(WireMessage):
    """To the crypto provider: the mask bits and Beaver triples of part ``part`` of comparison
    ``comparison`` (``shape``: the part's, 1-D); it answers with each holder's, sealed to it."""

    k: Literal["smpc_compare_deal"] = "smpc_compare_deal"
    rid: RequestId
    computation: ComputationId
    comparison: ObjectId
    part: PartIndex
    op: CompareOp
    shape: SmpcShape


class SmpcCompare(WireMessage):
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


class SmpcRound(WireMessage):
    """To a holder: the other holder's message of one step of a comparison's part; it answers
    with its next message sealed to the other holder, or, once done, the result's shape (or
    None while other parts run)."""

    k: Literal["smpc_round"] = "smpc_round"
    rid: RequestId
    computation: ComputationId
    comparison: ObjectId
    part: PartIndex
    message: SealedWire


class SmpcDrop(WireMessage):
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
