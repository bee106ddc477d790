"""sy.federated in one process: owners joined over in-memory channels (real frames), so rounds
are checked exactly against the same training done locally, and every way an owner can leave a
round (denied, undecided, late, busy, failed) is exercised without the network."""

from __future__ import annotations

import asyncio
import copy
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import duet as sy
from duet import federated as fl
from duet.federated import Outcome

from .owner_pairs import OwnerPairs

torch.set_num_threads(1)


class Owners(OwnerPairs):
    """In-process owners, each publishing a dataset tagged "data"; closed at the end."""

    def __init__(self) -> None:
        super().__init__()

    def add(self, name: str, dataset: torch.utils.data.Dataset, *, allow: bool = True, **kw):
        owner, scientist = sy.duet_pair()
        owner.publish(dataset, tags=["data"], description=f"{name}'s data")
        if allow:
            fl.allow_federated_training(owner, "data", model_elements=10_000, **kw)
        self.owners[name], self.sessions[name] = owner, scientist
        return owner


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.close()


def blobs(n: int, seed: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return torch.utils.data.TensorDataset(x, (x[:, 0] + x[:, 1] > 0).long())


def train_locally(model, dataset, *, lr, batch_size, epochs=1, mu=0.0):
    """What an owner runs, done here: SGD over unshuffled batches (with FedProx's term)."""
    model = copy.deepcopy(model)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for _ in range(epochs):
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            if mu:
                loss = loss + fl.proximal_term(list(model.parameters()), start, mu)
            loss.backward()
            optimizer.step()
    return model.state_dict()


def training(**kw) -> fl.LocalTraining:
    settings = dict(batch_size=4, shuffle=False, optimizer_options={"lr": 0.1})
    return fl.LocalTraining(**{**settings, **kw})


def test_a_fedavg_round_is_the_sample_weighted_average_of_the_owners_local_training(owners):
    data = {"a": blobs(12, 1), "b": blobs(20, 2)}
    for name, dataset in data.items():
        owners.add(name, dataset)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    start = copy.deepcopy(model)
    fed = fl.Federation(model, owners.sessions, data="data", training=training(), show="none")
    report = asyncio.run(fed.run_round())

    assert report.counted and report.included == ["a", "b"]
    assert {n: r.samples for n, r in report.owners.items()} == {"a": 12, "b": 20}
    local = {name: train_locally(start, d, lr=0.1, batch_size=4) for name, d in data.items()}
    for key, value in model.state_dict().items():
        expected = (12 * local["a"][key] + 20 * local["b"][key]) / 32
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    # each owner released a loss too: the mean of its last epoch's batches
    assert all(r.loss is not None and r.loss > 0 for r in report.owners.values())


def test_fedprox_trains_each_owner_on_the_proximal_objective(owners):
    dataset = blobs(8, 3)
    owners.add("a", dataset)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    start = copy.deepcopy(model)
    fed = fl.Federation(
        model, owners.sessions, data="data", training=training(epochs=2, batch_size=2),
        strategy=fl.FedProx(mu=0.5), show="none",
    )  # fmt: skip
    fed.fit(rounds=1)
    expected = train_locally(start, dataset, lr=0.1, batch_size=2, epochs=2, mu=0.5)
    plain = train_locally(start, dataset, lr=0.1, batch_size=2, epochs=2)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=1e-6)
    assert any(not torch.allclose(expected[k], plain[k]) for k in expected)  # the term mattered
    row = fed.board.rows["a"]  # the progress shown once the owner's update came back
    assert (row.state, row.epoch, row.batches, row.total_batches) == ("updated", 2, 4, 4)


class Net(sy.Module):
    def __init__(self, torch_ref=torch):
        super().__init__(torch_ref=torch_ref)
        self.fc1 = self.torch_ref.nn.Linear(4, 8)
        self.fc2 = self.torch_ref.nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(self.torch_ref.nn.functional.relu(self.fc1(x)))


