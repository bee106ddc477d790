"""The owner's side of secret-shared computation over duets (issue 20): the rule an owner sets
("this dataset may be secret-shared with these owners, that one dealing") and the
computations it takes part in under it, on the scientist's worker thread.

A computation has two share holders and a crypto provider, all owner nodes; the scientist
relays. Each message (protocol/messages.py's ``Smpc*``) is answered with a Reply:

    SmpcKeys      the roster           -> this party's key, signed by its identity
    SmpcAgree     every party's key    -> "agreed" (signatures and roster checked)
    SmpcShare     a published object   -> its shape and the other holder's share, sealed to it
    SmpcAccept    that sealed share    -> kept
    SmpcLocal     + - neg, public + *, t, sum, narrow, cat, squeeze, flatten on shares -> the
                  result's shape
    SmpcDeal      (provider) shapes    -> a Beaver triple's dealings, sealed to each holder
    SmpcMask      a dealing            -> this holder's openings, sealed to the other holder
    SmpcMultiply  the other's openings -> the product's shape (kept, truncated)
    SmpcCompareDeal (provider) a part's shape -> a comparison's mask bits and triples, sealed
                                          to each holder (duet.smpc.remote.comparison)
    SmpcCompare   a part's dealing     -> this holder's first message, sealed to the other
    SmpcRound     the other's message  -> the next one, sealed; at the end the result's shape
    SmpcReveal    a computed tensor    -> a request in this owner's queue; once accepted, the
                                          share (to the scientist) or the share sealed to the
                                          other holder; to this owner: the value is kept here
    SmpcDrop      names                -> forgotten

Without a rule naming this computation's roster every message is refused. What leaves under
the rule: uniform shares of the rule's dataset (sealed to the other holder), masked openings
(sealed), and shares of computed results the owner (or a handler) accepted to reveal. The
party's cryptography and arithmetic are ``duet.smpc.remote.party``'s, imported at first use
(duet.smpc's package imports the workers, which import the owner's session).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import DuetError, NotAllowed, ProtocolError, UsageError
from ..identity import Identity
from ..protocol.messages import Reply
from ..protocol.serde import Encoder
from ..protocol.smpc_messages import (
    SealedWire,
    SmpcAccept,
    SmpcAgree,
    SmpcCompare,
    SmpcCompareDeal,
    SmpcDeal,
    SmpcDrop,
    SmpcKeys,
    SmpcLocal,
    SmpcMask,
    SmpcMessage,
    SmpcMultiply,
    SmpcReveal,
    SmpcRound,
    SmpcShare,
)
from .labels import Source
from .requests import Request, RequestStatus, new_request_id
from .snapshot import Snapshot
from .store import OWNER

if TYPE_CHECKING:
    from ..smpc.remote.party import Party, Sealed
    from .service import PeerService

MAX_COMPUTATIONS = 16  # one scientist's computations an owner keeps at once (oldest dropped)
MAX_USED_IDS = 100_000  # computation ids remembered (never reused), per owner
MAX_RESULTS = 100  # results revealed to this owner that it keeps


@dataclass(frozen=True)
class SecureComputationRule:
    """An owner's consent: computations whose parties are exactly ``parties`` (identity IDs,
    this owner's among them) with ``provider`` dealing; as a holder, only the published
    objects tagged (or named) ``data`` are secret-shared; only ``scientist``'s, if given."""

    data: str | None
    parties: frozenset[str]
    provider: str
    scientist: str | None = None


