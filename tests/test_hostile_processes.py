"""A scientist that misbehaves, against a real owner process over WebRTC on 127.0.0.1.

Each case checks what the owner does (serves on, or closes that scientist's session with a
reason), that nothing of its store is lost, and that its memory stays within the scientist's
quota plus a fixed margin: the peak resident size (VmHWM, reset after the setup) against the
resident size before the attack, both read from /proc.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from duet.connection import DEFAULT_MAX_OUTBOX_BYTES

from .processes import UNIT, Process, start_signaling_server

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the owner's memory from /proc"
)

HOSTILE = Path(__file__).parent / "peers" / "hostile.py"
MB = 1_000_000
OBJECT = 20 * MB  # the scientist's own tensor that it asks for again and again
# what the owner may hold beyond the scientist's quota: the outbox, one frame being packed
# while it waits, and the transport's buffers
MARGIN = DEFAULT_MAX_OUTBOX_BYTES + 2 * OBJECT + 32 * MB


def memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1000
    return fields


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


@contextmanager
def duet_processes(max_bytes: int) -> Iterator[tuple[Process, Process]]:
    server, url = start_signaling_server()
    started = [server]
    try:
        owner = Process(str(HOSTILE), "owner", url, str(max_bytes))
        started.append(owner)
        session_id = owner.event("event", "ready")["session_id"]
        scientist = Process(str(HOSTILE), "scientist", session_id, url)
        started.append(scientist)
        assert scientist.event("event", "connected")["max_bytes"] == max_bytes
        owner.event("event", "connected")
        yield owner, scientist
    finally:
        for process in reversed(started):
            process.stop()


def step(scientist: Process, name: str, timeout: float = UNIT) -> dict:
    scientist.send(name)
    return scientist.event("step", name, timeout)


def baseline(owner: Process) -> int:
    pid = owner.popen.pid
    reset_peak(pid)
    return memory_kb(pid)["VmRSS"]


def growth(owner: Process, before: int) -> int:
    return memory_kb(owner.popen.pid)["VmHWM"] - before


def test_a_scientist_that_stops_acknowledging_is_dropped_and_the_owner_stays_bounded():
    with duet_processes(max_bytes=64 * MB) as (owner, scientist):
        step(scientist, "own")
        before = baseline(owner)
        started = step(scientist, "stall")
        closed = owner.event("event", "closed", timeout=4 * UNIT)
        assert "the peer stopped reading for" in closed["reason"], closed
        assert closed["store"] == 1 and closed["ages"] == [1.0, 2.0, 3.0]
        grew = growth(owner, before)
        print(
            f"stall: dropped after {closed['at'] - started['at']:.1f} s, owner grew {grew / MB:.0f} MB"
        )
        assert grew < 64 * MB + MARGIN
        assert scientist.event("step", "stalled", UNIT)["lost"]  # the scientist was told


def test_many_gets_of_a_large_object_in_one_frame_do_not_amplify_the_owners_memory():
    with duet_processes(max_bytes=64 * MB) as (owner, scientist):
        step(scientist, "own")
        before = baseline(owner)
        outcome = step(scientist, "gets-in-one-frame", timeout=8 * UNIT)
        grew = growth(owner, before)
        print(f"40 gets in one frame: owner grew {grew / MB:.0f} MB")
        assert outcome["ok"] == 40 and outcome["errors"] == [], outcome
        assert grew < 64 * MB + MARGIN
        assert step(scientist, "ops")["value"] == 16.0


def test_a_200_mb_send_to_a_10_mb_owner_is_refused_early_and_the_owner_serves_on():
    with duet_processes(max_bytes=10 * MB) as (owner, scientist):
        before = baseline(owner)
        outcome = step(scientist, "send-200mb", timeout=8 * UNIT)
        grew = growth(owner, before)
        print(f"200 MB send: owner grew {grew / MB:.0f} MB")
        assert "honest" in outcome, outcome
        assert "is 200000000 bytes" in outcome["honest"] and "10000000 bytes" in outcome["honest"]
        assert "exceeds the limit of" in outcome["refused"]
        assert "the owner lets a scientist store 10000000 bytes" in outcome["refused"]
        assert grew < 10 * MB + MARGIN
        assert step(scientist, "ops")["value"] == 16.0
        step(scientist, "close")
        closed = owner.event("event", "closed")
        assert closed["store"] == 1 and "closed by the scientist" in closed["reason"]


def test_replies_too_large_for_a_frame_are_clear_errors_and_the_owner_answers_on():
    with duet_processes(max_bytes=256 * MB) as (owner, scientist):
        errors = step(scientist, "too-big-replies", timeout=4 * UNIT)["errors"]
        assert "header of" in errors[0] and "exceeds the limit" in errors[0], errors
        assert "70000 tensors" in errors[1], errors
        assert step(scientist, "ops")["value"] == 16.0
        step(scientist, "close")
        assert owner.event("event", "closed")["store"] == 1
