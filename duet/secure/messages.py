"""The messages of a round, each relayed by the scientist, in the order they are sent.

    round 0  KeyAdvertisement   owner -> everyone  two X25519 public keys, a seed commitment,
                                                   signed by the owner's identity over the round
    round 1  EncryptedShare     owner -> owner     Shamir shares of its mask key and seed, sealed
                                                   so only the receiver can read them
    round 2  MaskedInput        owner -> scientist the quantised update plus masks
    round 3  UnmaskRequest      scientist -> owner who survived, who dropped
             UnmaskResponse     owner -> scientist seed shares of survivors, key shares of the
                                                   dropped, never both for one owner

None carries anything from which the scientist can read a single owner's update: a masked input
is uniform in Z(2^64) without its seed, and an owner's seed and mask key are only ever revealed
in shares, one kind per owner. Plain frozen dataclasses: the wire format is the next step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .round import PROTOCOL


@dataclass(frozen=True)
class KeyAdvertisement:
    """Round 0: an owner's round keys, bound to its identity and to the round it saw."""

    round_id: str
    owner: str  # identity ID
    identity_key: bytes  # Ed25519 public key (its ID is derived from it)
    cipher_key: bytes  # X25519 public key for sealing shares
    mask_key: bytes  # X25519 public key for pairwise masks
    seed_commitment: bytes
    round_digest: bytes  # the digest of the round (RoundSpec.digest) as this owner saw it
    model_digest: bytes  # said apart, so a mismatch is named as one
    signature: bytes = b""

    def signed_bytes(self, round_digest: bytes) -> bytes:
        """What the signature covers; a verifier puts in *its own* round's digest."""
        return b"|".join(
            (
                f"{PROTOCOL} keys".encode(),
                round_digest,
                self.round_id.encode(),
                self.owner.encode(),
                self.identity_key,
                self.cipher_key,
                self.mask_key,
                self.seed_commitment,
            )
        )


@dataclass(frozen=True)
class EncryptedShare:
    """Round 1: one owner's shares for one other owner, sealed with ChaCha20-Poly1305 under a
    key only the two of them can derive; the scientist relays bytes it cannot read."""

    round_id: str
    sender: str
    receiver: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class MaskedInput:
    """Round 2: the quantised update plus the owner's self mask and its pairwise masks with
    ``masked_with`` (the owners whose shares it received, itself included)."""

    round_id: str
    owner: str
    masked_with: tuple[str, ...]
    values: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class UnmaskRequest:
    """Round 3: whose masked input arrived (``survivors``) and who dropped after sharing."""

    round_id: str
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]


@dataclass(frozen=True)
class UnmaskResponse:
    """Round 3: one owner's shares (at x = ``index``): of each survivor's seed, of each dropped
    owner's mask key."""

    round_id: str
    owner: str
    index: int
    seed_shares: Mapping[str, bytes]
    key_shares: Mapping[str, bytes]


Message = KeyAdvertisement | EncryptedShare | MaskedInput | UnmaskRequest | UnmaskResponse

__all__ = [
    "EncryptedShare",
    "KeyAdvertisement",
    "MaskedInput",
    "Message",
    "UnmaskRequest",
    "UnmaskResponse",
]
