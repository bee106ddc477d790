"""An owner's side of one round of secure aggregation (Bonawitz et al. 2017, double masking), as
a state machine fed with messages: no session, no wire, no clock.

    advertise()                  -> KeyAdvertisement        round 0
    share_keys(advertisements)   -> [EncryptedShare]        round 1
    masked_input(update, shares) -> MaskedInput             round 2
    unmask(request)              -> UnmaskResponse          round 3

What the owner checks before it gives anything away: the roster is exactly the owners it was told
to expect (at least 3), the round starts from the model it holds, every other owner signed its
keys with its identity over the very round this owner sees (id, roster, model, parameters), no
message is from another round, at least ``threshold`` owners shared their keys before it sends
its masked input and at least ``threshold`` masked inputs arrived before it reveals shares, and
it never reveals, for one owner, both the share of its seed and the share of its mask key. Any
failed check aborts the round for this owner (``SecureAggregationAborted``, with a reason) and it
answers nothing more.

What the owner learns: the other owners' public round keys and, sealed to it, one Shamir share
of each one's seed and mask key (below the threshold, shares say nothing). What the scientist
learns from it: its masked input (uniform without its seed) and, in round 3, shares that rebuild
the survivors' seeds or the dropped owners' mask keys: enough to remove the masks from the sum,
never to read one update.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, TypeVar

import numpy as np

from ..errors import DuetError, HandshakeError, UsageError
from ..identity import Identity, id_of, verify
from . import crypto
from .messages import EncryptedShare, KeyAdvertisement, MaskedInput, UnmaskRequest, UnmaskResponse
from .quantise import Layout, Update
from .round import MIN_OWNERS, RoundSpec, SecureAggregationAborted
from .stream import KeyStreams

_T = TypeVar("_T")


class Stage(enum.Enum):
    """Where an owner's round is: the step it expects next."""

    ADVERTISE = "advertise keys"
    SHARE_KEYS = "share keys"
    MASKED_INPUT = "send the masked input"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


def advertisement_problem(ad: KeyAdvertisement, spec: RoundSpec) -> tuple[str, str] | None:
    """What is wrong with ``ad`` as a roster owner's keys for ``spec``, signed by that owner's
    identity over ``spec`` as the checker sees it: (message, reason), or None."""
    if ad.round_id != spec.round_id:
        return (
            f"the keys of owner {ad.owner} are for round {ad.round_id!r}, this round is "
            f"{spec.round_id!r}: a message replayed from another round",
            "replay",
        )
    if ad.owner not in spec.roster:
        return f"keys arrived from {ad.owner}, who is not in the round's roster", "roster"
    if len(ad.identity_key) != 32 or id_of(ad.identity_key) != ad.owner:
        return (
            f"the identity key sent for owner {ad.owner} is not that owner's: keys swapped",
            "signature",
        )
    if ad.model_digest != spec.model_digest:
        return (
            f"owner {ad.owner} holds a different model (digest {ad.model_digest.hex()[:16]}, this "
            f"round's is {spec.model_digest.hex()[:16]}): the owners were sent different models",
            "model",
        )
    if ad.round_digest != spec.digest:
        return (
            f"owner {ad.owner} was shown a different round (roster, model or parameters) than "
            "this one: the scientist told the owners different things",
            "roster",
        )
    try:
        verify(ad.identity_key, ad.signature, ad.signed_bytes(spec.digest), who=f"owner {ad.owner}")
    except HandshakeError:
        return (
            f"the round keys of owner {ad.owner} are not signed by its identity over this round "
            "(forged or swapped keys)",
            "signature",
        )
    return None


class RoundHistory(Protocol):
    """What an owner remembers across rounds, and across restarts if it keeps it on disk
    (``duet.owner.secure_history``): the round ids it took part in and a digest of every
    update it submitted. Each call records what it is asked about, checked and recorded in one
    step; one that cannot record raises a DuetError, and the round gives nothing away."""

    def begin_round(self, round_id: str) -> bool:
        """Record ``round_id``; False if it was recorded before (a replay)."""
        ...

    def submit(self, digest: bytes, round_id: str) -> str | None:
        """Record update ``digest`` as submitted to ``round_id``; the round it was submitted to
        before (nothing recorded now), or None."""
        ...


@dataclass
class History:
    """A ``RoundHistory`` in memory: the round ids an owner took part in, and a digest of every
    update it submitted, with its round. An owner never runs a round id twice, and never submits
    one update twice: the same update in two rounds with different rosters would give away the
    difference of the two sums. Lost when the process ends: an owner node keeps its history in
    a file (``duet.owner.secure_history``)."""

    rounds: set[str] = field(default_factory=set)
    submitted: dict[bytes, str] = field(default_factory=dict)

    def begin_round(self, round_id: str) -> bool:
        if round_id in self.rounds:
            return False
        self.rounds.add(round_id)
        return True

    def submit(self, digest: bytes, round_id: str) -> str | None:
        if digest in self.submitted:
            return self.submitted[digest]
        self.submitted[digest] = round_id
        return None


