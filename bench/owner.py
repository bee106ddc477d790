"""The data owner's process for the benchmarks (started by ``python -m bench``).

    python -m bench.owner serve --url WS --threads T [--data mnist|small] [--big]
        one session: publish data, add handlers, serve until the scientist leaves
    python -m bench.owner setup --url WS --threads T
        for each "go" line on stdin, launch_duet and report the times (set-up benchmark)

Prints one JSON object per line (``{"event": ...}``); the library's own lines are skipped by the
driver. ``BENCH_PROFILE=<file>`` samples every thread while serving and writes the report there;
``BENCH_AUDIT=0`` keeps the audit log in memory, ``BENCH_REVIEW=0`` starts no review page (both
on by default, as ``launch_duet`` has them); ``BENCH_TIMELINE=<file>``: each get's steps
timed (``python -m bench.timeline``).
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import ctypes
import gc
import json
import os
import sys
import threading
import time
import tracemalloc

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from bench import timeline
from bench.data import BIG_ELEMENTS, mnist_like, small_data
from bench.procs import pin_malloc
from bench.sampler import Sampler


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def serve(args: argparse.Namespace) -> None:
    marks = os.environ.get(timeline.ENV)  # python -m bench.timeline: mark each get's steps
    if marks:
        timeline.install("owner")
    duet = sy.launch_duet(
        args.url,
        confirm=False,
        on_ready=lambda sid, url: emit("ready", session_id=sid),
        audit=os.environ.get("BENCH_AUDIT", "1") != "0",
        review=os.environ.get("BENCH_REVIEW", "1") != "0",
    )
    x, y = mnist_like() if args.data == "mnist" else small_data()
    x.send(duet, tags=["x"], description="images" if args.data == "mnist" else "features")
    y.send(duet, tags=["y"], description="labels")
    if args.data == "mnist":  # the tutorial's way: one dataset, loaded by a remote DataLoader
        duet.publish(torch.utils.data.TensorDataset(x, y), tags=["train"], description="x, y")
    if args.big:
        big = torch.randn(BIG_ELEMENTS, generator=torch.Generator().manual_seed(1))
        big.send(duet, tags=["big"], description="50 MB")
    for name in ("small", "big", "loss", "check", "train_size"):  # everything this owner has
        duet.requests.add_handler(name=name, tags=["x", "y", "train", "big"], action="accept")
    sampler = Sampler().start() if os.environ.get("BENCH_PROFILE") else None
    threading.Thread(target=answer_stats, args=(duet,), daemon=True).start()
    emit("published", pid=os.getpid())
    duet.wait_closed()
    if sampler is not None:
        sampler.stop()
        with open(os.environ["BENCH_PROFILE"], "w") as out:
            out.write(sampler.report(f"owner process ({args.data} session)"))
    if marks:
        timeline.write(marks)
    emit("closed", requests=len(duet.requests.history))


def answer_stats(duet: sy.OwnerSession) -> None:
    """On a "stats" line: what the owner holds (reads internals; for leak hunting only); on a
    "threads" line, its threads' native ids and names; on an "idle" line, how long its
    workers have waited for work."""
    previous: collections.Counter[str] = collections.Counter()
    snapshot = None
    for line in sys.stdin:
        if line.strip() == "trim":  # give freed C heap back to the OS: retained, or leaked?
            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            emit("trimmed")
            continue
        if line.strip() == "threads":  # thread names by native id, to read per-thread CPU
            emit("threads", ids={str(t.native_id): t.name for t in threading.enumerate()})
            continue
        if line.strip() == "idle":  # how long the workers have waited for work, so far
            links = list(duet.links.values())
            emit("idle", secs=sum(x.service.idle_secs for x in links if x.service is not None))
            continue
        if line.strip() not in ("stats", "types"):
            continue
        gc.collect()
        services = [link.service for link in duet.links.values() if link.service is not None]
        fields: dict[str, object] = {
            "objects": len(duet.objects._objects),
            "label_records": count(duet.objects, "labels._records"),
            "failed": sum(
                getattr(e, "failure", None) is not None for e in duet.objects._objects.values()
            ),
            "overflow": sum(count(s, "executor._overflow") for s in services),
            "waiting": sum(count(s, "_waiting") for s in services),
            "requests": len(duet.requests.history),
            "gc_objects": len(gc.get_objects()),
        }
        if line.strip() == "types":
            counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
            if previous:
                fields["grown"] = (counts - previous).most_common(8)
            previous = counts
        if tracemalloc.is_tracing():  # BENCH_TRACEMALLOC=1: Python allocations that grew
            now = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            if snapshot is not None:
                diff = now.compare_to(snapshot, "lineno")[:6]
                fields["traced_growth"] = [
                    f"{d.size_diff / 1024:+.0f} KiB {d.traceback}" for d in diff
                ]
            fields["traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
            snapshot = now
        emit("stats", **fields)


def count(obj: object, path: str) -> int:
    """len() of an internal collection of the owner, 0 if it has moved (internals change)."""
    for name in path.split("."):
        obj = getattr(obj, name, None)
    return len(obj) if isinstance(obj, collections.abc.Sized) else 0


def setup(args: argparse.Namespace) -> None:
    emit("ready")
    for line in sys.stdin:
        if line.strip() != "go":
            break
        started = time.monotonic()
        duet = sy.launch_duet(
            args.url,
            confirm=False,
            on_ready=lambda sid, url: emit("session", session_id=sid, t=time.monotonic()),
        )
        emit("connected", t_call=started, t_connected=time.monotonic())
        duet.wait_closed()
        emit("closed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "setup"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", choices=["mnist", "small"], default="mnist")
    parser.add_argument("--big", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if os.environ.get("BENCH_MALLOC", "pinned") == "pinned":
        pin_malloc()
    if os.environ.get("BENCH_TRACEMALLOC"):
        tracemalloc.start()
    serve(args) if args.mode == "serve" else setup(args)


if __name__ == "__main__":
    main()
