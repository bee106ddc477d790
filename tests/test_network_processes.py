"""The signaling server, an owner and a scientist as three real processes on 127.0.0.1."""

from __future__ import annotations

import pytest

from .processes import PEER, UNIT, Process, start_signaling_server


@pytest.fixture
def duet_processes():
    server, url = start_signaling_server()
    owner = Process(str(PEER), "owner", url)
    started = [server, owner]
    try:
        owner_id = owner.line(r'owner_id="([0-9a-f-]+)"').group(1)  # from the join line
        session_id = owner.event("event", "ready")["session_id"]
        assert len(session_id) == 32 and int(session_id, 16) >= 0
        scientist = Process(str(PEER), "scientist", session_id, url, owner_id)
        started.append(scientist)
        client_id = scientist.line(r"duet client ID: ([0-9a-f-]+)").group(1)
        owner.send(client_id)  # the owner types the ID the scientist was shown
        assert owner.event("event", "connected")["client_id"] == client_id
        scientist.event("event", "connected")
        assert f"connected to the data owner {owner_id}" in "\n".join(scientist.output)
        owner.event("event", "published")
        yield owner, scientist
    finally:
        for process in reversed(started):
            process.stop()


def run_step(scientist: Process, step: str, timeout: float = UNIT) -> dict:
    scientist.send(step)
    return scientist.event("step", step, timeout)


def test_publish_list_ops_and_gets_across_processes(duet_processes):
    owner, scientist = duet_processes
    listing = run_step(scientist, "list")
    assert listing["tags"] == [["ages"], ["big"]] and listing["table"] == ["ages", "50 MB"]
    assert run_step(scientist, "ops")["value"] == 16.0
    assert run_step(scientist, "handled")["value"] == [2.0, 4.0, 6.0]
    denied = run_step(scientist, "denied")
    assert denied["value"] is None and "denied" in denied["warning"]
    scientist.send("by hand")
    request = owner.event("event", "request")
    assert (request["name"], request["reason"]) == ("by hand", "mean age")
    assert scientist.event("step", "by hand")["value"] == 2.0
    run_step(scientist, "close")
    closed = owner.event("event", "closed")
    assert closed["ages"] == [1.0, 2.0, 3.0] and closed["store"] == 2


def test_a_50_mb_tensor_arrives_intact(duet_processes):
    _owner, scientist = duet_processes
    from .peers.peer import big_tensor, digest

    assert run_step(scientist, "big", timeout=4 * UNIT)["digest"] == digest(big_tensor())


def test_killed_scientist_is_noticed_and_owner_store_is_intact(duet_processes):
    owner, scientist = duet_processes
    assert run_step(scientist, "ops")["value"] == 16.0
    scientist.kill()
    closed = owner.event("event", "closed", timeout=UNIT)
    assert closed["store"] == 2 and closed["ages"] == [1.0, 2.0, 3.0]
    from .peers.peer import big_tensor, digest

    assert closed["big"] == digest(big_tensor())


def test_killed_owner_makes_the_scientist_raise_connection_lost(duet_processes):
    owner, scientist = duet_processes
    scientist.send("wait-forever")
    scientist.event("step", "wait-forever")  # it is now blocked in a get
    owner.kill()
    failed = scientist.event("step", "wait-forever", timeout=UNIT)
    assert failed["error"] == "ConnectionLost"


def test_wrong_client_id_refuses_that_scientist_and_the_owner_waits_on():
    server, url = start_signaling_server()
    owner = Process(str(PEER), "owner", url)
    scientist = None
    try:
        session_id = owner.event("event", "ready")["session_id"]
        scientist = Process(str(PEER), "scientist", session_id, url)
        scientist.line(r"duet client ID: ([0-9a-f-]+)")
        owner.send("0000-0000-0000-0000")
        owner.line(r"refused scientist [0-9a-f-]+: client ID '0000-0000-0000-0000' does not match")
        scientist.popen.wait(UNIT)
        assert scientist.popen.returncode != 0
        assert "does not match the scientist's identity" in "".join(scientist.errors)
        assert owner.popen.poll() is None  # it waits on for its scientist
    finally:
        for process in (scientist, owner, server):
            if process is not None:
                process.stop()
