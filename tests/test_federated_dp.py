"""Federated DP-SGD in one process (issue 19, seed 004): each owner's round is a DP job under
that owner's privacy budget. Owners are joined over in-memory channels (real frames), each with
a ledger of its own, so what the federation reports is checked against each owner's ledger and
the global model against the weights the owners released."""

from __future__ import annotations

import asyncio
import json
import math
import re

import pytest
import torch
from torch import nn

import duet as sy
from duet import federated as fl
from duet import privacy
from duet.federated import Outcome
from duet.runtime import run
from duet.sessions.aio import AsyncSession

from .owner_pairs import OwnerPairs

torch.set_num_threads(1)
SECS = 60
SETTINGS = dict(max_grad_norm=1.0, batch_size=20, epochs=1, lr=0.5, noise_multiplier=1.5)


def blobs(n: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return torch.utils.data.TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


class Owners(OwnerPairs):
    """In-process owners publishing "data", each with its own ledger; closed at the end."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        super().__init__()
        self.ids: dict[str, str] = {}

    def add(self, name: str, n: int, *, epsilon: float | None = 10.0) -> sy.OwnerSession:
        owner = sy.OwnerSession(privacy_ledger=self.tmp_path / f"{name}.sqlite3")
        owner.publish(blobs(n, len(self.owners)), tags=["data"], description=f"{name}'s data")
        if epsilon is not None:
            budget = fl.PrivacyBudget(epsilon=epsilon, delta=1e-5)
            fl.allow_federated_training(owner, "data", dp=budget)
        identity = sy.Identity.ephemeral("scientist")
        _, scientist = sy.duet_pair(owner=owner, identity=identity)
        self.owners[name], self.sessions[name], self.ids[name] = owner, scientist, identity.id
        return owner


@pytest.fixture
def owners(tmp_path):
    made = Owners(tmp_path)
    yield made
    made.close()


class Recording(fl.FedAvg):
    """FedAvg that keeps every round's updates: the weights each owner released."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[list[fl.Update]] = []

    def aggregate(self, global_state, updates):
        self.rounds.append(list(updates))
        return super().aggregate(global_state, updates)


def test_async_privacy_trains_quotes_and_reports_the_budget_on_one_session(owners):
    owner = owners.add("a", 100, epsilon=None)
    owner.privacy.set_budget("*", "data", epsilon=3.0, delta=1e-5)
    aio = AsyncSession(owners.sessions["a"])
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    settings = dict(data="data", **SETTINGS)

    async def scenario():
        quote = await aio.privacy.quote("train", model, timeout_secs=SECS, **settings)
        job = aio.privacy.submit(model, **settings)
        trained, epsilon = await job.wait(timeout_secs=SECS)
        left = await aio.privacy.budget("data", timeout_secs=SECS)
        with pytest.raises(sy.BudgetExceeded, match=r"needs epsilon \d[\d.]*, [\d.]+ left at"):
            await aio.privacy.train(model, timeout_secs=SECS, **{**settings, "epochs": 50})
        return quote, job, trained, epsilon, left

    quote, job, trained, epsilon, left = run(scenario(), timeout_secs=2 * SECS, what="the test")
    assert isinstance(trained, nn.Linear) and trained is not model
    assert epsilon == pytest.approx(quote["epsilon"], rel=1e-9)
    assert job.progress == "DP training: step 5 of 5" and job.result["charged"] == quote["charge"]
    assert left["spent"] == pytest.approx(job.result["charged"])
    assert left["remaining"] == pytest.approx(3.0 - job.result["charged"])
    assert len(owner.requests) == 0  # the budget decided, no request


def test_dp_rounds_average_the_released_weights_and_report_epsilon_per_owner_and_round(owners):
    owners.add("north", 100)
    owners.add("south", 60)
    owners.add("poor", 80, epsilon=3.0)  # room for one round's job (2.48), not two (3.22)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    recording = Recording()
    fed = fl.Federation(
        model, owners.sessions, data="data", dp=fl.DpRound(**SETTINGS), strategy=recording,
        min_owners=2, show="none", round_timeout_secs=SECS,
    )  # fmt: skip
    first = asyncio.run(fed.run_round())
    after_first = {k: v.clone() for k, v in model.state_dict().items()}
    second = asyncio.run(fed.run_round())

    assert first.included == ["north", "south", "poor"], first.summary()
    assert second.included == ["north", "south"] and second.counted, second.summary()
    poor = second.owners["poor"]
    assert poor.outcome is Outcome.OVER_BUDGET and poor.epsilon is None
    assert re.search(r"needs epsilon [\d.]+, [\d.]+ left at delta 1e-05", poor.reason), poor
    assert "budget 3" in poor.reason and "poor (over budget: " in second.summary()
    # the global model: the released DP weights, weighted by each owner's sample count
    for updates, state in zip(recording.rounds, [after_first, model.state_dict()], strict=True):
        total = sum(u.samples for u in updates)
        for key, value in state.items():
            expected = sum(u.samples * u.state[key] for u in updates) / total
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert [u.samples for u in recording.rounds[0]] == [100, 60, 80]
    # epsilon per owner per round, as each owner's ledger has it
    history = fed.history
    for name, owner in owners.owners.items():
        results = [r.owners[name] for r in history if r.owners[name].included]
        standing = owner.privacy.budget(owners.ids[name], "data")
        assert standing["spent"] == pytest.approx(sum(r.charged for r in results), rel=1e-9)
        assert results[-1].remaining == pytest.approx(standing["remaining"], rel=1e-9)
        charges = owner.privacy.history()
        assert [c["state"] for c in charges] == ["committed"] * len(results)
        for result, charge in zip(results, charges, strict=True):
            job = json.loads(charge["mechanism"])
            epsilon = privacy.rdp_epsilon(
                noise_multiplier=job["noise_multiplier"], sample_rate=job["sample_rate"],
                steps=job["steps"], delta=1e-5,
            )  # fmt: skip
            assert result.epsilon == pytest.approx(epsilon, rel=1e-9)
        assert len(owner.requests) == 0  # the sample count by its handler, the jobs by budget
    eps = history.epsilon()
    assert eps["poor"][1] is None and all(e is not None for e in eps["north"] + eps["south"])
    assert eps["north"][0] == pytest.approx(eps["north"][1])  # the same job: the same price
    # two jobs compose below the sum of their epsilons
    north = owners.owners["north"].privacy.budget(owners.ids["north"], "data")
    assert max(eps["north"]) < north["spent"] < sum(eps["north"])
    frame = history.pandas
    assert {"epsilon", "charged", "remaining"} <= set(frame.columns)
    assert "epsilon north" in first.summary() and "DP" in repr(history)


def test_a_raw_update_request_under_a_dp_only_federation_waits_for_the_owner(owners):
    """A scientist that trains through pointers and asks for the model, or a loss, by the
    federation's names gets nothing automatically: only DP jobs release updates."""
    owner = owners.add("a", 40)
    assert [h.name for h in owner.requests.handlers] == ["federated samples"]
    scientist = owners.sessions["a"]
    x, y = scientist.store["data"][0]  # one of the owner's rows
    model = nn.Linear(4, 2).send(scientist)
    optimizer = scientist.torch.optim.SGD(model.parameters(), lr=0.1)
    loss = scientist.torch.nn.functional.cross_entropy(model(x.unsqueeze(0)), y.unsqueeze(0))
    loss.backward()
    optimizer.step()
    handles = [
        model.request(name="federated round 1 update", timeout_secs=1),
        loss.item().request(name="federated round 1 loss", timeout_secs=1),
    ]
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert [h.wait(timeout_secs=SECS) for h in handles] == [None, None]
    asked = [r for r in owner.requests.history if r.name.startswith("federated round 1")]
    assert [r.decided_by for r in asked] == ["timeout", "timeout"], asked
    assert owner.privacy.history() == []  # and nothing was charged


def test_dp_settings_are_refused_before_any_round(owners, tmp_path):
    assert {"DpRound", "PrivacyBudget"} <= set(fl.__all__) and sy.federated is fl
    assert issubclass(sy.BudgetExceeded, sy.QuotaExceeded) and "BudgetExceeded" in sy.__all__
    with pytest.raises(sy.UsageError, match="exactly one of noise_multiplier and epsilon"):
        fl.DpRound(max_grad_norm=1.0, batch_size=8, noise_multiplier=1.0, epsilon=1.0)
    with pytest.raises(sy.UsageError, match="DpRound: lr"):
        fl.DpRound(max_grad_norm=1.0, batch_size=8, noise_multiplier=1.0, lr=-1)
    with pytest.raises(sy.UsageError, match="delta is between 0 and 1"):
        fl.PrivacyBudget(epsilon=1.0, delta=2)
    owners.add("a", 20)
    dp = fl.DpRound(max_grad_norm=1.0, batch_size=8, epsilon=1.0)
    with pytest.raises(sy.UsageError, match="not both"):
        fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", dp=dp,
                      training=fl.LocalTraining())  # fmt: skip
    with pytest.raises(sy.UsageError, match="FedProx"):
        fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", dp=dp,
                      strategy=fl.FedProx(mu=0.1))  # fmt: skip
    other = sy.OwnerSession(privacy_ledger=tmp_path / "other.sqlite3")
    try:
        with pytest.raises(sy.UsageError, match="give no model or model_elements"):
            fl.allow_federated_training(other, "data", model_elements=10, dp=True)
        with pytest.raises(sy.UsageError, match="model_elements is the number of weights"):
            fl.allow_federated_training(other, "data")
        assert other.requests.handlers == []
    finally:
        other.close()
    assert math.isfinite(dp.epsilon or 0)


