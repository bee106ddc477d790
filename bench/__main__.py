"""``python -m bench``: duet's benchmarks on 127.0.0.1 with real processes.

A signaling server process and owner processes are started here; this process is the data
scientist (and runs the local baselines while the owner is idle). Run one benchmark at a time
with ``--only NAME``; ``--quick`` is a smoke run; ``--profile DIR`` samples every thread of the
owner and of this process and writes the reports to DIR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ["DUET_ICE_HOSTS"] = "127.0.0.1"

import torch

from . import (
    federated,
    gets,
    memory,
    network,
    ops,
    privacy,
    secure_aggregation,
    setup,
    smpc,
    training,
    transfer,
    tutorial,
)
from .common import Context, cpu_ticks, others_busy
from .procs import ROOT, pin_malloc, start_signaling_server, terminate
from .sampler import Sampler

BENCHMARKS = {
    "training": training.run,
    "tutorial": tutorial.run,
    "gets": gets.run,
    "ops": ops.run,
    "transfer": transfer.run,
    "setup": setup.run,
    "memory": memory.run,
    "federated": federated.run,
    "privacy": privacy.run,
    "network": network.run,
    "smpc": smpc.run,
    "secure_aggregation": secure_aggregation.run,
}
SHARED = {"training", "tutorial", "gets", "ops", "transfer"}  # these share one session


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, torch "
        f"{torch.__version__}; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_idle(limit_secs: float) -> str:
    """Wait (up to ``limit_secs``) until other processes leave the CPUs idle; say how it went."""
    deadline = time.monotonic() + limit_secs
    busy = cpu_busy()
    while busy > 0.15 and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return f"CPU {100 * busy:.0f}% busy before start" + (" (NOT idle)" if busy > 0.15 else "")


def revision() -> str:
    """The commit measured, and whether the library had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "duet", "signaling_server"],
            capture_output=True, text=True, check=True,
        ).stdout.split()[1::2]  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {head}" + (f" + uncommitted changes in {', '.join(dirty)}" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="repeatable")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in both processes (default 1)"
    )
    parser.add_argument("--profile", type=Path, help="write sampled profiles to this directory")
    parser.add_argument(
        "--wait-idle", type=float, default=30.0,
        help="seconds to wait for other load to go before each benchmark (default 30)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--malloc", choices=["pinned", "glibc"], default="pinned",
        help="pinned (default): fixed glibc allocator thresholds in every process, see "
        "procs.pin_malloc; glibc: its own adaptive ones (noisier torch timings)",
    )  # fmt: skip
    parser.add_argument(
        "--delete-batch", type=int, metavar="N",
        help="free dropped pointers within a frame, N at a time (duet.scientist.client."
        "DELETE_BATCH; default: at the end of each frame)",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="REF",
        help="also run the chosen benchmarks at this git ref (a worktree, the same venv), "
        "alternating with this tree, and print each figure's ratio (this tree / REF)",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --against: runs of each side (default 3)"
    )
    parser.add_argument(
        "--bench-at", metavar="REF2",
        help="with --against: both sides run the benchmarks as of this git ref (for a REF older "
        "than the benchmark: --only tutorial --against 30f3fdb --bench-at 5d09f56)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.bench_at and not args.against:
        parser.error("--bench-at goes with --against")
    if args.against:
        from .against import compare

        extra = ["--threads", str(args.threads), "--wait-idle", str(args.wait_idle)]
        compare(args.against, args.only or ["ops"], rounds=args.rounds,
                extra=[*extra, "--quick"] if args.quick else extra,
                bench_at=args.bench_at)  # fmt: skip
        return
    torch.set_num_threads(args.threads)
    if args.delete_batch:
        from duet.scientist import client

        client.DELETE_BATCH = args.delete_batch
    os.environ["BENCH_MALLOC"] = args.malloc  # the owner processes read it
    allocator = pin_malloc() if args.malloc == "pinned" else "glibc's adaptive allocator"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    print(f"duet benchmarks ({'quick' if args.quick else 'full'}): {machine()}")
    print(f"duet at {revision()}")
    deletes = (
        f"deletes every {args.delete_batch} drops" if args.delete_batch else "deletes per frame"
    )
    print(
        f"torch.set_num_threads({args.threads}) in the owner and in this process; {allocator}; "
        f"{deletes}\n",
        flush=True,
    )

    started = time.perf_counter()
    server, url = start_signaling_server()
    ctx = Context(quick=args.quick, threads=args.threads, url=url, profile_dir=args.profile)
    try:
        for name in names:
            print(f"[{name}] {wait_idle(args.wait_idle)}", flush=True)
            sampler = Sampler().start() if args.profile else None
            begun, ticks = time.perf_counter(), cpu_ticks()
            try:
                BENCHMARKS[name](ctx)
            except Exception as exc:  # one broken benchmark does not hide the others
                print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
            finally:
                if sampler is not None:
                    sampler.stop()
                    path = ctx.profile_path("scientist", name)
                    assert path is not None
                    Path(path).write_text(sampler.report(f"scientist (driver), {name}"))
            if name in SHARED and not (set(names[names.index(name) + 1 :]) & SHARED):
                ctx.close()
            print(f"  ({time.perf_counter() - begun:.1f} s; {others_busy(ticks)})\n", flush=True)
    finally:
        ctx.close()
        terminate(server)

    print(f"{'figure':<46} {'value':>12} {'unit':<8} | baseline | target")
    for figure in ctx.figures:
        print(figure.line())
    missed = [f.name for f in ctx.figures if f.met is False]
    print(f"\n{len(missed)} target(s) missed; total {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine(), "figures": [f.__dict__ for f in ctx.figures]}, indent=1
            )
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