class SecureComputationRules:
    """``owner.secure_computation``: this owner's rules, the computation ids it has seen, and
    the results revealed to it (thread-safe)."""

    def __init__(self, identity: Identity):
        self.identity = identity
        self._rules: list[SecureComputationRule] = []
        self._used: OrderedDict[str, None] = OrderedDict()
        self._results: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Condition()
        self.listeners: list[Callable[[str, torch.Tensor], None]] = []

    def allow(
        self,
        data: str | None,
        *,
        parties: Collection[str],
        provider: str,
        scientist: str | None = None,
    ) -> SecureComputationRule:
        roster = frozenset(parties)
        me = self.identity.id
        if len(roster) != 3 or len(list(parties)) != 3:
            raise UsageError(
                "parties names the computation's three owners by identity ID (two share holders "
                f"and the crypto provider), each once; got {sorted(roster)}"
            )
        if me not in roster or provider not in roster:
            raise UsageError(
                f"parties lists this owner ({me}) and the provider ({provider}) among the three"
            )
        if provider == me and data is not None:
            raise UsageError(
                "this owner is the crypto provider: it deals triples and holds no share, so it "
                "names no dataset (data=None)"
            )
        if provider != me and not data:
            raise UsageError("name the dataset (its tag) this owner allows to be secret-shared")
        rule = SecureComputationRule(data, roster, provider, scientist)
        with self._lock:
            self._rules.append(rule)
        return rule

    def rule_for(
        self, parties: frozenset[str], provider: str, scientist: str
    ) -> SecureComputationRule:
        with self._lock:
            rules = list(self._rules)
        if not rules:
            raise NotAllowed(
                "this owner allows no secure computation: it refuses every secret-sharing message "
                "(the owner allows it with owner.allow_secure_computation(data, parties=[...], "
                "provider=...))"
            )
        for rule in rules:
            if rule.parties == parties and rule.provider == provider:
                if rule.scientist is not None and rule.scientist != scientist:
                    raise NotAllowed(
                        "this owner allows this secure computation to another scientist"
                    )
                return rule
        raise NotAllowed(
            f"this owner allows no secure computation among {sorted(parties)} with {provider} as "
            "the crypto provider (its rule names other parties or another provider)"
        )

    def use(self, computation: str) -> None:
        with self._lock:
            if computation in self._used:
                raise NotAllowed(
                    f"computation id {computation} was used before: each computation starts with "
                    "a fresh id (its keys, triples and names are never reused)"
                )
            self._used[computation] = None
            while len(self._used) > MAX_USED_IDS:
                self._used.popitem(last=False)

    # ---- results revealed to this owner
    def keep_result(self, name: str, value: torch.Tensor) -> None:
        with self._lock:
            self._results[name] = value
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
            self._lock.notify_all()
            listeners = list(self.listeners)
        for listener in listeners:
            listener(name, value)

    @property
    def results(self) -> dict[str, torch.Tensor]:
        """The results revealed to this owner, by the name the scientist gave the reveal."""
        with self._lock:
            return dict(self._results)

    def wait_for_result(self, name: str, *, timeout_secs: float) -> torch.Tensor | None:
        """The result revealed to this owner under ``name``, waiting at most ``timeout_secs``."""
        with self._lock:
            self._lock.wait_for(lambda: name in self._results, timeout_secs)
            return self._results.get(name)


@dataclass
class _Computation:
    rule: SecureComputationRule
    party: Party