def update_digest(parts: Iterable[np.ndarray]) -> bytes:
    """SHA-256 of an update's float64 values (its ``Layout.parts``, end to end)."""
    digest = hashlib.sha256(b"duet-secagg/1 update|")
    for part in parts:
        digest.update(np.ascontiguousarray(part, dtype="<f8").data)  # no copy of float64 values
    return digest.digest()


class OwnerRound:
    """One owner's part in one round. Built from the round the scientist proposed (``spec``),
    checked against what the owner knows on its own: ``expected_owners`` (identity IDs, this
    owner among them, at least 3) and the digest of the model it received (``model_digest``).
    ``history`` (kept by the owner across rounds) refuses a round id, or an update, it has
    seen before; ``min_threshold`` refuses rounds that unmask with fewer owners (see
    ``threshold_against``: against a scientist working with some of the owners).

    Raises SecureAggregationAborted (and UsageError for an owner's own misconfiguration).
    """

    def __init__(
        self,
        identity: Identity,
        spec: RoundSpec,
        *,
        expected_owners: Collection[str],
        model_digest: bytes,
        history: RoundHistory | None = None,
        min_threshold: int | None = None,
    ):
        self.id = identity.id
        self.spec = spec
        self.stage = Stage.ADVERTISE
        self.aborted: SecureAggregationAborted | None = None
        self._identity = identity
        self._cipher_key = crypto.new_key()
        self._mask_key: bytes | None = crypto.private_bytes(crypto.new_key())
        self._seed: bytes | None = os.urandom(crypto.SECRET)
        self._keys: dict[str, KeyAdvertisement] = {}
        self._held: dict[str, tuple[bytes, bytes]] = {}  # owner -> (mask key share, seed share)
        self._masked_with: tuple[str, ...] = ()
        expected = set(expected_owners)
        if self.id not in expected or len(expected) < MIN_OWNERS:
            raise UsageError(
                f"expected_owners lists the owners of a round, this one ({self.id}) among them and "
                f"at least {MIN_OWNERS} in all, not {sorted(expected)}"
            )
        self._history = history
        if history is not None and not self._remember(history.begin_round, spec.round_id):
            self._abort(
                f"round {spec.round_id!r} was run before: an owner never submits an update to "
                "a round id twice",
                "replay",
            )
        if set(spec.roster) != expected:
            strangers = sorted(set(spec.roster) - expected)
            missing = sorted(expected - set(spec.roster))
            self._abort(
                f"the roster is not the owners this owner expects (not expected: "
                f"{strangers or 'none'}; missing: {missing or 'none'})",
                "roster",
            )
        try:
            spec.check()
        except DuetError as exc:
            self._abort(str(exc), "parameters")
        if min_threshold is not None and spec.threshold < min_threshold:
            self._abort(
                f"the round unmasks with {spec.threshold} owners, this owner requires at least "
                f"{min_threshold}",
                "parameters",
            )
        if spec.model_digest != model_digest:
            self._abort(
                f"the round names model {spec.model_digest.hex()[:16]} but this owner holds "
                f"{model_digest.hex()[:16]}",
                "model",
            )

    # ------------------------------------------------------------------ round 0

    def advertise(self) -> KeyAdvertisement:
        """This owner's round keys, signed by its identity over the round."""
        self._enter(Stage.ADVERTISE)
        assert self._mask_key is not None and self._seed is not None
        unsigned = KeyAdvertisement(
            round_id=self.spec.round_id,
            owner=self.id,
            identity_key=self._identity.public_key,
            cipher_key=crypto.public_bytes(self._cipher_key),
            mask_key=crypto.public_bytes(
                crypto.X25519PrivateKey.from_private_bytes(self._mask_key)
            ),
            seed_commitment=crypto.seed_commitment(self._seed),
            round_digest=self.spec.digest,
            model_digest=self.spec.model_digest,
        )
        signature = self._identity.sign(unsigned.signed_bytes(self.spec.digest))
        ad = dataclasses.replace(unsigned, signature=signature)
        self._keys[self.id] = ad
        self.stage = Stage.SHARE_KEYS
        return ad

    # ------------------------------------------------------------------ round 1

    def share_keys(self, advertisements: Iterable[KeyAdvertisement]) -> list[EncryptedShare]:
        """Check every owner's keys, then send each one its shares of this owner's mask key and
        seed, sealed to it. Every owner of the roster must have advertised."""
        self._enter(Stage.SHARE_KEYS)
        mine = self._keys[self.id]
        keys: dict[str, KeyAdvertisement] = {}
        for ad in advertisements:
            problem = advertisement_problem(ad, self.spec)
            if problem:
                self._abort(*problem)
            if ad.owner in keys:
                self._abort(f"two sets of keys arrived for owner {ad.owner}", "protocol")
            if ad.owner == self.id and ad != mine:
                self._abort("this owner's own keys came back altered", "signature")
            keys[ad.owner] = ad
        missing = sorted(set(self.spec.roster) - set(keys))
        if missing:
            self._abort(
                f"no keys from {missing}: every owner of the roster advertises before any "
                "shares its secrets",
                "roster",
            )
        self._keys = keys
        assert self._mask_key is not None and self._seed is not None
        n, t = len(self.spec.roster), self.spec.threshold
        key_shares = crypto.split(self._mask_key, t, n)
        seed_shares = crypto.split(self._seed, t, n)
        out = []
        for owner in self.spec.roster:
            i = self.spec.index_of(owner) - 1
            if owner == self.id:
                self._held[owner] = (key_shares[i], seed_shares[i])
                continue
            key = self._share_key(owner, sender=self.id, receiver=owner)
            nonce, sealed = crypto.seal(
                key, key_shares[i] + seed_shares[i], self._associated(self.id, owner)
            )
            out.append(EncryptedShare(self.spec.round_id, self.id, owner, nonce, sealed))
        self.stage = Stage.MASKED_INPUT
        return out

    # ------------------------------------------------------------------ round 2

    def masked_input(self, update: Update, shares: Iterable[EncryptedShare]) -> MaskedInput:
        """Open the shares sent to this owner; if at least ``threshold`` owners (this one
        included) shared, return its update quantised and masked with its seed and with every
        one of them. The update itself never leaves."""
        self._enter(Stage.MASKED_INPUT)
        for share in shares:
            if share.round_id != self.spec.round_id:
                self._abort(
                    f"a share from {share.sender} is for round {share.round_id!r}, this round is "
                    f"{self.spec.round_id!r}: a message replayed from another round",
                    "replay",
                )
            if (
                share.receiver != self.id
                or share.sender not in self._keys
                or share.sender == self.id
            ):
                self._abort(
                    f"a share from {share.sender} to {share.receiver} was delivered to this owner",
                    "protocol",
                )
            if share.sender in self._held:
                self._abort(f"two shares arrived from {share.sender}", "protocol")
            key = self._share_key(share.sender, sender=share.sender, receiver=self.id)
            opened = crypto.open_sealed(
                key, share.nonce, share.ciphertext, self._associated(share.sender, self.id)
            )
            if opened is None or len(opened) != 2 * crypto.SECRET:
                self._abort(
                    f"the share from {share.sender} does not open under the key agreed with it "
                    "for this round (forged, or replayed from another round)",
                    "forged",
                )
            self._held[share.sender] = (opened[: crypto.SECRET], opened[crypto.SECRET :])
        masked_with = tuple(sorted(self._held))
        if len(masked_with) < self.spec.threshold:
            self._abort(
                f"only {len(masked_with)} owners shared their keys, the threshold is "
                f"{self.spec.threshold}: this owner sends no input",
                "below_threshold",
            )
        assert self._mask_key is not None and self._seed is not None
        parts = Layout.of(update).parts(update)
        if self._history is not None:  # recorded before anything leaves
            earlier = self._remember(self._history.submit, update_digest(parts), self.spec.round_id)
            if earlier is not None:
                self._abort(
                    f"this update was submitted before, in round {earlier!r}: an owner never "
                    "submits an update twice (two sums over different rosters would give it away)",
                    "replay",
                )
        add, subtract = [self_mask_key(self._seed, self.spec)], list[bytes]()
        for other in masked_with:
            if other == self.id:
                continue
            try:
                secret = crypto.agree(self._mask_key, self._keys[other].mask_key)
            except ValueError:
                self._abort(f"owner {other}'s mask key is not a usable X25519 key", "protocol")
            key = pairwise_mask_key(secret, self.spec, self.id, other)
            (add if self.id < other else subtract).append(key)  # wrapping uint64 arithmetic
        # quantised and masked a piece at a time: the unmasked vector is never whole
        masked = self.spec.quantiser.quantise_parts(parts, KeyStreams(add, subtract))
        self._masked_with = masked_with
        self._mask_key = self._seed = None  # shared; this owner needs them no more
        self.stage = Stage.UNMASK
        return MaskedInput(self.spec.round_id, self.id, masked_with, masked)

    # ------------------------------------------------------------------ round 3

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Reveal this owner's shares of the survivors' seeds and of the dropped owners' mask
        keys, once, if at least ``threshold`` masked inputs arrived; never both kinds for one
        owner (they would unmask its update)."""
        if self.stage is Stage.DONE:
            self._abort(
                "a second unmask request for this round: this owner answers one (another could "
                "ask for the other kind of share of an owner it already revealed)",
                "replay",
            )
        self._enter(Stage.UNMASK)
        if request.round_id != self.spec.round_id:
            self._abort(
                f"the unmask request is for round {request.round_id!r}, this round is "
                f"{self.spec.round_id!r}: a message replayed from another round",
                "replay",
            )
        survivors, dropped = set(request.survivors), set(request.dropped)
        both = sorted(survivors & dropped)
        if both:
            self._abort(
                f"asked to reveal both the seed share and the mask-key share of {both}: "
                "together they would unmask a single owner's update",
                "both_kinds",
            )
        if len(survivors) != len(request.survivors) or len(dropped) != len(request.dropped):
            self._abort("the unmask request names an owner twice", "protocol")
        if survivors | dropped != set(self._masked_with):
            self._abort(
                f"the unmask request accounts for {sorted(survivors | dropped)}, not the owners "
                f"this owner masked with ({list(self._masked_with)})",
                "protocol",
            )
        if self.id not in survivors:
            self._abort("the unmask request counts this owner as dropped", "protocol")
        if len(survivors) < self.spec.threshold:
            self._abort(
                f"only {len(survivors)} masked inputs arrived, the threshold is "
                f"{self.spec.threshold}: nothing is revealed",
                "below_threshold",
            )
        held, self._held = self._held, {}
        self.stage = Stage.DONE
        return UnmaskResponse(
            round_id=self.spec.round_id,
            owner=self.id,
            index=self.spec.index_of(self.id),
            seed_shares={owner: held[owner][1] for owner in sorted(survivors)},
            key_shares={owner: held[owner][0] for owner in sorted(dropped)},
        )

    # ------------------------------------------------------------------ helpers

    def _enter(self, stage: Stage) -> None:
        if self.aborted is not None:
            raise self.aborted
        if self.stage is not stage:
            self._abort(
                f"asked to {stage.value} while its next step is to {self.stage.value}", "protocol"
            )

    def _abort(self, message: str, reason: str) -> NoReturn:
        self.stage = Stage.ABORTED
        self._held, self._mask_key, self._seed = {}, None, None
        self.aborted = SecureAggregationAborted(message, reason=reason, owner=self.id)
        raise self.aborted

    def _remember(self, record: Callable[..., _T], *args: object) -> _T:
        """``record(*args)`` on the history; if it cannot record, the round aborts (fail
        closed: an owner gives nothing it could not remember giving)."""
        try:
            return record(*args)
        except SecureAggregationAborted:
            raise
        except DuetError as exc:
            self._abort(
                f"this owner could not record the round in its history ({exc}); it gives nothing "
                "it could not remember giving: fix the history file and run a new round",
                "history",
            )

    def _share_key(self, other: str, *, sender: str, receiver: str) -> bytes:
        try:
            secret = crypto.agree(self._cipher_key, self._keys[other].cipher_key)
        except ValueError:
            self._abort(f"owner {other}'s cipher key is not a usable X25519 key", "protocol")
        context = self.spec.digest + f"|{sender}|{receiver}".encode()
        return crypto.derive(secret, purpose="share", context=context)

    def _associated(self, sender: str, receiver: str) -> bytes:
        return self.spec.digest + f"|{self.spec.round_id}|{sender}|{receiver}".encode()


def self_mask_key(seed: bytes, spec: RoundSpec) -> bytes:
    """The ChaCha20 key of an owner's self mask, from its seed."""
    return crypto.derive(seed, purpose="self mask", context=spec.digest)


def pairwise_mask_key(secret: bytes, spec: RoundSpec, a: str, b: str) -> bytes:
    """The ChaCha20 key of the mask two owners share, from their X25519 secret: the same for
    both (the pair in sorted order). The lower ID adds the stream, the higher subtracts it."""
    low, high = sorted((a, b))
    return crypto.derive(
        secret, purpose="pairwise mask", context=spec.digest + f"|{low}|{high}".encode()
    )


__all__ = [
    "History",
    "OwnerRound",
    "RoundHistory",
    "Stage",
    "advertisement_problem",
    "pairwise_mask_key",
    "self_mask_key",
    "update_digest",
]
