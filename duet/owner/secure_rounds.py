"""The owner's side of secure aggregation over a duet (issue 20): the rule an owner sets once
("secure aggregation with these owners, at least k of them") and the rounds it runs under it, on
the scientist's worker thread, without a request per round.

A round is four messages from the scientist (protocol/messages.py), each answered with a Reply:

    SecAggKeys    the round, the global model it starts from, the model trained from it here
                  -> this owner's signed round keys; its update is fixed now
    SecAggShare   every owner's keys        -> its shares, sealed to each other owner
    SecAggInput   the shares sealed to it   -> its masked input (uint64, as a buffer)
    SecAggUnmask  who survived, who dropped -> its shares of their seeds / mask keys, once

The checks are ``duet.secure.OwnerRound``'s (the roster is exactly ``owners``, the owners signed
the very round this one sees, never both kinds of share of one owner...); an abort is a
SecureAggregationAborted reply, which the scientist raises as itself. What leaves is only what
the round sends: no unmasked update, no trained weights.

The update: the trained model's floating-point weights minus the global model's, times this
owner's sample count (the length of the dataset the rule names), so that the scientist's sum
divided by the survivors' sample counts is FedAvg's weighted mean of the owners' deltas.
Integer buffers (``num_batches_tracked``) are left out. What an owner must remember (the round
ids it took part in, the digests of the updates and trained models it gave) is kept per identity
and federation in its history file (``secure_history.py``), across scientists and restarts, and
recorded before what it guards leaves.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..errors import DuetError, NotAllowed, SecureAggregationAborted, UsageError
from ..identity import Identity
from ..protocol.messages import Reply
from ..protocol.secagg_messages import (
    SecAggInput,
    SecAggKeys,
    SecAggMessage,
    SecAggShare,
    SecAggUnmask,
)
from ..protocol.serde import Encoder
from ..secure import (
    MIN_OWNERS,
    EncryptedShare,
    KeyAdvertisement,
    OwnerRound,
    Quantiser,
    RoundSpec,
    UnmaskRequest,
    model_digest,
)
from .secure_history import OwnerHistory, SecureHistory
from .store import OWNER

if TYPE_CHECKING:
    from .service import PeerService

STEPS = {
    "secagg_keys": "keys",
    "secagg_share": "key sharing",
    "secagg_input": "masked input",
    "secagg_unmask": "unmasking",
}
MAX_ROUNDS_KEPT = 16  # a scientist's rounds this owner remembers (finished ones answer "done")


@dataclass
class SecureRule:
    """An owner's consent to secure aggregation for federation ``federation`` on ``data``:
    rounds whose roster is exactly ``owners`` (identity IDs, this owner among them, at least
    ``min_owners`` of them, 3 or more); models of at most ``model_elements`` weights; only
    ``scientist``'s, if given. A round unmasks with more than half the roster's inputs
    (``duet.secure.threshold_against``) or with ``min_threshold``, if that is more.
    ``history``: what this owner remembers of the federation's rounds (kept in its file)."""

    federation: str
    data: str
    owners: frozenset[str]
    min_owners: int
    model_elements: int
    scientist: str | None
    min_threshold: int | None
    history: OwnerHistory


class SecureAggregationRules:
    """The owner node's secure-aggregation rules, by federation name (thread-safe), and the
    history file they remember rounds in (``history_path``: opened, and checked, when the first
    rule is allowed; raises SecureHistoryCorrupt there)."""

    def __init__(self, identity: Identity, history_path: str | Path):
        self.identity = identity
        self.history_path = Path(history_path)
        self._history: SecureHistory | None = None
        self._rules: dict[str, SecureRule] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def history(self) -> SecureHistory:
        """The history file, opened (and checked) on first use."""
        with self._lock:
            if self._closed:
                raise UsageError("this owner session is closed; its secure-aggregation history too")
            if self._history is None:
                self._history = SecureHistory(self.history_path)
            return self._history

    def close(self) -> None:
        with self._lock:
            self._closed = True
            history, self._history = self._history, None
        if history is not None:
            history.close()

    def allow(
        self,
        federation: str,
        data: str,
        *,
        owners: Collection[str],
        min_owners: int,
        model_elements: int,
        scientist: str | None = None,
        min_threshold: int | None = None,
    ) -> SecureRule:
        roster = frozenset(owners)
        if self.identity.id not in roster:
            raise UsageError(
                f"owners lists every owner of the federation's rounds by identity ID, this one "
                f"({self.identity.id}) among them"
            )
        if not MIN_OWNERS <= min_owners <= len(roster):
            raise UsageError(
                f"min_owners is at least {MIN_OWNERS} and at most the {len(roster)} owners "
                f"listed, not {min_owners!r}"
            )
        if min_threshold is not None and not 2 <= min_threshold <= len(roster):
            raise UsageError(f"min_threshold is from 2 to {len(roster)}, not {min_threshold!r}")
        memory = self.history.memory(self.identity.id, federation)  # read before any round
        rule = SecureRule(
            federation, data, roster, min_owners, model_elements, scientist, min_threshold, memory
        )
        with self._lock:
            if federation.lower() in self._rules:
                raise UsageError(f"secure aggregation for {federation!r} is allowed already")
            self._rules[federation.lower()] = rule
        return rule

    def get(self, federation: str) -> SecureRule | None:
        with self._lock:
            return self._rules.get(federation.lower())