def test_a_round_priced_by_epsilon_has_each_owner_pick_the_noise(owners):
    owners.add("a", 100)
    owners.add("b", 40)
    dp = fl.DpRound(epsilon=1.0, max_grad_norm=1.0, batch_size=20, lr=0.5)
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", dp=dp, show="none")
    report = asyncio.run(fed.run_round())
    assert report.included == ["a", "b"], report.summary()
    for result in report.owners.values():  # the noise that spends at most 1.0 on its data
        assert 0.9 < result.epsilon <= 1.0 and result.charged == pytest.approx(result.epsilon)


def test_an_owner_without_a_budget_or_refusing_the_job_is_left_out_with_the_reason(owners):
    owners.add("no budget", 40, epsilon=None)  # its sample count handler, no budget: fail closed
    fl.allow_federated_training(owners.owners["no budget"], "data", dp=True)
    owners.add("a", 40)
    dp = fl.DpRound(noise_multiplier=1.0, max_grad_norm=1.0, batch_size=8)
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", dp=dp, show="none")
    report = asyncio.run(fed.run_round())
    assert report.counted and report.included == ["a"]
    skipped = report.owners["no budget"]
    assert skipped.outcome is Outcome.OVER_BUDGET and "set no privacy budget" in skipped.reason
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))  # not for Opacus
    fed = fl.Federation(model, {"a": owners.sessions["a"]}, data="data", dp=dp, show="none")
    refused = asyncio.run(fed.run_round()).owners["a"]
    assert refused.outcome is Outcome.REFUSED and "Opacus would replace layers" in refused.reason
    assert len(owners.owners["a"].privacy.history()) == 1  # refused before any charge
