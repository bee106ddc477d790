"""5. Session set-up: from launch_duet / join_duet being called to connected on both sides.

An owner process (imports done, idle) is told "go" on stdin; it calls ``launch_duet`` and
prints the session ID from ``on_ready``; this process reads it and calls ``join_duet``. Times
are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for all processes on the machine):

- total: owner's launch_duet call to the later of the two sides being connected
- join: this process's join_duet call to its return (connected)

The first session in a fresh pair of processes is reported apart (cold); the target is judged
on the median of the later ones.
"""

from __future__ import annotations

import contextlib
import io
import time

from .common import Context, Figure, median
from .procs import Owner


def run(ctx: Context) -> None:
    import duet as sy

    trials = ctx.n(6, 3)
    owner = Owner(ctx.url, "setup", threads=ctx.threads, profile=None)
    totals, joins, registers = [], [], []
    try:
        for _ in range(trials):
            owner.process.send("go")
            session = owner.process.event("session")
            join_call = time.monotonic()
            with contextlib.redirect_stdout(io.StringIO()):
                duet = sy.join_duet(session["session_id"], ctx.url)
            joined = time.monotonic()
            connected = owner.process.event("connected")
            totals.append(max(joined, connected["t_connected"]) - connected["t_call"])
            joins.append(joined - join_call)
            registers.append(session["t"] - connected["t_call"])
            duet.close()
            owner.process.event("closed")
    finally:
        owner.process.send("quit")
        owner.process.stop()
    warm = median(totals[1:])
    ctx.report(
        Figure(
            "set-up, launch_duet call -> both connected", warm, "s",
            target="<= 0.5 s", met=warm <= 0.5,
            baseline=f"cold (first) {totals[0]:.3f} s",
            note=f"median of {len(totals) - 1} warm sessions",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "set-up, join_duet call -> connected", median(joins[1:]), "s",
            note=f"owner registration {median(registers[1:]) * 1000:.0f} ms",
        )
    )  # fmt: skip
