"""Secure aggregation over duets in one process (issue 20): owners joined over in-memory channels
(real frames), each allowing the federation only with secure aggregation; the owners' side of
each round (``owner/secure_rounds.py``) and the scientist's (``federated/secure.py``), the
wire messages' bounds, and the rules' misuse."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import duet as sy
from duet import federated as fl
from duet.errors import (
    NotAllowed,
    ProtocolError,
    SecureAggregationAborted,
    UsageError,
    error_from_wire,
)
from duet.federated import Outcome
from duet.owner import secure_rounds
from duet.protocol.messages import unpack_header
from duet.protocol.secagg_messages import SecAggKeys
from duet.runtime import run
from duet.sessions.aio import AsyncSession

from .owner_pairs import OwnerPairs

torch.set_num_threads(1)
SECS = 60
NAMES = ["a", "b", "c"]
TRAINING = fl.LocalTraining(epochs=1, batch_size=16, optimizer_options={"lr": 0.1})


def blobs(n: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return torch.utils.data.TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class Owners(OwnerPairs):
    """Three in-process owners publishing "data"; ``allow(roster)`` lets each take part."""

    def __init__(self, sizes=(40, 50, 60)) -> None:
        super().__init__()
        for i, (name, n) in enumerate(zip(NAMES, sizes, strict=True)):
            owner = sy.OwnerSession()
            owner.publish(blobs(n, i), tags=["data"], description=f"{name}'s data")
            _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("scientist"))
            self.owners[name], self.sessions[name] = owner, scientist

    @property
    def ids(self) -> list[str]:
        return [o.identity.id for o in self.owners.values()]

    def allow(self, rosters: dict[str, list[str]] | None = None) -> None:
        for name, owner in self.owners.items():
            fl.allow_federated_training(
                owner, "data", model_elements=1000, secure_aggregation=True,
                owners=(rosters or {}).get(name, self.ids),
            )  # fmt: skip


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.close()


@pytest.fixture
def updates(monkeypatch):
    """Every update an owner fixes for a round (samples * (trained - global)), as it fixes it."""
    fixed: list[dict] = []
    original = secure_rounds._update

    def keep(start, trained, rule, samples):
        update = original(start, trained, rule, samples)
        fixed.append({"update": update, "samples": samples})
        return update

    monkeypatch.setattr(secure_rounds, "_update", keep)
    return fixed


def test_a_secure_round_gives_fedavg_of_the_owners_updates_within_the_quantisation_bound(
    owners, updates
):
    owners.allow()
    global_model = model()
    before = {k: v.clone() for k, v in global_model.state_dict().items()}
    settings_ = fl.SecureAggregation(clip=100.0)
    fed = fl.Federation(
        global_model, owners.sessions, data="data", training=TRAINING, show="none",
        secure_aggregation=settings_, round_timeout_secs=SECS,
    )  # fmt: skip
    (report,) = fed.fit(rounds=1)
    assert report.counted and report.secure and report.included == NAMES, report.summary()
    assert "securely aggregated" in report.summary()
    assert sorted(r["samples"] for r in updates) == [40, 50, 60]  # in the order they came
    bound = 3 / 2**16 / 150
    for key, value in global_model.state_dict().items():
        expected = before[key].double() + sum(u["update"][key] for u in updates) / 150
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=bound + 1e-6)
    assert not torch.equal(global_model.state_dict()["0.weight"], before["0.weight"])
    assert fed.history.rows()[0]["secure"] is True
    for owner in owners.owners.values():  # released without a request, but the sample count
        assert [r.name for r in owner.requests.history] == ["federated samples"]
        (masked,) = [
            e for e in owner.audit.events("release") if e.get("value_kind") == "masked update"
        ]
        assert masked["nbytes"] == 8 * 58 and "secure aggregation rule" in masked["decided_by"]


def test_owners_told_another_roster_abort_the_round_and_nothing_is_aggregated(owners):
    stranger = sy.Identity.ephemeral("owner").id
    told = [*owners.ids[:2], stranger]  # a and b were told of a stranger, not of c
    owners.allow({"a": told, "b": told})
    global_model = model()
    before = {k: v.clone() for k, v in global_model.state_dict().items()}
    fed = fl.Federation(
        global_model, owners.sessions, data="data", training=TRAINING, show="none",
        secure_aggregation=True, round_timeout_secs=SECS,
    )  # fmt: skip
    (report,) = fed.fit(rounds=1)
    assert not report.counted and "(roster)" in report.note and stranger in report.note
    assert all(r.outcome is Outcome.ABORTED for r in report.owners.values())
    assert all(torch.equal(v, before[k]) for k, v in global_model.state_dict().items())


def test_an_owner_without_the_rule_refuses_secure_messages_naming_the_operation(owners):
    session = owners.sessions["a"]
    aio = AsyncSession(session)
    roster = owners.ids

    async def keys():
        return await aio.exchange(
            lambda rid: SecAggKeys(
                rid=rid, federation="federated", round_id="r1", roster=roster, threshold=2,
                clip=1.0, fractional_bits=16, model="m", trained="t",
            ),
            timeout_secs=SECS, what="keys",
        )  # fmt: skip

    with pytest.raises(NotAllowed, match=r"secure aggregation \(keys, round 'r1'\).*'federated'"):
        run(keys(), timeout_secs=SECS, what="keys")
    owners.allow()
    with pytest.raises(UsageError, match=r"object m does not exist|not a model"):
        run(keys(), timeout_secs=SECS, what="keys")


def test_allowing_secure_aggregation_wrongly_is_a_usage_error_naming_the_fix(owners):
    owner = owners.owners["a"]
    with pytest.raises(UsageError, match="needs owners="):
        fl.allow_federated_training(owner, "data", model_elements=10, secure_aggregation=True)
    with pytest.raises(UsageError, match="add secure_aggregation=True"):
        fl.allow_federated_training(owner, "data", model_elements=10, owners=owners.ids)
    with pytest.raises(UsageError, match=r"this one .* among them"):
        fl.allow_federated_training(
            owner, "data", model_elements=10, secure_aggregation=True, owners=owners.ids[1:]
        )
    with pytest.raises(UsageError, match="min_owners is at least 3"):
        fl.allow_federated_training(
            owner, "data", model_elements=10, secure_aggregation=True, owners=owners.ids,
            min_owners=2,
        )  # fmt: skip
    assert owner.requests.handlers == []  # a refused rule adds no handler
    with pytest.raises(UsageError, match="at least 3 owners"):
        fl.Federation(model(), dict(list(owners.sessions.items())[:2]), data="data",
                      secure_aggregation=True)  # fmt: skip
    with pytest.raises(UsageError, match=r"True or a sy\.federated\.SecureAggregation"):
        fl.Federation(model(), owners.sessions, data="data", secure_aggregation="yes")


def test_an_owners_abort_crosses_the_wire_as_itself_with_its_reason():
    error = error_from_wire(
        "secure_aggregation_aborted",
        "secure aggregation aborted (both_kinds): owner 3fa2: asked to reveal both",
        op="secure aggregation (unmasking, round 'r')", remote_type=None,
    )  # fmt: skip
    assert isinstance(error, SecureAggregationAborted) and error.reason == "both_kinds"
    assert str(error).startswith("secure aggregation (unmasking, round 'r'): ")


SECAGG_FIELDS = st.dictionaries(
    st.sampled_from(["federation", "round_id", "roster", "threshold", "clip", "fractional_bits",
                     "model", "trained", "advertisements", "shares", "survivors", "dropped",
                     "extra"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
    | st.lists(st.text(alphabet="0123456789abcdef-", max_size=70) | st.integers()
               | st.dictionaries(st.sampled_from(["owner", "sender", "receiver", "nonce",
                                                  "ciphertext", "signature"]),
                                 st.text(alphabet="0123456789abcdef", max_size=130)),
               max_size=4),
    max_size=9,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["secagg_keys", "secagg_share", "secagg_input", "secagg_unmask"]),
    fields=SECAGG_FIELDS,
)
def test_any_secure_aggregation_message_validates_into_bounded_fields_or_is_a_protocol_error(
    kind, fields
):
    header = json.dumps([{"k": kind, "rid": 1, **fields}]).encode()
    try:
        (message,) = unpack_header(header)
    except ProtocolError:
        return
    dumped = json.dumps(message.model_dump())
    assert len(dumped) < 200_000
    for value in message.model_dump().values():
        if isinstance(value, list):
            assert len(value) <= 100
        if isinstance(value, float):
            assert 0 < value <= 1e12


def test_an_owner_gives_one_trained_models_update_once_whatever_the_round_starts_from(owners):
    owners.allow()
    fed = fl.Federation(
        model(), owners.sessions, data="data", training=TRAINING, show="none",
        secure_aggregation=True, round_timeout_secs=SECS,
    )  # fmt: skip
    assert fed.fit(rounds=1)[-1].counted
    member = fed.members[0]
    assert member.secure_objects is not None
    _, trained = member.secure_objects
    other_start = member.session.send_value(model().requires_grad_(False).float())
    roster = owners.ids

    async def keys():  # the same trained weights again, against another global model
        return await member.aio.exchange(
            lambda rid: SecAggKeys(
                rid=rid, federation="federated", round_id="again", roster=roster, threshold=2,
                clip=1e4, fractional_bits=16, model=other_start.id, trained=trained,
            ),
            timeout_secs=SECS, what="keys",
        )  # fmt: skip

    with pytest.raises(SecureAggregationAborted, match="given to an earlier round") as caught:
        run(keys(), timeout_secs=SECS, what="keys")
    assert caught.value.reason == "replay"


def test_a_trained_model_that_depends_on_data_the_rule_does_not_name_is_refused(owners):
    """A hostile scientist names, as the trained model, one computed from a dataset the rule
    does not name: refused before any key is given, nothing released."""
    owners.allow()
    owner, session = owners.owners["a"], owners.sessions["a"]
    owner.publish(torch.ones(8, 4), tags=["secret"], description="not in the rule")
    clean = model().send(session)
    dirty = model().send(session)
    with torch.no_grad():
        next(iter(dirty.parameters())).add_(session.store["secret"])
    session.sync()
    start, tainted = clean.id, dirty.id
    aio = AsyncSession(session)

    async def keys(trained: str):
        return await aio.exchange(
            lambda rid: SecAggKeys(
                rid=rid, federation="federated", round_id=f"r-{trained}", roster=owners.ids,
                threshold=2, clip=1e4, fractional_bits=16, model=start, trained=trained,
            ),
            timeout_secs=SECS, what="keys",
        )  # fmt: skip

    with pytest.raises(NotAllowed, match="depends on more than the dataset 'data'"):
        run(keys(tainted), timeout_secs=SECS, what="keys")
    assert owner.audit.events("release") == []
