"""A network of owners, for real: a signaling server and three owner nodes as processes on
127.0.0.1, this test process the scientist. Two owners list their shard of the digits, the
third publishes its shard without listing it; the scientist searches the network by tag, finds
exactly the two, joins both through it (each owner's ID proved in its handshake) and trains
across them with ``sy.federated``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import duet as sy
from duet import federated as fl

from .processes import UNIT, Process, start_signaling_server

OWNER = str(Path(__file__).parent / "peers" / "listed_owner.py")
torch.set_num_threads(1)


@pytest.fixture
def network():
    server, url = start_signaling_server()
    processes: dict[str, Process] = {}
    sessions: list[sy.ScientistSession] = []
    yield url, processes, sessions
    for session in sessions:
        session.close()
    for process in processes.values():
        process.stop()
    server.stop()


@pytest.mark.timeout(240)
def test_scientist_finds_the_two_owners_that_listed_digits_joins_them_and_trains_across(network):
    url, processes, sessions = network
    scientist = sy.Identity.load_or_create().id
    flags = {"north": ["--secret"], "south": [], "east": ["--unlisted"]}
    for i, (name, extra) in enumerate(flags.items()):
        processes[name] = Process(OWNER, url, str(i), "3", scientist, *extra)
    listed = {name: p.event("event", "listed", 3 * UNIT) for name, p in processes.items()}
    assert all(not event["error"] for event in listed.values()), listed
    assert listed["east"]["datasets"] == []  # published, not listed
    ids = {name: event["owner_id"] for name, event in listed.items()}

    table = sy.search(tags=["digits"], network_url=url)
    assert sorted(table.owner_id) == sorted([ids["north"], ids["south"]])
    assert list(table.columns) == [
        "owner_id", "owner_name", "dataset", "tags", "description", "shape", "dtype", "size",
        "online",
    ]  # fmt: skip
    assert table.online.all() and set(table.owner_name) == {"owner 0", "owner 1"}
    assert all(t == ["digits"] for t in table.tags)
    assert all(shape[0] > 400 and shape[1:] == (64,) for shape in table["shape"])
    assert set(table.dtype) == {"float32"}  # what the data is like; no value travels
    everything = sy.search(network_url=url)  # every listed dataset: not north's secret
    assert sorted(everything.dataset) == sorted(table.dataset)
    assert sy.search(tags=["secret"], network_url=url).empty
    # each owner admits only this scientist: nobody else is shown its listing
    assert sy.search(tags=["digits"], network_url=url, identity=False).empty
    assert sy.search(tags=["digits"], network_url=url, identity=sy.Identity.ephemeral()).empty

    joined: dict[str, sy.ScientistSession] = {}
    for name in ("north", "south"):
        session, pointer = sy.join(url, owner=ids[name], dataset="digits", timeout_secs=2 * UNIT)
        sessions.append(session)
        joined[name] = session
        assert pointer.id in listed[name]["datasets"]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    fed = fl.Federation(
        model, joined, data="digits", min_owners=2, show="none",
        training=fl.LocalTraining(epochs=1, batch_size=64, optimizer_options={"lr": 0.2}),
        round_timeout_secs=4 * UNIT,
    )  # fmt: skip
    history = fed.fit(rounds=2)
    assert all(r.counted and sorted(r.included) == ["north", "south"] for r in history), [
        r.summary() for r in history
    ]
    losses = [history[i].owners["north"].loss for i in (0, -1)]
    assert losses[-1] < losses[0]

    processes["north"].send("quit")  # closing the node withdraws its listing
    processes["north"].event("event", "closed", UNIT)
    after = sy.search(tags=["digits"], network_url=url)
    assert list(after.owner_id) == [ids["south"]]
