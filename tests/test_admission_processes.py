"""Admission under attack, as real processes on 127.0.0.1: strangers waiting on a confirmation
nobody gives, joins that hold a session's places and never offer, a forged loopback proof and a
mistyped client ID. None of them may keep a real scientist out."""

from __future__ import annotations

from pathlib import Path

import pytest

from .processes import PEER, UNIT, Process, identity_in, start_signaling_server

PEERS = Path(__file__).parent / "peers"
GATE = str(PEERS / "gate_owner.py")
STRANGERS = str(PEERS / "strangers.py")
STALLED = str(PEERS / "stalled_joins.py")
JOINER = str(PEERS / "loopback_joiner.py")
VISITOR = str(PEERS / "visitor.py")
#: the server's bound on a join's exchange in the stalled-joins test: long enough that the
#: scientist, started after the stalled joins took every place, finds them all taken
JOIN_TIMEOUT_SECS = 15


@pytest.fixture
def started():
    processes: list[Process] = []
    yield processes
    for process in reversed(processes):
        process.stop()


def gate_owner(
    started: list[Process], url: str, *expect: str, home: str
) -> tuple[Process, str, str]:
    args = [arg for client_id in expect for arg in ("--expect", client_id)]
    owner = Process(GATE, url, "12", *args, home=home)
    started.append(owner)
    session_id = owner.event("event", "ready", 2 * UNIT)["session_id"]
    return owner, session_id, owner.event("event", "published")["owner_id"]


def test_a_known_scientist_is_admitted_while_ten_strangers_wait_for_a_confirmation(
    started, tmp_path
):
    server, url = start_signaling_server("--max-pending-joins", "16")
    started.append(server)
    ada_home = str(tmp_path / "ada")
    ada = identity_in(ada_home)
    owner, session_id, owner_id = gate_owner(started, url, ada, home=str(tmp_path / "owner"))
    # the owner confirms ada once (it was told her ID); she leaves, and is known from now on
    first = Process(VISITOR, session_id, url, owner_id, "--name", "ada", home=ada_home)
    started.append(first)
    first.event("event", "connected", 2 * UNIT)
    first.send("leave")
    first.event("event", "left")
    assert owner.event("event", "leave")["scientist"] == ada

    strangers = Process(STRANGERS, session_id, url, owner_id, "10", stdin=False)
    started.append(strangers)
    asked = set()
    for _ in range(10):  # each stranger's confirmation starts, unanswered
        try:
            asked.add(owner.event("event", "asked", 2 * UNIT)["client_id"])
        except AssertionError:
            break
    assert len(asked) == 10, f"only {len(asked)} strangers were asked for at once"
    assert ada not in asked
    waiting_since = len(owner.output)  # every stranger's confirmation is under way, unanswered

    again = Process(VISITOR, session_id, url, owner_id, "--name", "ada", home=ada_home)
    started.append(again)
    assert again.event("event", "connected", 2 * UNIT)["client_id"] == ada
    assert owner.event("event", "connect")["scientist"] == ada
    since = owner.output[waiting_since:]
    assert not any('"answered"' in line for line in since), since  # they all still wait
    assert not any('"asked"' in line for line in since), since  # ada was not asked for

    owner.send("release")  # the person never came: each stranger is told no
    refusals = [strangers.event("event", "refused", 2 * UNIT) for _ in range(10)]
    assert {r["client_id"] for r in refusals} == asked
    assert all("refused to serve you" in r["error"] for r in refusals)


def test_a_scientist_joins_while_eight_stalled_joins_hold_the_sessions_places(started, tmp_path):
    server, url = start_signaling_server("--join-timeout", str(JOIN_TIMEOUT_SECS))
    started.append(server)
    ada_home = str(tmp_path / "ada")
    ada = identity_in(ada_home)
    owner, session_id, owner_id = gate_owner(started, url, ada, home=str(tmp_path / "owner"))
    stalled = Process(STALLED, url, session_id, "8", stdin=False)
    started.append(stalled)
    assert stalled.event("event", "holding")["count"] == 8  # every place of the session (8)

    scientist = Process(VISITOR, session_id, url, owner_id, "--name", "ada", home=ada_home)
    started.append(scientist)
    assert scientist.event("event", "connected", 3 * UNIT)["client_id"] == ada
    assert owner.event("event", "connect")["scientist"] == ada
    assert "session_busy" in "".join(scientist.errors)  # turned away at first, then let in
    dropped = [stalled.event("event", "dropped") for _ in range(8)]
    assert {(d["error"], d["code"]) for d in dropped} == {("expired", 1008)}


def test_a_forged_loopback_join_does_not_stop_the_real_scientist(started, tmp_path):
    server, url = start_signaling_server()
    started.append(server)
    env = {"DUET_LOOPBACK_FILE": str(tmp_path / "loopback.json")}
    owner = Process(str(PEER), "owner", url, "--loopback", env=env)
    started.append(owner)
    session_id = owner.event("event", "ready", 2 * UNIT)["session_id"]
    # a process that knows the session ID (printed) but not the token (in the owner's file)
    forger = Process(JOINER, "forged", session_id, url, env=env, stdin=False)
    started.append(forger)
    error = forger.event("event", "refused", 2 * UNIT)["error"]
    assert "[declined]" in error and "without proving it read the loopback file" in error
    owner.line(r"refused an offer: a process joined this loopback session without proving")

    real = Process(JOINER, "real", env=env, stdin=False)
    started.append(real)
    real.event("event", "connected", 2 * UNIT)
    owner.event("event", "connected")
    owner.event("event", "closed", 2 * UNIT)  # the scientist left; the owner served it


def test_a_mistyped_client_id_refuses_that_scientist_and_the_owner_waits_for_the_next(started):
    server, url = start_signaling_server()
    started.append(server)
    owner = Process(str(PEER), "owner", url)
    started.append(owner)
    owner_id = owner.line(r'owner_id="([0-9a-f-]+)"').group(1)
    session_id = owner.event("event", "ready")["session_id"]
    first = Process(VISITOR, session_id, url, owner_id, "--name", "first")
    started.append(first)
    first.line(r"duet client ID: ([0-9a-f-]+)")
    owner.send("0000-0000-0000-0000")  # the owner types an ID it was not shown
    error = first.event("event", "refused", 2 * UNIT)["error"]
    assert "refused to serve you" in error and "does not match the scientist's identity" in error
    owner.line(r"refused scientist [0-9a-f-]+: client ID .* does not match the scientist's")

    second = Process(VISITOR, session_id, url, owner_id, "--name", "second")
    started.append(second)
    client_id = second.line(r"duet client ID: ([0-9a-f-]+)").group(1)
    owner.send(client_id)
    assert owner.event("event", "connected", 2 * UNIT)["client_id"] == client_id
    assert second.event("event", "connected")["client_id"] == client_id
    second.send("leave")
    assert owner.event("event", "closed", 2 * UNIT)["store"] == 2
