"""Federated training over real duets: a signaling server and owner processes on 127.0.0.1 (each
holding a disjoint shard of scikit-learn's digits), this test process the scientist, WebRTC
between them. The owners release sample counts, losses and updates through their request queues
(constrained handlers, one per round where asked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import duet as sy
from duet import federated as fl
from duet.federated import Outcome

from .peers.digits_shards import digits
from .processes import UNIT, Process, start_signaling_server

OWNER = str(Path(__file__).parent / "peers" / "federated_owner.py")
torch.set_num_threads(1)


class Owners:
    """A signaling server and owner processes for one scientist: this process."""

    def __init__(self) -> None:
        self.server, self.url = start_signaling_server()
        self.processes: dict[str, Process] = {}
        self.addresses: list[fl.OwnerAddress] = []
        self.scientist_id = sy.Identity.load_or_create().id  # in this test's duet home
        self.sessions: dict[str, sy.ScientistSession] = {}

    def start(self, names: list[str], **options: list[str]) -> None:
        """One owner process per name, shard i of len(names); ``options[name]``: its flags."""
        for i, name in enumerate(names):
            process = Process(
                OWNER, self.url, str(i), str(len(names)), self.scientist_id,
                *options.get(name, []),
            )  # fmt: skip
            self.processes[name] = process
        for name, process in self.processes.items():
            session_id = process.event("event", "ready", 2 * UNIT)["session_id"]
            owner_id = process.event("event", "published", 2 * UNIT)["owner_id"]
            self.addresses.append(fl.OwnerAddress(name, session_id, self.url, owner_id))

    def join(self) -> dict[str, sy.ScientistSession]:
        self.sessions = fl.join_owners(self.addresses, timeout_secs=2 * UNIT)
        return self.sessions

    def decisions(self, name: str) -> list[tuple[str, str]]:
        """The decisions the owner printed so far (request name, status)."""
        process = self.processes[name]
        while not process.lines.empty():
            line = process.lines.get_nowait()
            if line is None:
                process.lines.put(None)
                break
            process.output.append(line)
        lines = list(process.output)
        events = [json.loads(line) for line in lines if line.startswith('{"event": "decision"')]
        return [(e["name"], e["status"]) for e in events]

    def stop(self) -> None:
        for session in self.sessions.values():
            session.close()
        for process in self.processes.values():
            process.stop()
        self.server.stop()


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.stop()


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy_on(x: torch.Tensor, y: torch.Tensor):
    def accuracy(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(x).argmax(dim=1) == y).float().mean())

    return accuracy


def train_centrally(model, x, y, *, epochs, lr, batch_size):
    """The same model trained here on the owners' digits put together, for as many epochs."""
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(epochs):
        for data, target in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(data), target).backward()
            optimizer.step()
    return model


@pytest.mark.timeout(240)
def test_three_owners_reach_the_accuracy_of_training_on_their_union(owners):
    rounds, epochs, lr, batch_size = 30, 2, 0.2, 16
    owners.start(["north", "south", "east"])
    sessions = owners.join()
    train_x, train_y, test_x, test_y = digits()
    accuracy = accuracy_on(test_x, test_y)
    central = train_centrally(
        mlp(), train_x, train_y, epochs=rounds * epochs, lr=lr, batch_size=batch_size
    )
    fed = fl.Federation(
        mlp(), sessions, data="digits", evaluate=accuracy, min_owners=3, show="none",
        training=fl.LocalTraining(
            epochs=epochs, batch_size=batch_size, optimizer_options={"lr": lr}
        ),
        round_timeout_secs=4 * UNIT,
    )  # fmt: skip
    history = fed.fit(rounds=rounds)

    assert all(r.counted and r.included == ["north", "south", "east"] for r in history), [
        r.summary() for r in history
    ]
    samples = {name: result.samples for name, result in history[0].owners.items()}
    assert sum(samples.values()) == len(train_y)  # disjoint shards of all the training digits
    federated, centralized = accuracy(fed.model), accuracy(central)
    print(f"held-out accuracy: federated {federated:.4f}, centralized {centralized:.4f}")
    assert federated >= centralized - 0.02, (federated, centralized)
    assert federated > 0.9
    losses = [history[i].owners["north"].loss for i in (0, -1)]
    assert losses[-1] < losses[0] / 3  # each owner released its loss every round
    for name in sessions:  # per round: the update and the loss; once: the sample count
        decided = owners.decisions(name)
        assert ("federated samples", "accepted") in decided
        assert ("federated round 30 update", "accepted") in decided
        assert ("federated round 30 loss", "accepted") in decided