class SmpcDesk:
    """One scientist's secure computations at this owner (``service``: its PeerService).
    Called on the scientist's worker thread; reveal decisions come from any thread."""

    def __init__(self, service: PeerService, rules: SecureComputationRules):
        self.service = service
        self.rules = rules
        self._computations: OrderedDict[str, _Computation] = OrderedDict()
        self._inline: list[Reply] | None = None
        # a reveal the owner decides by hand comes from its own thread, while the worker may be
        # computing on the same shares: one at a time (re-entrant: a handler decides inline)
        self._lock = threading.RLock()

    def handle(self, message: SmpcMessage, out_buffers: list[memoryview]) -> Reply | None:
        """The reply to one message, or None when a reveal waits for the owner's decision
        (the reply is sent when it is decided)."""
        with self._lock:
            return self._handle(message, out_buffers)

    def _handle(self, message: SmpcMessage, out_buffers: list[memoryview]) -> Reply | None:
        op = f"secure computation ({message.k.removeprefix('smpc_')})"
        try:
            if isinstance(message, SmpcKeys):
                value: object = self._keys(message)
            else:
                value = self._step(message, out_buffers)
                if value is _WAITING:
                    return None
                if isinstance(value, Reply):
                    return value
        except DuetError as exc:
            return self.service.error_reply(message.rid, exc, op)
        return Reply(rid=message.rid, value=Encoder(out_buffers).encode(value))

    def _account(self, nbytes: int) -> None:
        """Shares kept for this scientist count against its quota (values that depend on the
        owner's data): refused before they are kept when they would pass it."""
        quota = self.service.store.quota(self.service.peer)
        if nbytes > 0:
            quota.check(nbytes, True, "the shares of this secure computation")
        quota.add(nbytes, True)

    # ---- the steps
    def _keys(self, message: SmpcKeys) -> dict[str, str]:
        from ..smpc.remote.party import Party, Roster

        roster = Roster(message.computation, (message.holders[0], message.holders[1]),
                        message.provider, message.fractional_bits)  # fmt: skip
        parties = frozenset((*roster.holders, roster.provider))
        if len(parties) != 3:
            roster.check()  # the provider named as a holder, or one holder twice
            raise UsageError("a computation has three distinct parties")
        rule = self.rules.rule_for(parties, roster.provider, self.service.peer)
        self.rules.use(message.computation)
        party = Party(self.rules.identity, roster, account=self._account)
        self._computations[message.computation] = _Computation(rule, party)
        while len(self._computations) > MAX_COMPUTATIONS:
            _, oldest = self._computations.popitem(last=False)
            oldest.party.forget()
        return party.advertise()

    def _step(self, message: SmpcMessage, out_buffers: list[memoryview]) -> object:
        assert not isinstance(message, SmpcKeys)
        found = self._computations.get(message.computation)
        if found is None:
            raise UsageError(
                f"no computation {message.computation} here (start it with its keys; one that "
                "ended or was dropped is not resumed)"
            )
        party = found.party
        if isinstance(message, SmpcAgree):
            party.agree([k.model_dump() for k in message.keys])
            return "agreed"
        if isinstance(message, SmpcShare):
            return self._share(found, message)
        if isinstance(message, SmpcAccept):
            label = f"{party.other}'s input {message.result}"
            party.accept(message.result, message.shape, _sealed(message.sealed), label)
            return {"shape": message.shape}
        if isinstance(message, SmpcLocal):
            shape = party.local(message.op, message.inputs, message.result, message.scalar,
                                message.dim, message.start, message.length)  # fmt: skip
            return {"shape": shape}
        if isinstance(message, SmpcDeal):
            dealt = party.deal(message.triple, message.op, message.x_shape, message.y_shape)
            return [s.wire() for s in dealt]
        if isinstance(message, SmpcMask):
            sealed = party.mask(message.triple, message.op, message.x, message.y,
                                _sealed(message.dealing))  # fmt: skip
            return sealed.wire()
        if isinstance(message, SmpcMultiply):
            shape = party.multiply(message.triple, message.result, _sealed(message.opening))
            return {"shape": shape}
        if isinstance(message, SmpcCompareDeal):
            dealt = party.deal_comparison(message.comparison, message.part, message.op,
                                          message.shape)  # fmt: skip
            return [s.wire() for s in dealt]
        if isinstance(message, SmpcCompare):
            sealed = party.compare(message.comparison, message.op, message.x, message.result,
                                   message.part, message.parts, _sealed(message.dealing))  # fmt: skip
            return sealed.wire()
        if isinstance(message, SmpcRound):
            out = party.compare_round(message.comparison, message.part, _sealed(message.message))
            if out is None or isinstance(out, list):
                return {"shape": out}
            return out.wire()
        if isinstance(message, SmpcReveal):
            return self._reveal(found, message, out_buffers)
        assert isinstance(message, SmpcDrop)
        if message.tensors:
            party.drop(message.tensors)
        else:
            self._computations.pop(message.computation, None)
            party.forget()
        return "dropped"

    def _share(self, found: _Computation, message: SmpcShare) -> dict[str, object]:
        from ..smpc import ring

        rule, party = found.rule, found.party
        if party.role != "holder":
            raise NotAllowed("the crypto provider holds no data to share in this computation")
        entry = self.service.executor.visible(message.source)
        assert rule.data is not None
        if entry.owner != OWNER or (rule.data not in entry.tags and entry.id != rule.data):
            raise NotAllowed(
                f"object {message.source} is not under this owner's secure-computation rule: "
                f"only the dataset {rule.data!r} may be secret-shared"
            )
        value = entry.value
        label = rule.data
        if message.part is not None:
            if not isinstance(value, nn.Module):
                raise UsageError(f"part= names a parameter of a model; {rule.data!r} is not one")
            parameters = dict(value.named_parameters())
            if message.part not in parameters:
                raise UsageError(f"the model {rule.data!r} has no parameter {message.part!r}")
            value, label = parameters[message.part], f"{rule.data}.{message.part}"
        if not isinstance(value, torch.Tensor):
            raise UsageError(
                f"{rule.data!r} is a {type(value).__name__}: a tensor, or a model's parameter "
                "(part=), is secret-shared"
            )
        if message.rows is not None:
            start, stop = message.rows
            if value.dim() == 0 or not start < stop <= len(value):
                raise UsageError(f"rows {start}:{stop} are not rows of {rule.data!r}")
            value, label = value[start:stop], f"{label}[{start}:{stop}]"
        encoded = ring.encode(value.detach(), party.roster.fractional_bits)
        shape, sealed = party.split(message.result, encoded, label)
        return {"shape": shape, "sealed": sealed.wire()}

    def _reveal(
        self, found: _Computation, message: SmpcReveal, out_buffers: list[memoryview]
    ) -> object:
        rule, party = found.rule, found.party
        value = party.releasable(message.tensor)
        me = self.rules.identity.id
        if message.to == me:  # the other holder's share, sealed to this one: nothing leaves
            if message.sealed is None:
                raise UsageError("a reveal to this owner carries the other holder's share")
            result = party.combine(message.tensor, _sealed(message.sealed))
            self.rules.keep_result(message.name or message.tensor, result)
            if self.service.audit is not None:
                self.service.audit.record(
                    "smpc", scientist=self.service.peer, name=self.service.peer_name,
                    object_id=message.tensor, request_name=message.name,
                    reason=f"revealed to this owner: {value.expression[:200]}",
                )  # fmt: skip
            return {"shape": list(result.shape)}
        if message.to != "scientist" and message.to != party.other:
            raise NotAllowed(
                f"a result is revealed to the scientist or to the other share holder, not to "
                f"{message.to}"
            )
        if message.sealed is not None:
            raise UsageError("only a reveal to this owner carries a sealed share")
        assert rule.data is not None
        whom = "the scientist" if message.to == "scientist" else f"owner {message.to}"
        request = Request(
            reply=lambda r: self._decided(r, message, party),
            id=new_request_id(),
            name=message.name or message.tensor,
            reason=message.reason,
            object_id=f"smpc:{message.computation[:8]}:{message.tensor}",
            peer=self.service.peer,
            label=frozenset({Source("data", rule.data, frozenset({rule.data}))}),
            op=f"secure computation revealed to {whom}: {value.expression[:200]}",
            snapshot=Snapshot.of(value.share.clone()),
            scientist_name=self.service.peer_name,
        )
        releases = self.service.releases
        releases.record_request(request)
        self._inline = []
        try:
            releases.submit_request(request, message.timeout_secs)
        finally:
            inline, self._inline = self._inline, None
        if inline:  # a handler decided as it arrived
            reply = inline[0]
            if reply.status == "ok":  # encoded again into this frame's buffers
                return self._released(message, party, out_buffers)
            return reply
        return _WAITING

    def _decided(self, request: Request, message: SmpcReveal, party: Party) -> None:
        """The owner (or a handler) decided a reveal: reply from whichever thread decided.
        Only an acceptance touches the shares (under the lock); a timeout is decided on the
        network loop, which never waits for the worker."""
        if request.status is RequestStatus.ACCEPTED:
            with self._lock:
                self._decide(request, message, party)
        else:
            self._decide(request, message, party)

    def _decide(self, request: Request, message: SmpcReveal, party: Party) -> None:
        self.service.releases.release_hold(request)
        if request.status is RequestStatus.ACCEPTED:
            if self._inline is not None and self.service.on_worker():
                self._inline.append(Reply(rid=message.rid))
                return
            buffers: list[memoryview] = []
            try:
                value = self._released(message, party, buffers)
                reply = Reply(rid=message.rid, value=Encoder(buffers).encode(value))
            except DuetError as exc:
                reply = self.service.error_reply(message.rid, exc, "secure computation (reveal)")
            self.service.send_replies([reply], buffers)
            return
        note = "denied by the owner" if request.status is RequestStatus.DENIED else "timed out"
        if request.denial:
            note += f": {request.denial}"
        reply = Reply.model_validate({"rid": message.rid, "status": request.status.value,
                                      "note": f"reveal {request.name!r} {note}"})  # fmt: skip
        if self._inline is not None and self.service.on_worker():
            self._inline.append(reply)
            return
        self.service.send_replies([reply], [])

    def _released(self, message: SmpcReveal, party: Party, out_buffers: list[memoryview]) -> object:
        """What an accepted reveal lets out; the share is forgotten here (a get takes it)."""
        if message.to == "scientist":
            share = party.releasable(message.tensor).share
            party.drop([message.tensor])
            if self.service.audit is not None:
                self.service.audit.record(
                    "release", scientist=self.service.peer, name=self.service.peer_name,
                    object_id=message.tensor, value_kind="share", nbytes=share.numel() * 8,
                )  # fmt: skip
            return share
        sealed = party.seal_result(message.tensor, message.to)
        party.drop([message.tensor])
        return sealed.wire()


_WAITING = object()


def _sealed(wire: SealedWire) -> Sealed:
    from ..smpc.remote.party import Sealed

    try:
        nonce, ciphertext = bytes.fromhex(wire.nonce), bytes.fromhex(wire.ciphertext)
    except ValueError:
        raise ProtocolError("a sealed value relayed is not hex bytes") from None
    return Sealed(wire.sender, wire.receiver, nonce, ciphertext)


__all__ = ["SecureComputationRule", "SecureComputationRules", "SmpcDesk"]
