"""6. The owner's memory over 1,000 training steps (no growth from leaked objects).

A fresh owner process publishes a small data set (1,024 x 64 features, labels); the scientist
trains a small MLP (Linear(64,128), ReLU, Linear(128,10), LogSoftmax) with SGD on batches of 64
indexed from it, twice, each in a fresh owner process: with a ``sync()`` every 10 steps (the
owner's backlog of unrun actions stays small) and fully pipelined (the scientist issues actions
far faster than the owner runs them, so up to a whole checkpoint interval of actions waits in
the owner's memory). Two syncs end each checkpoint (so the deletes of dropped pointers have run). At each checkpoint the owner's VmRSS and VmHWM (peak) are read from
/proc/<pid>/status.

Judged: VmRSS and VmHWM at step 1,000 vs step 10. To tell a leak from memory the C allocator
keeps after ``free``, the owner also reports, at step 10 and at the end:
its store size, the count of objects the garbage collector tracks (and which types grew), and
the RSS after ``gc.collect(); malloc_trim(0)``. The first heap walk and trim come before the
step-10 reading, and the peak is reset (``/proc/<pid>/clear_refs``) after them, so their own
allocations do not count; nothing else runs in the owner between the readings. The full run goes on to
3,000 steps to show the trend (``BENCH_MEMORY_STEPS=5000,10000`` adds checkpoints);
``BENCH_TRACEMALLOC=1`` adds tracemalloc's top growing lines.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path

from .common import Context, Figure
from .data import SMALL_FEATURES, SMALL_SAMPLES, batch_slice
from .procs import Owner, rss_kib

MIB = 1024


def owner_stats(owner: Owner) -> dict[str, object]:
    """What the owner's store, label records and heap hold (and which types grew since last)."""
    owner.process.send("types")
    return owner.process.event("stats", timeout=120)


def trim(owner: Owner) -> dict[str, int]:
    """Have the owner return freed C heap to the OS (glibc malloc_trim); its RSS after."""
    owner.process.send("trim")
    owner.process.event("trimmed")
    return rss_kib(owner.pid)


def reset_peak(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def run(ctx: Context) -> None:
    measure(ctx, sync_every=10)
    measure(ctx, sync_every=0)


def measure(ctx: Context, *, sync_every: int) -> None:
    how = f"sync every {sync_every} steps" if sync_every else "pipelined"
    checkpoints = (10, 100, 250, 500, 750, 1000) + (() if ctx.quick else (2000, 3000))
    extra = os.environ.get("BENCH_MEMORY_STEPS")  # more checkpoints, e.g. "5000,10000"
    if extra:
        checkpoints += tuple(int(s) for s in extra.split(",") if int(s) > checkpoints[-1])
    owner = Owner(
        ctx.url, "serve", "--data", "small",
        threads=ctx.threads, profile=ctx.profile_path("owner", f"memory-{sync_every}"),
        malloc="glibc",  # the owner's memory as users run it: glibc's own allocator settings
    )  # fmt: skip
    duet = owner.join()
    before = rss_kib(owner.pid)
    nn = duet.torch.nn
    duet.torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(SMALL_FEATURES, 128), nn.ReLU(), nn.Linear(128, 10), nn.LogSoftmax(dim=1)
    )
    optimizer = duet.torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = duet.store["x"], duet.store["y"]
    readings: dict[int, dict[str, int]] = {}
    trimmed: dict[int, dict[str, int]] = {}
    stats: dict[int, dict[str, object]] = {}
    done = 0
    for checkpoint in checkpoints:
        while done < checkpoint:
            batch = batch_slice(done, SMALL_SAMPLES)
            optimizer.zero_grad()
            loss = duet.torch.nn.functional.nll_loss(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            done += 1
            if sync_every and done % sync_every == 0:
                duet.sync()
        gc.collect()  # drop this side's dead pointers so their deletes go out with the sync
        duet.sync()
        duet.sync()  # the deletes sent with the first sync have run too
        if checkpoint == 10:  # heap walk and trim before the first reading, none in between
            stats[checkpoint] = owner_stats(owner)
            trimmed[checkpoint] = trim(owner)
            reset_peak(owner.pid)
        readings[checkpoint] = rss_kib(owner.pid)
    trimmed[done] = trim(owner)
    stats[done] = owner_stats(owner)
    final_loss = loss.get(request_block=True, name="loss", timeout_secs=60).item()
    owner.close(duet)

    r10, r1k = readings[10], readings[1000]
    growth = (r1k["VmRSS"] - r10["VmRSS"]) / MIB
    peak = (r1k["VmHWM"] - r10["VmHWM"]) / MIB
    kept = (trimmed[done]["VmRSS"] - trimmed[10]["VmRSS"]) / MIB
    held = {k: (v["objects"], v["gc_objects"]) for k, v in stats.items()}
    trail = ", ".join(f"{k}: {v['VmRSS'] / MIB:.1f}" for k, v in readings.items())
    ctx.report(
        Figure(
            f"owner VmRSS growth, 10 -> 1000 steps, {how}", growth, "MiB",
            target="no growth beyond noise (< 2 MiB)", met=abs(growth) < 2.0,
            baseline=f"{r10['VmRSS'] / MIB:.1f} -> {r1k['VmRSS'] / MIB:.1f} MiB",
            note=f"before training {before['VmRSS'] / MIB:.1f} MiB",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            f"owner VmHWM (peak) growth, 10 -> 1000, {how}", peak, "MiB",
            target="< 2 MiB", met=abs(peak) < 2.0,
            baseline=f"{r10['VmHWM'] / MIB:.1f} -> {r1k['VmHWM'] / MIB:.1f} MiB",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            f"  VmRSS growth, 10 -> {done}, after gc + malloc_trim", kept, "MiB",
            baseline=f"{trimmed[10]['VmRSS'] / MIB:.1f} -> {trimmed[done]['VmRSS'] / MIB:.1f} MiB",
            note=f"(store objects, gc-tracked objects) by step: {held}",
        )
    )  # fmt: skip
    if done > 1000:
        late = (readings[done]["VmRSS"] - r1k["VmRSS"]) / (done - 1000)
        ctx.report(
            Figure(
                f"  VmRSS slope, step 1000 -> {done}", late, "KiB/step",
                note=f"VmRSS MiB by step: {trail}; final loss {final_loss:.4f}",
            )
        )  # fmt: skip
    else:
        print(f"  VmRSS MiB by step: {trail}; final loss {final_loss:.4f}")
    print(f"  heap types grown, step 10 -> {done}: {stats[done].get('grown')}")
    for line in stats[done].get("traced_growth", []):  # type: ignore[attr-defined]
        print(f"  tracemalloc: {line}")