@dataclass
class _Live:
    round: OwnerRound
    update: dict[str, torch.Tensor] | None


class SecureRounds:
    """One scientist's secure-aggregation rounds at this owner (``service``: its PeerService).
    Called on the scientist's worker thread only."""

    def __init__(self, service: PeerService, rules: SecureAggregationRules):
        self.service = service
        self.rules = rules
        self._rounds: OrderedDict[tuple[str, str], _Live] = OrderedDict()

    def handle(self, message: SecAggMessage, out_buffers: list[memoryview]) -> Reply:
        """The reply to one message: the round's next step's output, or the error (an abort
        names its reason) with the operation named."""
        op = f"secure aggregation ({STEPS[message.k]}, round {message.round_id[:60]!r})"
        try:
            if isinstance(message, SecAggKeys):
                value: object = self._keys(message)
            else:
                live = self._live(message.federation, message.round_id)
                if isinstance(message, SecAggShare):
                    value = self._share(live, message)
                elif isinstance(message, SecAggInput):
                    value = self._input(live, message)
                else:
                    value = self._unmask(live, message)
        except DuetError as exc:
            return self.service.error_reply(message.rid, exc, op)
        encoded = Encoder(out_buffers).encode(value)
        return Reply(rid=message.rid, value=encoded)

    # ---- the steps
    def _keys(self, message: SecAggKeys) -> dict[str, str]:
        rule = self.rules.get(message.federation)
        if rule is None:
            raise NotAllowed(
                f"this owner allows no secure aggregation for a federation named "
                f"{message.federation!r}"
            )
        if rule.scientist is not None and rule.scientist != self.service.peer:
            raise NotAllowed(f"this owner allows secure aggregation of {rule.federation!r} to "
                             "another scientist")  # fmt: skip
        key = (rule.federation.lower(), message.round_id)
        if key in self._rounds:
            raise SecureAggregationAborted(
                f"round {message.round_id!r} was started before", reason="replay",
                owner=self.rules.identity.id,
            )  # fmt: skip
        start = self._model(message.model, "the global model", rule, trained=False)
        trained = self._model(message.trained, "the trained model", rule, trained=True)
        update = _update(start, trained, rule, self._samples(rule.data))
        digest = model_digest(_floats(start))
        trained_digest = model_digest(_floats(trained))
        spec = RoundSpec(
            message.round_id, tuple(message.roster), digest,
            Quantiser(message.clip, message.fractional_bits), message.threshold,
        )  # fmt: skip
        owner_round = OwnerRound(
            self.rules.identity, spec, expected_owners=rule.owners, model_digest=digest,
            history=rule.history, min_threshold=rule.min_threshold,
        )  # fmt: skip
        try:  # against the same weights over another start; recorded before the keys leave
            earlier = rule.history.give_trained(trained_digest, message.round_id)
        except DuetError as exc:
            raise SecureAggregationAborted(
                f"this owner could not record the trained model in its history ({exc}); it "
                "gives nothing it could not remember giving", reason="history",
                owner=self.rules.identity.id,
            ) from exc  # fmt: skip
        if earlier is not None:
            raise SecureAggregationAborted(
                f"this trained model's update was given to an earlier round ({earlier!r}): an "
                "owner gives one model's update once", reason="replay",
                owner=self.rules.identity.id,
            )  # fmt: skip
        self._remember(key, _Live(owner_round, update))
        ad = owner_round.advertise()
        return {
            "owner": ad.owner, "identity_key": ad.identity_key.hex(),
            "cipher_key": ad.cipher_key.hex(), "mask_key": ad.mask_key.hex(),
            "seed_commitment": ad.seed_commitment.hex(), "round_digest": ad.round_digest.hex(),
            "model_digest": ad.model_digest.hex(), "signature": ad.signature.hex(),
        }  # fmt: skip

    def _share(self, live: _Live, message: SecAggShare) -> list[dict[str, str]]:
        ads = [
            KeyAdvertisement(
                round_id=message.round_id,
                owner=a.owner,
                identity_key=bytes.fromhex(a.identity_key),
                cipher_key=bytes.fromhex(a.cipher_key),
                mask_key=bytes.fromhex(a.mask_key),
                seed_commitment=bytes.fromhex(a.seed_commitment),
                round_digest=bytes.fromhex(a.round_digest),
                model_digest=bytes.fromhex(a.model_digest),
                signature=bytes.fromhex(a.signature),
            )  # fmt: skip
            for a in message.advertisements
        ]
        shares = live.round.share_keys(ads)
        return [
            {"sender": s.sender, "receiver": s.receiver, "nonce": s.nonce.hex(),
             "ciphertext": s.ciphertext.hex()}
            for s in shares
        ]  # fmt: skip

    def _input(self, live: _Live, message: SecAggInput) -> dict[str, object]:
        shares = [
            EncryptedShare(message.round_id, s.sender, s.receiver, bytes.fromhex(s.nonce),
                           bytes.fromhex(s.ciphertext))
            for s in message.shares
        ]  # fmt: skip
        update, live.update = live.update, None  # used once, whatever happens
        if update is None:
            raise SecureAggregationAborted(
                "asked for a second masked input", reason="replay", owner=self.rules.identity.id
            )
        masked = live.round.masked_input(update, shares)
        if self.service.audit is not None:  # what left, and under which rule
            self.service.audit.record(
                "release", scientist=self.service.peer, name=self.service.peer_name,
                object_id=message.round_id[:200], value_kind="masked update",
                nbytes=int(masked.values.nbytes), masked_with=list(masked.masked_with),
                digest=hashlib.sha256(np.ascontiguousarray(masked.values).data).hexdigest(),
                decided_by=f"secure aggregation rule of {live.round.spec.round_id[:200]!r}",
            )  # fmt: skip
        return {
            "owner": masked.owner,
            "masked_with": list(masked.masked_with),
            "values": np.ascontiguousarray(masked.values, dtype=np.uint64),
        }

    def _unmask(self, live: _Live, message: SecAggUnmask) -> dict[str, object]:
        request = UnmaskRequest(message.round_id, tuple(message.survivors), tuple(message.dropped))
        response = live.round.unmask(request)
        return {
            "owner": response.owner,
            "index": response.index,
            "seed_shares": {k: v.hex() for k, v in response.seed_shares.items()},
            "key_shares": {k: v.hex() for k, v in response.key_shares.items()},
        }

    # ---- helpers
    def _live(self, federation: str, round_id: str) -> _Live:
        live = self._rounds.get((federation.lower(), round_id))
        if live is None:
            raise UsageError(
                f"no secure-aggregation round {round_id!r} of {federation!r} was started with "
                "this owner (its keys come first)"
            )
        return live

    def _remember(self, key: tuple[str, str], live: _Live) -> None:
        self._rounds[key] = live
        while len(self._rounds) > MAX_ROUNDS_KEPT:
            self._rounds.popitem(last=False)

    def _model(self, object_id: str, what: str, rule: SecureRule, *, trained: bool) -> nn.Module:
        """A model of the scientist's at this owner (the owners check, by its digest, that
        they all start from the same global model; the update is the difference). The trained
        model may depend on the rule's dataset alone, as a plain round's update handler requires,
        never on anything unknown (fail closed). The global model is not checked so: a training
        loop's writes may mark everything the scientist has here as the data's, and a global
        model computed from this owner's data would differ from the other owners', whose
        digests each owner signs over the round (the round aborts)."""
        executor = self.service.executor
        entry = executor.visible(object_id)
        if entry.owner == OWNER or entry.failure is not None:
            raise UsageError(f"{what} ({object_id}) is not a model the scientist made here")
        if not isinstance(entry.value, nn.Module):
            raise UsageError(f"{what} ({object_id}) is a {type(entry.value).__name__}, not a model")
        label = executor.label_of(entry)
        if trained and any(s.kind == "unknown" or rule.data not in s.tags for s in label):
            raise NotAllowed(
                f"{what} ({object_id}) depends on more than the dataset {rule.data!r} this "
                "owner allows secure aggregation of"
            )
        return entry.value

    def _samples(self, data: str) -> int:
        found = [e for e in self.service.store.published() if data in e.tags]
        if len(found) != 1:
            raise UsageError(f"the rule's dataset {data!r} names {len(found)} published objects")
        try:
            return len(found[0].value)  # type: ignore[arg-type]
        except TypeError as exc:
            raise UsageError(f"the rule's dataset {data!r} has no length") from exc


def _floats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point()}


def _update(
    start: nn.Module, trained: nn.Module, rule: SecureRule, samples: int
) -> dict[str, torch.Tensor]:
    """``samples * (trained - start)`` over the floating-point weights, copied now."""
    before, after = _floats(start), _floats(trained)
    shapes = {k: tuple(v.shape) for k, v in before.items()}
    if {k: tuple(v.shape) for k, v in after.items()} != shapes:
        raise UsageError("the trained model does not have the global model's weights")
    if sum(v.numel() for v in after.values()) > rule.model_elements:
        raise UsageError(f"the model has more than the {rule.model_elements} weights allowed")
    update = {}
    for key, start_value in before.items():  # one float64 copy each, then in place
        delta = after[key].to(torch.float64, copy=True)
        update[key] = delta.sub_(start_value).mul_(samples)
    return update


__all__ = ["SecureAggregationRules", "SecureRounds", "SecureRule"]
