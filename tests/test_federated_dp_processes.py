"""Federated DP-SGD over real duets (issue 19, seed 004): a signaling server and three owner
processes on 127.0.0.1, each holding a disjoint shard of scikit-learn's digits and a privacy
budget for this test process, the scientist. Each owner allows the federation only as DP jobs
(``allow_federated_training(..., dp=...)``); each round every owner runs one under its budget.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from duet import federated as fl
from duet import privacy
from duet.federated import Outcome

from .peers.digits_shards import digits
from .processes import UNIT
from .test_federated_dp import Recording
from .test_federated_processes import Owners, accuracy_on

torch.set_num_threads(1)
# each owner's 479 digits in batches of 32: sample rate 1/15, 15 steps a round, epsilon 2.32 a
# round, two rounds composed 2.82
DP = fl.DpRound(noise_multiplier=1.1, max_grad_norm=1.0, batch_size=32, epochs=1, lr=0.5)
BUDGETS = {"north": 10.0, "south": 10.0, "poor": 2.5}  # poor: room for one round, not two


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.stop()


def ledger(owners: Owners, name: str) -> dict:
    """The owner process's word on this scientist's budget and every charge in its ledger."""
    owners.processes[name].send("privacy")
    return owners.processes[name].event("event", "privacy", UNIT)


@pytest.mark.timeout(240)
def test_dp_rounds_spend_each_owners_budget_and_leave_out_the_one_that_is_spent(owners):
    owners.start(list(BUDGETS), **{name: ["--dp", str(e)] for name, e in BUDGETS.items()})
    sessions = owners.join()
    _, _, test_x, test_y = digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    recording = Recording()
    fed = fl.Federation(
        model, sessions, data="digits", dp=DP, strategy=recording, min_owners=2, show="none",
        evaluate=accuracy_on(test_x, test_y), round_timeout_secs=3 * UNIT,
    )  # fmt: skip
    states = []
    fed.on_round = lambda _: states.append({k: v.clone() for k, v in model.state_dict().items()})
    history = fed.fit(rounds=2)
    first, second = history
    print("\n".join(r.summary() for r in history))

    assert first.counted and first.included == ["north", "south", "poor"], first.summary()
    assert second.counted and second.included == ["north", "south"], second.summary()
    poor = second.owners["poor"]
    assert poor.outcome is Outcome.OVER_BUDGET and poor.epsilon is None
    assert re.search(r"needs epsilon [\d.]+, 0\.\d+ left at delta 1e-05", poor.reason), poor
    assert "budget 2.5" in poor.reason
    # the global model: the released DP weights, each owner's weighted by its sample count
    for updates, state in zip(recording.rounds, states, strict=True):
        total = sum(u.samples for u in updates)
        for key, value in state.items():
            expected = sum(u.samples * u.state[key] for u in updates) / total
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert sum(u.samples for u in recording.rounds[0]) == len(digits()[1])
    # epsilon per owner per round is what each owner's ledger says was spent
    for name, budget in BUDGETS.items():
        said = ledger(owners, name)
        results = [r.owners[name] for r in history if r.owners[name].included]
        charges = said["charges"]
        assert [c["state"] for c in charges] == ["committed"] * len(results), charges
        for result, charge in zip(results, charges, strict=True):
            job = json.loads(charge["mechanism"])
            priced = privacy.rdp_epsilon(
                noise_multiplier=job["noise_multiplier"], sample_rate=job["sample_rate"],
                steps=job["steps"], delta=1e-5,
            )  # fmt: skip
            assert result.epsilon == pytest.approx(priced, rel=1e-9)
        assert said["budget"]["epsilon"] == budget
        assert said["budget"]["spent"] == pytest.approx(sum(r.charged for r in results))
        assert said["budget"]["remaining"] == pytest.approx(results[-1].remaining)
        assert said["pending"] == []
    epsilons = history.epsilon()
    assert epsilons["poor"][1] is None
    assert epsilons["north"][0] == pytest.approx(2.3179, abs=1e-3) == epsilons["south"][1]
    assert second.metrics["accuracy"] > 0.3  # 360 held-out digits; chance: 10%
    # every release was a DP job's, decided by the budget: the only request, the sample count
    for name in BUDGETS:
        assert owners.decisions(name) == [("federated samples", "accepted")]


@pytest.mark.timeout(120)
def test_a_raw_update_request_under_a_dp_only_federation_waits_for_the_owner(owners):
    owners.start(["north"], north=["--dp", "10"])
    session = owners.join()["north"]
    x, y = session.store["digits"][0]  # one of the owner's digits
    model = nn.Linear(64, 10).send(session)
    optimizer = session.torch.optim.SGD(model.parameters(), lr=0.1)
    loss = session.torch.nn.functional.cross_entropy(model(x.unsqueeze(0)), y.unsqueeze(0))
    loss.backward()
    optimizer.step()
    handles = [
        model.request(name="federated round 1 update", timeout_secs=2),
        loss.item().request(name="federated round 1 loss", timeout_secs=2),
    ]
    with pytest.warns(UserWarning, match="timed out"):
        assert [h.wait(timeout_secs=UNIT) for h in handles] == [None, None]
    said = ledger(owners, "north")
    assert said["charges"] == [] and said["pending"] == []
    assert owners.decisions("north") == [
        ("federated round 1 update", "timeout"), ("federated round 1 loss", "timeout")
    ]  # fmt: skip