@pytest.mark.timeout(180)
def test_an_owner_killed_mid_round_is_left_out_and_the_rounds_go_on_with_the_others(owners):
    owners.start(["north", "south", "east"])
    sessions = owners.join()
    _, _, test_x, test_y = digits()
    fed = fl.Federation(
        mlp(), sessions, data="digits", evaluate=accuracy_on(test_x, test_y), min_owners=2,
        training=fl.LocalTraining(epochs=1, batch_size=16, optimizer_options={"lr": 0.2}),
        round_timeout_secs=2 * UNIT, show="none",
    )  # fmt: skip
    killed = []

    def kill_east_in_round_two(owner: str, row: fl.OwnerProgress) -> None:
        # east's owner has acknowledged batches of round 2: it is training right now
        if owner == "east" and row.round == 2 and row.batches > 0 and not killed:
            owners.processes["east"].kill()
            killed.append(row.batches)

    fed.add_listener(kill_east_in_round_two)
    history = fed.fit(rounds=3)

    assert killed and killed[0] < history[1].owners["east"].samples / 16
    first, second, third = history
    assert first.included == ["north", "south", "east"]
    assert second.counted and second.included == ["north", "south"]
    assert second.owners["east"].outcome is Outcome.LOST
    assert "connection lost" in second.owners["east"].reason
    assert "2 of 3 owners, counted" in second.summary() and "east (lost" in second.summary()
    assert third.counted and third.included == ["north", "south"]
    assert third.owners["east"].outcome is Outcome.GONE
    assert third.metrics["accuracy"] > 0.8


@pytest.mark.timeout(180)
def test_an_owner_that_denies_and_one_that_is_slow_are_left_out_of_rounds(owners):
    owners.start(
        ["north", "south", "slow"],
        south=["--deny-rounds", "3"],
        # its first epoch reads as fast as the others'; then ~48 s an epoch
        slow=["--quick", "480", "--delay", "0.1"],
    )
    sessions = owners.join()
    fed = fl.Federation(
        mlp(), sessions, data="digits", min_owners=1, show="none",
        training=fl.LocalTraining(epochs=1, batch_size=32, optimizer_options={"lr": 0.2}),
        round_timeout_secs=4 * UNIT,  # the first round starts the owners' torch: give it time
    )  # fmt: skip
    history = fed.fit(rounds=1)
    fed.round_timeout_secs = 8  # the others need well under a second a round from now on
    history = fed.fit(rounds=2)
    summaries = [r.summary() for r in history]
    assert len(history) == 3 and all(r.counted and "north" in r.included for r in history)
    assert history[0].included == ["north", "south", "slow"], summaries
    assert [r.owners["south"].outcome for r in history] == [
        Outcome.UPDATED, Outcome.UPDATED, Outcome.DENIED
    ], summaries  # fmt: skip
    assert "'federated round 3 update' was denied" in history[2].owners["south"].reason
    late, busy = history[1].owners["slow"], history[2].owners["slow"]
    assert late.outcome is Outcome.LATE and "training: the owner had run" in late.reason, summaries
    assert busy.outcome is Outcome.BUSY and "catching up" in busy.reason, summaries
    # the owner's queue shows the refusal, decided by the handler named for round 3
    assert ("federated round 3 update", "denied") in owners.decisions("south")
