"""The owner as a node, as real processes over WebRTC: a signaling server, one owner serving
several scientists at once, and scientists that train, probe each other, die and come back."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest

from .processes import UNIT, Process, identity_in, start_signaling_server

PEERS = Path(__file__).parent / "peers"
NODE = str(PEERS / "node_owner.py")
TRAINER = str(PEERS / "trainer.py")


class Node:
    """A signaling server and an owner node, and the scientists started against them."""

    def __init__(self, max_scientists: int, *extra: str, home: str | None = None):
        self.server, self.url = start_signaling_server()
        self.started: list[Process] = [self.server]
        self.home = home or tempfile.mkdtemp(prefix="duet-node-")
        self.owner = self.start_owner(max_scientists, *extra)

    def start_owner(self, max_scientists: int, *extra: str) -> Process:
        owner = Process(NODE, self.url, str(max_scientists), *extra, home=self.home)
        self.started.append(owner)
        self.session_id = owner.event("event", "ready", 2 * UNIT)["session_id"]
        self.owner_id = owner.event("event", "published")["owner_id"]
        return owner

    def scientist(self, *args: str, home: str | None = None, allow: bool = True) -> Process:
        """Start a scientist; ``allow``: confirm its ID when the owner asks."""
        process = Process(TRAINER, self.session_id, self.url, self.owner_id, *args, home=home)
        self.started.append(process)
        client_id = process.line(r"duet client ID: ([0-9a-f-]+)", 2 * UNIT).group(1)
        process.client_id = client_id  # type: ignore[attr-defined]
        if allow:
            assert self.owner.event("event", "asked")["client_id"] == client_id
            self.owner.send(f"allow {client_id}")
        return process

    def stats(self) -> dict:
        self.owner.send("stats")
        return self.owner.event("event", "stats")

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


@pytest.fixture
def nodes():
    made: list[Node] = []
    yield lambda *args, **kw: made.append(Node(*args, **kw)) or made[-1]
    for node in made:
        node.stop()


def test_three_scientists_train_at_once_isolated_and_one_dies_without_harming_the_others(nodes):
    node = nodes(3)
    alice = node.scientist("--name", "alice", "--steps", "40", "--pause-at", "3")
    joined = alice.event("event", "joined", 2 * UNIT)
    # bob knows alice's object id and tries everything with it
    bob = node.scientist(
        "--name", "bob", "--steps", "40", "--pause-at", "3", "--probe", joined["secret_id"]
    )
    carol = node.scientist("--name", "carol", "--steps", "100000")  # trains until killed
    probe = bob.event("event", "probe", 2 * UNIT)
    assert "does not exist" in probe["get"] and "does not exist" in probe["use"]
    for scientist in (alice, bob):  # both mid-training
        scientist.event("event", "paused", 2 * UNIT)
    carol.event("event", "step", 2 * UNIT)
    connected = node.stats()["connected"]
    assert sorted(connected) == sorted(p.client_id for p in (alice, bob, carol))

    carol.kill()  # mid-training, as a crash would
    for scientist in (alice, bob):
        scientist.send("go")
    alice_done = alice.event("event", "done", 4 * UNIT)
    bob_done = bob.event("event", "done", 4 * UNIT)
    for done, name in ((alice_done, "alice"), (bob_done, "bob")):
        assert math.isfinite(done["loss"]) and done["loss"] < 1.6  # trained (chance: ln 10 = 2.3)
        assert done["secret"] == [float(len(name))]  # bob's overwrite and delete did nothing
    # the owner saw all three go: carol by losing her, the others when they closed
    left = {node.owner.event("event", "leave", 4 * UNIT)["scientist"] for _ in range(3)}
    assert left == {alice.client_id, bob.client_id, carol.client_id}
    decisions = node.stats()["decisions"]  # the loaders' lengths (all three), two losses
    assert {status for _, status in decisions} == {"accepted"} and len(decisions) == 5
    assert {s for s, _ in decisions} == {alice.client_id, bob.client_id, carol.client_id}


def test_identities_access_rules_and_the_audit_log_survive_the_owner_being_killed(nodes, tmp_path):
    erin_home, frank_home = str(tmp_path / "erin"), str(tmp_path / "frank")
    frank_id = identity_in(frank_home)
    node = nodes(2, "--compute-only", frank_id)

    erin = node.scientist("--name", "erin", "--steps", "3", home=erin_home)
    assert erin.event("event", "done", 4 * UNIT)["loss"] > 0
    # a rule names frank: he is let in without being asked
    frank = node.scientist("--name", "frank", "--steps", "2", home=frank_home, allow=False)
    assert frank.client_id == frank_id
    error = frank.event("event", "error", 4 * UNIT)["error"]
    assert error.startswith("PermissionDenied") and "compute but not ask for releases" in error
    before = node.stats()
    assert [erin.client_id, "accepted"] in before["decisions"]
    assert any(s == frank_id and "compute" in r for s, r in before["refused"])
    assert all(s != frank_id for s, _ in before["decisions"])  # never reached the queue

    owner_id = node.owner_id
    node.owner.kill()  # kill -9: no chance to close anything
    node.owner = node.start_owner(2, "--compute-only", frank_id)  # same home, same identity
    assert node.owner_id == owner_id
    after = node.stats()
    assert after["decisions"][: len(before["decisions"])] == before["decisions"]
    assert after["refused"][: len(before["refused"])] == before["refused"]

    # erin comes back with the key in her home: recognised, not asked for
    again = node.scientist("--name", "erin", "--steps", "1", home=erin_home, allow=False)
    assert again.client_id == erin.client_id
    assert again.event("event", "done", 4 * UNIT)["loss"] > 0
    # someone else calling themselves erin has another key: a stranger, asked for, not let in
    impostor = node.scientist("--name", "erin", "--steps", "1", allow=False)
    assert impostor.client_id != erin.client_id
    assert node.owner.event("event", "asked")["client_id"] == impostor.client_id
    error = impostor.event("event", "error", 4 * UNIT)["error"]
    assert "refused to serve you" in error
    assert all(not line.startswith('{"event": "asked"') or impostor.client_id in line
               for line in node.owner.output)  # fmt: skip
