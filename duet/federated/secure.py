"""Secure aggregation of a federated round over the owners' duets (issue 20): the scientist
relays one round of ``duet.secure`` between the owners and learns the sum of their updates,
never one of them.

After each owner has trained the round's model through pointers (as any round does), its
trained model stays on its machine: instead of asking for it, the scientist drives the owners'
``OwnerRound`` state machines with four messages each (keys, key sharing, masked input,
unmasking; ``owner/secure_rounds.py`` answers them) and its own ``Aggregator``:

- every owner of the roster must give its keys and take the others' (the round aborts
  otherwise: a different roster is a different round to every owner);
- an owner that gives no masked input by the step's deadline (lost, killed, late) has dropped:
  the others reveal shares of its mask key, and the sum is of the survivors' updates, as long as
  at least ``threshold`` of them are left; below, the round aborts and nothing is revealed.

Each owner's update is ``samples * (trained - global)`` over the floating-point weights (the
owner scales by its own sample count), so the sum divided by the survivors' counts (released
as in any federation) is FedAvg's weighted mean of their deltas; within
``Quantiser.error_bound(survivors) / sum(samples)`` per weight, for updates under ``clip``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from ..errors import SecureAggregationAborted, UsageError
from ..protocol.messages import Message
from ..protocol.secagg_messages import (
    KeyAdvertisementWire,
    SealedShareWire,
    SecAggInput,
    SecAggKeys,
    SecAggShare,
    SecAggUnmask,
)
from ..secure import (
    Aggregator,
    KeyAdvertisement,
    Layout,
    MaskedInput,
    Quantiser,
    RoundSpec,
    UnmaskResponse,
    model_digest,
    threshold_against,
)
from ..sessions.aio import AsyncSession


@dataclass(frozen=True)
class SecureAggregation:
    """How a federation's rounds are aggregated securely (``Federation(...,
    secure_aggregation=SecureAggregation(...))``; ``True`` takes these defaults).

    ``clip``: the L2 norm each owner's update (``samples * (trained - global)``) is clipped to
    before it is quantised; ``fractional_bits``: its fixed point. ``threshold``: the fewest
    owners whose inputs unmask a round (default ``threshold_against(n)``, more than half; the
    owners may require more). ``step_timeout_secs``: how long each of the four steps waits for
    the owners (also bounded by the round's deadline); an owner that has not answered its
    masked input by then has dropped."""

    clip: float = 1e4
    fractional_bits: int = 16
    threshold: int | None = None
    step_timeout_secs: float = 60.0

    def spec(self, round_id: str, roster: tuple[str, ...], digest: bytes) -> RoundSpec:
        threshold = threshold_against(len(roster)) if self.threshold is None else self.threshold
        spec = RoundSpec(round_id, roster, digest, Quantiser(self.clip, self.fractional_bits),
                         threshold)  # fmt: skip
        spec.check()  # UsageError: fewer than 3 owners, a threshold out of range
        return spec


@dataclass
class SecureParty:
    """One owner in a secure round: its session, its proved identity ID, and the two of the
    scientist's objects at the owner the round names (the global model, the trained one)."""

    name: str
    aio: AsyncSession
    owner_id: str
    start: str
    trained: str


@dataclass
class SecureOutcome:
    """A secure round's result: the sum of the survivors' updates (float64, by weight name),
    the survivors (names), and the owners that dropped after key agreement, with why."""

    total: dict[str, torch.Tensor]
    survivors: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a secure round aggregates: the floating-point entries of the state."""
    return {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point()}


async def aggregate_securely(
    parties: list[SecureParty],
    global_model: nn.Module,
    settings: SecureAggregation,
    *,
    federation: str,
    round_id: str,
    left: Callable[[], float],
) -> SecureOutcome:
    """Run one round of secure aggregation between ``parties``. Raises
    SecureAggregationAborted (an owner's abort, one missing before key agreement, too few
    survivors: nothing is revealed), UsageError (settings)."""
    by_id = {p.owner_id: p for p in parties}
    if len(by_id) != len(parties) or "" in by_id:
        raise UsageError("secure aggregation needs each owner's proved identity, all distinct")
    start = float_state(global_model)
    spec = settings.spec(round_id, tuple(by_id), model_digest(start))
    layout = Layout.of(start)
    aggregator = Aggregator(spec, layout)
    fed, rnd = federation, round_id

    def step_secs() -> float:
        return max(0.0, min(settings.step_timeout_secs, left()))

    # round 0: every owner's keys, or no round
    keys = await _each(
        parties, step_secs(), "keys",
        lambda p: lambda rid: SecAggKeys(
            rid=rid, roster=list(spec.roster), threshold=spec.threshold, clip=float(settings.clip),
            fractional_bits=settings.fractional_bits, model=p.start, trained=p.trained, federation=fed, round_id=rnd,
        ),
    )  # fmt: skip
    _all_answered(keys, "gave no keys")
    ads = {p.owner_id: _advertisement(p, keys[p.name], round_id) for p in parties}
    aggregator.add_advertisements(ads.values())
    relayed = [_ad_wire(ad) for ad in ads.values()]

    # round 1: every owner's shares, sealed to each other owner
    shared = await _each(
        parties, step_secs(), "key sharing",
        lambda p: lambda rid: SecAggShare(rid=rid, advertisements=relayed, federation=fed, round_id=rnd),
    )  # fmt: skip
    _all_answered(shared, "shared no keys")
    shares: list[SealedShareWire] = []
    for party in parties:
        shares += _shares(party, shared[party.name])

    # round 2: the masked inputs; who gives none has dropped
    dropped: dict[str, str] = {}
    inputs = await _each(
        parties, step_secs(), "masked input",
        lambda p: lambda rid: SecAggInput(
            rid=rid, shares=[s for s in shares if s.receiver == p.owner_id], federation=fed, round_id=rnd
        ),
    )  # fmt: skip
    for party in parties:
        answer = inputs[party.name]
        if isinstance(answer, SecureAggregationAborted):
            raise answer
        if isinstance(answer, BaseException):
            dropped[party.name] = f"dropped after key agreement: {answer}"
            continue
        aggregator.add_masked_input(_masked(party, answer, round_id, layout.size))

    # round 3: the survivors reveal what removes the masks from the sum, and no more
    request = aggregator.unmask_request()  # aborts below the threshold
    survivors = [p for p in parties if p.owner_id in request.survivors]
    unmasked = await _each(
        survivors, step_secs(), "unmasking",
        lambda p: lambda rid: SecAggUnmask(
            rid=rid, survivors=list(request.survivors), dropped=list(request.dropped), federation=fed, round_id=rnd
        ),
    )  # fmt: skip
    for party in survivors:
        answer = unmasked[party.name]
        if isinstance(answer, SecureAggregationAborted):
            raise answer
        if not isinstance(answer, BaseException):
            aggregator.add_response(_response(party, answer, round_id))
    total = aggregator.result()  # aborts if fewer than threshold answered
    assert isinstance(total, dict)
    return SecureOutcome(total, [p.name for p in survivors], dropped)


async def _each(
    parties: list[SecureParty],
    timeout_secs: float,
    step: str,
    build: Callable[[SecureParty], Callable[[int], Message]],
) -> dict[str, object]:
    """Each party's answer to its message of ``step`` (or the exception instead), at once."""

    async def one(party: SecureParty) -> object:
        return await party.aio.exchange(
            build(party),
            timeout_secs=timeout_secs,
            what=f"secure aggregation ({step}) with {party.name}",
        )

    answers: list[object] = await asyncio.gather(*(one(p) for p in parties), return_exceptions=True)
    return {p.name: a for p, a in zip(parties, answers, strict=True)}


def _all_answered(answers: Mapping[str, object], what: str) -> None:
    for name, answer in answers.items():
        if isinstance(answer, SecureAggregationAborted):
            raise answer
        if isinstance(answer, BaseException):
            raise SecureAggregationAborted(
                f"{name} {what} ({answer}): every owner of the roster takes part until the keys "
                "are agreed", reason="roster",
            ) from answer  # fmt: skip


def _protocol(party: SecureParty, what: str) -> SecureAggregationAborted:
    return SecureAggregationAborted(f"{party.name} answered {what}", reason="protocol")


def _advertisement(party: SecureParty, value: object, round_id: str) -> KeyAdvertisement:
    try:
        wire = KeyAdvertisementWire.model_validate(value)
    except ValidationError:
        raise _protocol(party, "keys that are not keys") from None
    if wire.owner != party.owner_id:
        raise SecureAggregationAborted(
            f"{party.name} (identity {party.owner_id}) answered with {wire.owner}'s keys",
            reason="signature",
        )
    return KeyAdvertisement(
        round_id=round_id, owner=wire.owner, identity_key=bytes.fromhex(wire.identity_key),
        cipher_key=bytes.fromhex(wire.cipher_key), mask_key=bytes.fromhex(wire.mask_key),
        seed_commitment=bytes.fromhex(wire.seed_commitment),
        round_digest=bytes.fromhex(wire.round_digest),
        model_digest=bytes.fromhex(wire.model_digest), signature=bytes.fromhex(wire.signature),
    )  # fmt: skip


def _ad_wire(ad: KeyAdvertisement) -> KeyAdvertisementWire:
    return KeyAdvertisementWire(
        owner=ad.owner, identity_key=ad.identity_key.hex(), cipher_key=ad.cipher_key.hex(),
        mask_key=ad.mask_key.hex(), seed_commitment=ad.seed_commitment.hex(),
        round_digest=ad.round_digest.hex(), model_digest=ad.model_digest.hex(),
        signature=ad.signature.hex(),
    )  # fmt: skip


def _shares(party: SecureParty, value: object) -> list[SealedShareWire]:
    if not isinstance(value, list) or len(value) > 1000:
        raise _protocol(party, "shares that are not a list")
    try:
        shares = [SealedShareWire.model_validate(s) for s in value]
    except ValidationError:
        raise _protocol(party, "shares that are not sealed shares") from None
    if any(s.sender != party.owner_id for s in shares):
        raise _protocol(party, "shares in another owner's name")
    return shares


def _masked(party: SecureParty, value: object, round_id: str, size: int) -> MaskedInput:
    if not isinstance(value, dict) or value.get("owner") != party.owner_id:
        raise _protocol(party, "a masked input not its own")
    values, masked_with = value.get("values"), value.get("masked_with")
    if not isinstance(values, np.ndarray) or values.dtype != np.uint64 or values.shape != (size,):
        raise _protocol(party, f"a masked input that is not {size} elements of Z(2^64)")
    if not isinstance(masked_with, list) or not all(isinstance(o, str) for o in masked_with):
        raise _protocol(party, "a masked input without the owners it masked with")
    return MaskedInput(round_id, party.owner_id, tuple(masked_with), values)


def _response(party: SecureParty, value: object, round_id: str) -> UnmaskResponse:
    if not isinstance(value, dict) or value.get("owner") != party.owner_id:
        raise _protocol(party, "an unmasking not its own")
    index, seeds, keys = value.get("index"), value.get("seed_shares"), value.get("key_shares")
    if type(index) is not int or not isinstance(seeds, dict) or not isinstance(keys, dict):
        raise _protocol(party, "an unmasking without its shares")
    try:
        return UnmaskResponse(
            round_id, party.owner_id, index,
            {str(k): bytes.fromhex(v) for k, v in seeds.items()},
            {str(k): bytes.fromhex(v) for k, v in keys.items()},
        )  # fmt: skip
    except (TypeError, ValueError):
        raise _protocol(party, "shares that are not hex") from None


def averaged(
    global_model: nn.Module, outcome: SecureOutcome, samples: int
) -> dict[str, torch.Tensor]:
    """The next global state: the global weights plus the survivors' summed updates divided
    by their sample count (FedAvg's weighted mean); other entries as they were."""
    state = {}
    for key, value in global_model.state_dict().items():
        if key in outcome.total:
            delta = outcome.total[key] / samples
            state[key] = (value.double() + delta).to(value.dtype)
        else:
            state[key] = value.detach().clone()
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        raise SecureAggregationAborted("the unmasked sum is not finite", reason="shares")
    return state


def check_settings(value: object, owners: int) -> SecureAggregation | None:
    """``Federation(secure_aggregation=)`` read: False/None, True, or SecureAggregation."""
    if value is False or value is None:
        return None
    settings = SecureAggregation() if value is True else value
    if not isinstance(settings, SecureAggregation):
        raise UsageError(
            f"secure_aggregation is True or a sy.federated.SecureAggregation, not {value!r}"
        )
    if not (math.isfinite(settings.step_timeout_secs) and settings.step_timeout_secs > 0):
        raise UsageError("step_timeout_secs must be more than 0")
    settings.spec("check", tuple(f"owner-{i}" for i in range(owners)), b"")  # UsageError early
    return settings


__all__ = [
    "SecureAggregation",
    "SecureOutcome",
    "SecureParty",
    "aggregate_securely",
    "averaged",
    "check_settings",
    "float_state",
]
