"""The secure aggregation benchmark over owner processes, as a smoke run (``--quick``: three
owner processes, the small model, one round of each kind), so that it cannot rot: it prints
its round times and ratio, and leaves no owner process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .processes import UNIT, Process

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(8 * UNIT)
def test_the_process_benchmark_prints_plain_and_secure_rounds_and_stops_its_owners():
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    bench = Process(
        "-m", "bench.secure_aggregation", "--processes", "--quick", stdin=False,
        env={"PYTHONPATH": path},
    )  # fmt: skip
    try:
        found = bench.line(
            r"1,210 weights, 3 owner processes: plain (\d+) ms \| secure (\d+) ms \| "
            r"([\d.]+)x",
            6 * UNIT,
        )
        plain, secure, ratio = int(found[1]), int(found[2]), float(found[3])
        assert plain > 0 and secure > 0 and ratio > 0
        assert bench.line(r"CPU per round, scientist / owners \(all 3\): plain \d+ / \d+ ms")
        pids = [int(p) for p in bench.line(r"owner pids \[([\d, ]+)\] \(stopped\)")[1].split(",")]
        assert bench.exit_code(UNIT) == 0, "".join(bench.errors)[-3000:]
    finally:
        bench.stop()
    assert len(pids) == 3
    for pid in pids:  # stopped and reaped by the benchmark (or the PID reused since)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # no such process
            continue
        assert b"bench.secure_owner" not in cmdline, pid