def test_fedadam_and_an_sy_module_learn_across_three_owners_and_the_history_plots(owners, tmp_path):
    for i, name in enumerate(["a", "b", "c"]):
        owners.add(name, blobs(40, 10 + i))
    test = blobs(200, 99)

    def accuracy(model):
        with torch.no_grad():
            return float((model(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean())

    torch.manual_seed(2)
    model = Net(torch)
    before = accuracy(model)
    seen = []
    fed = fl.Federation(
        model, owners.sessions, data="data", training=training(batch_size=8),
        strategy=fl.FedAdam(lr=0.05), evaluate=accuracy, show="none", min_owners=3,
        on_round=seen.append,
    )  # fmt: skip
    history = fed.fit(rounds=4)
    assert [r.round for r in history] == [1, 2, 3, 4] and seen == list(history)
    assert all(r.counted for r in history)
    assert history.metric("accuracy")[-1] > max(before, 0.8)
    frame = history.pandas
    assert list(frame.columns[:6]) == ["round", "owner", "outcome", "samples", "loss", "secs"]
    assert len(frame) == 12 and set(frame.outcome) == {"updated"}
    assert set(frame.samples) == {40}
    path = history.plot(tmp_path / "accuracy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(sy.UsageError, match="no round measured 'loss'"):
        history.plot(tmp_path / "x.png", metric="loss")


def test_an_owner_that_denies_its_update_is_left_out_and_min_owners_decides_the_round(owners):
    owners.add("a", blobs(12, 1))
    denier = owners.add("b", blobs(12, 2), allow=False)
    denier.requests.add_handler(tags=["data", "__len__"], kind="int")
    denier.requests.add_handler(name="federated round 1 update", action="deny")
    model = nn.Linear(4, 2)
    weights = copy.deepcopy(model.state_dict())
    fed = fl.Federation(
        model, owners.sessions, data="data", training=training(release_loss=False),
        min_owners=2, show="none", round_timeout_secs=30,
    )  # fmt: skip
    report = asyncio.run(fed.run_round())
    assert report.included == ["a"] and not report.counted
    assert report.owners["b"].outcome is Outcome.DENIED
    assert "'federated round 1 update' was denied" in report.owners["b"].reason
    assert "did not count (min_owners=2)" in report.summary() and "b (denied" in report.summary()
    for key, value in model.state_dict().items():  # a round that did not count changes nothing
        assert torch.equal(value, weights[key])
    # the owner's queue holds what was asked, by name, and decided
    decided = {(r.name, r.status.value) for r in denier.requests.history}
    assert decided == {("federated samples", "accepted"), ("federated round 1 update", "denied")}


def test_an_owner_that_denies_its_sample_count_never_trains(owners):
    owners.add("a", blobs(12, 1))
    stingy = owners.add("b", blobs(12, 2), allow=False)
    stingy.requests.add_handler(tags=["data", "__len__"], kind="int", action="deny")
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", training=training(),
                        show="none")  # fmt: skip
    report = asyncio.run(fed.run_round())
    assert report.counted and report.included == ["a"]
    assert report.owners["b"].outcome is Outcome.DENIED and "samples" in report.owners["b"].reason
    assert [r.name for r in stingy.requests.history] == ["federated samples"]


def test_an_update_nobody_decides_is_left_out_before_the_deadline_and_the_next_round_goes_on(
    owners,
):
    owners.add("a", blobs(12, 1))
    # b allows round 2's update only: round 1's waits for the owner, who never decides
    waiting = owners.add("b", blobs(12, 2), rounds=[2])
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", training=training(),
                        show="none", round_timeout_secs=3)  # fmt: skip
    history = fed.fit(rounds=2)
    first, second = history
    assert first.counted and first.included == ["a"]
    assert first.owners["b"].outcome is Outcome.UNDECIDED
    assert "'federated round 1 update' was not decided in time" in first.owners["b"].reason
    assert second.included == ["a", "b"]
    statuses = [(r.name, r.status.value) for r in waiting.requests.history if "update" in r.name]
    assert statuses == [("federated round 1 update", "timeout"),
                        ("federated round 2 update", "accepted")]  # fmt: skip


class SlowDigits(torch.utils.data.TensorDataset):
    """An owner's dataset that takes its time for every sample (a slow disk, say)."""

    delay = 0.0

    def __getitem__(self, index):
        time.sleep(self.delay)
        return super().__getitem__(index)


def test_a_slow_owner_is_late_then_busy_while_the_others_go_on(owners):
    owners.add("a", blobs(12, 1))
    owners.add("b", blobs(12, 2))
    slow = SlowDigits(*blobs(24, 3).tensors)
    slow.delay = 0.1  # 6 batches of 4: 2.4 s of work in a round of 1 s
    owners.add("slow", slow)
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", training=training(),
                        show="none", round_timeout_secs=1.0, min_owners=2)  # fmt: skip
    history = fed.fit(rounds=2)
    for report in history:
        assert report.counted and report.included == ["a", "b"]
    assert history[0].owners["slow"].outcome is Outcome.LATE
    assert (
        "training: the owner had run 0 of 6 batches of epoch 1" in history[0].owners["slow"].reason
    )
    assert history[1].owners["slow"].outcome is Outcome.BUSY
    assert "catching up" in history[1].owners["slow"].reason
    slow.delay = 0.0
    # once it has caught up, it takes part again
    fed.round_timeout_secs = 30
    assert asyncio.run(fed.run_round()).included == ["a", "b", "slow"]


