"""The secure-aggregation messages (issue 20): a federated round's keys, shares, masked input
and unmasking, relayed by the scientist between owners. Part of the wire's union
(``messages.Message``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .fields import Hex32, Hex64, ObjectId, OwnerIdentity, RequestId, WireMessage

# ---- secure aggregation (issue 20): the scientist relays a round between owners. What it
# carries is public keys, signatures and sealed shares (hex, of fixed or bounded lengths); the
# masked input comes back in a Reply, its uint64 values as a buffer. The owner checks every
# field again against the round it holds (duet/secure); these bounds only keep it small.
MAX_SECAGG_OWNERS = 100  # owners in one round's roster
#: an owner's identity ID as duet.identity writes it ("3fa2-91bc-0d4e-77a1")
RoundName = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
Roster = Annotated[list[OwnerIdentity], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggKeys(WireMessage):
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


class KeyAdvertisementWire(WireMessage):
    """An owner's round keys as relayed (duet.secure.KeyAdvertisement, bytes as hex)."""

    owner: OwnerIdentity
    identity_key: Hex32
    cipher_key: Hex32
    mask_key: Hex32
    seed_commitment: Hex32
    round_digest: Hex32
    model_digest: Hex32
    signature: Hex64


class SealedShareWire(WireMessage):
    """One owner's sealed shares for another (duet.secure.EncryptedShare, bytes as hex): 64
    bytes of shares and a 16-byte tag."""

    sender: OwnerIdentity
    receiver: OwnerIdentity
    nonce: Annotated[str, Field(strict=True, min_length=24, max_length=24, pattern=r"^[0-9a-f]+$")]
    ciphertext: Annotated[
        str, Field(strict=True, min_length=2, max_length=512, pattern=r"^[0-9a-f]+$")
    ]


class SecAggShare(WireMessage):
    """Round 1: every owner's keys; the owner answers with its shares, sealed to each."""

    k: Literal["secagg_share"] = "secagg_share"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    advertisements: Annotated[list[KeyAdvertisementWire], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggInput(WireMessage):
    """Round 2: the shares sealed to this owner; it answers with its masked input."""

    k: Literal["secagg_input"] = "secagg_input"
    rid: RequestId
    federation: RoundName
    round_id: RoundName
    shares: Annotated[list[SealedShareWire], Field(max_length=MAX_SECAGG_OWNERS)]


class SecAggUnmask(WireMessage):
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