def test_a_closed_session_is_gone_from_later_rounds(owners):
    owners.add("a", blobs(12, 1))
    owners.add("b", blobs(12, 2))
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", training=training(),
                        show="none")  # fmt: skip
    fed.fit(rounds=1)
    owners.owners["b"].close()  # the owner leaves
    owners.sessions["b"].wait_closed(timeout_secs=10)
    report = asyncio.run(fed.run_round())
    assert report.included == ["a"] and report.owners["b"].outcome in (Outcome.GONE, Outcome.LOST)
    assert asyncio.run(fed.run_round()).owners["b"].outcome is Outcome.GONE


def test_a_request_named_like_an_update_but_releasing_the_data_waits_for_the_owner(owners):
    """The owner's handlers match what is released, not the name the scientist gives it."""
    owner = owners.add("a", blobs(12, 1), rounds=[1, 2])
    session = owners.sessions["a"]
    sample = session.store["data"][0][0]  # a row of the owner's data
    handle = sample.request(name="federated round 1 update", timeout_secs=2)
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert handle.wait(timeout_secs=10) is None
    (request,) = [r for r in owner.requests.history if r.name == "federated round 1 update"]
    assert request.kind == "tensor" and request.decided_by == "timeout"
    # one of the data's values asked for as a "loss" is a float made by item: the loss
    # handler cannot tell, but its quota (one float for each allowed round) bounds what leaves;
    # once spent, the handler no longer decides: the owner does, and the scientist is told why
    values = [
        sample[0].item().request(name="federated round 1 loss", timeout_secs=1) for _ in range(3)
    ]
    assert isinstance(values[0].wait(timeout_secs=10), float)
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert [v.wait(timeout_secs=10) for v in values[1:]] == [None, None]
    losses = [r for r in owner.requests.history if r.name == "federated round 1 loss"]
    assert [r.decided_by.split()[0] for r in losses] == ["handler", "timeout", "timeout"]
    told = [r.note for r in session.requests if r.name == "federated round 1 loss"]
    assert "quota of 1 elements is spent" in told[1] and "quota" not in told[0]


def test_errors_of_the_scientists_own_code_are_raised_not_blamed_on_an_owner(owners):
    owners.add("a", blobs(12, 1))

    def broken_loss(output, target):
        raise ValueError("my loss is broken")

    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data",
                        training=training(loss_fn=broken_loss), show="none")  # fmt: skip
    with pytest.raises(ValueError, match="my loss is broken"):
        fed.fit(rounds=1)


def test_fit_blocks_also_from_inside_a_running_event_loop_as_in_jupyter(owners):
    owners.add("a", blobs(12, 1))
    fed = fl.Federation(nn.Linear(4, 2), owners.sessions, data="data", training=training(),
                        show="none")  # fmt: skip
    progress = []
    fed.add_listener(lambda owner, row: progress.append((owner, row.state)))

    async def cell():  # a notebook cell: a loop runs, and the cell calls blocking code
        return fed.fit(rounds=1)

    history = asyncio.run(cell())
    assert history[0].included == ["a"]
    states = [state for _, state in progress]
    assert states[0] == "asking for its sample count" and states[-1] == "updated"
    assert "training" in states


def test_federation_refuses_nonsense():
    owner, scientist = sy.duet_pair()
    with owner, scientist:
        with pytest.raises(sy.UsageError, match="min_owners must be between 1 and 1"):
            fl.Federation(nn.Linear(1, 1), {"a": scientist}, data="x", min_owners=2)
        with pytest.raises(sy.UsageError, match="at least one owner"):
            fl.Federation(nn.Linear(1, 1), {}, data="x")
        with pytest.raises(sy.UsageError, match="epochs and batch_size"):
            fl.LocalTraining(epochs=0)


def test_sy_federated_is_reachable_from_the_package_as_users_write_it():
    assert sy.federated.Federation is fl.Federation and "federated" in sy.__all__
    with pytest.raises(AttributeError, match="no attribute 'federate'"):
        sy.federate  # noqa: B018  # a typo is still an AttributeError
