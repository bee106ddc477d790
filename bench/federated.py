"""7. A FedAvg round over 8 owners vs over 1: what training across owners in parallel costs.

Eight owner processes (``bench/federated_owner.py``) each hold 64 samples and train a small
model (one linear layer, 650 weights) for one local epoch of two batches a round, so a round is
bound by latency, not by torch: the scientist sends the global weights, each owner runs two
plan steps, and releases its model and its loss through handlers. The same driver runs rounds
over one of those owners and over all eight, alternating, after two warm-up rounds each (an
owner's first round starts its torch). Figures are medians of rounds: the 8-owner round beside
the 1-owner round, as a ratio, and beside the 8 owners' rounds run one after the other. The CPU
the scientist (this process) and the owners used per round is printed too: on a machine with
fewer cores than owners, the owners' CPU, not latency, bounds the round; the round is then
compared with that floor (all the CPU it took, spread over the cores). So the same is measured
again with 10 ms of one-way latency emulated on every channel (``DUET_EMULATED_DELAY_MS``: each
frame is handed on 10 ms after it arrived, in order), where a round waits on the network as it
does between sites, the case the 1.3x target is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import nn

from .common import Context, Figure, median
from .procs import Process, child_env, terminate, thread_stats

OWNERS = 8


DELAY_MS = 10  # one way: a 20 ms round trip, a link between two sites in one region


def run(ctx: Context) -> None:
    loopback = _measure(ctx, delay_ms=0)
    _report(ctx, loopback, "")
    wan = _measure(ctx, delay_ms=DELAY_MS)
    _report(ctx, wan, f" at {2 * DELAY_MS} ms RTT")


def _measure(ctx: Context, *, delay_ms: int) -> dict[str, Any]:
    """Rounds over one owner and over all eight, alternating, with ``delay_ms`` of emulated
    one-way latency on every channel (both sides: the owners' and this process's)."""
    from duet import federated as fl
    from duet.identity import Identity

    delay = {"DUET_EMULATED_DELAY_MS": str(delay_ms)}
    owners = [
        Process(
            "-m",
            "bench.federated_owner",
            "--url",
            ctx.url,
            "--threads",
            str(ctx.threads),
            "--seed",
            str(i),
            env=child_env(DUET_HOME=tempfile.mkdtemp(prefix="bench-owner-"), **delay),
        )  # fmt: skip
        for i in range(OWNERS)
    ]
    sessions: dict = {}
    before = os.environ.get("DUET_EMULATED_DELAY_MS")
    os.environ.update(delay)  # read by each channel as it is made
    try:
        addresses = []
        for i, owner in enumerate(owners):
            session_id = owner.event("ready")["session_id"]
            owner_id = owner.event("published")["owner_id"]
            addresses.append(fl.OwnerAddress(f"owner-{i}", session_id, ctx.url, owner_id))
        who = Identity.ephemeral("bench scientist")
        with contextlib.redirect_stdout(io.StringIO()):
            sessions = fl.join_owners(addresses, identity=who, timeout_secs=60)
        torch.manual_seed(0)
        model = nn.Linear(64, 10)
        training = fl.LocalTraining(epochs=1, batch_size=32, optimizer_options={"lr": 0.1})

        def federation(names: list[str]) -> fl.Federation:
            chosen = {name: sessions[name] for name in names}
            return fl.Federation(
                model, chosen, data="data", training=training, show="none",
                round_timeout_secs=60, min_owners=len(names),
            )  # fmt: skip

        one, all_ = federation(["owner-0"]), federation(list(sessions))
        alone = [federation([name]) for name in sessions]  # each owner on its own
        for fed in (one, all_, one, all_, *alone):  # warm-up: an owner's first round starts torch
            asyncio.run(fed.run_round())
        single, many, serial = [], [], []
        cpu = {"one": [0.0, 0.0], "all": [0.0, 0.0]}  # scientist, owners: CPU seconds
        pids = [owner.pid for owner in owners]
        for _ in range(ctx.n(15, 5)):
            single.append(_round(one, cpu["one"], pids))
            many.append(_round(all_, cpu["all"], pids))
            serial.append(sum(asyncio.run(fed.run_round()).secs for fed in alone))
        counted = all(r.counted for r in all_.history)
    finally:
        if before is None:
            os.environ.pop("DUET_EMULATED_DELAY_MS", None)
        else:
            os.environ["DUET_EMULATED_DELAY_MS"] = before
        for session in sessions.values():
            session.close()
        for owner in owners:
            terminate(owner)
    n = len(single)
    return {
        "single": single, "many": many, "serial": serial, "counted": counted, "n": n,
        "cpu": {k: [1000 * c / n for c in v] for k, v in cpu.items()},
    }  # fmt: skip


def _report(ctx: Context, m: dict[str, Any], link: str) -> None:
    single, many, serial, n = m["single"], m["many"], m["serial"], m["n"]
    per_round = m["cpu"]
    s, a = median(single), median(many)
    ctx.report(
        Figure(
            f"federated: FedAvg round, 1 owner{link}", s * 1000, "ms",
            note=f"median of {n} rounds; min {min(single) * 1000:.1f} ms; CPU per round: "
            f"scientist {per_round['one'][0]:.1f} ms, owner {per_round['one'][1]:.1f} ms",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            f"federated: FedAvg round, {OWNERS} owners{link}", a * 1000, "ms",
            baseline=f"ratio {a / s:.2f} vs 1 owner", target="ratio <= 1.3", met=a / s <= 1.3,
            note=f"median of {n} rounds, mean {statistics.mean(many) * 1000:.1f} ms; every round "
            f"with all {OWNERS}: {m['counted']}; CPU per round: scientist "
            f"{per_round['all'][0]:.1f} ms, owners {per_round['all'][1]:.1f} ms on "
            f"{os.cpu_count()} cores",
        )
    )  # fmt: skip
    cores = os.cpu_count() or 1
    floor = sum(per_round["all"]) / min(cores, OWNERS + 1)  # ms: the CPU the round needs, spread
    ctx.report(
        Figure(
            f"federated: {OWNERS}-owner round vs its CPU floor{link}", a * 1000 / floor, "x",
            baseline=f"floor {floor:.1f} ms = CPU of scientist + owners / {cores} cores",
            note="near 1: the owners ran in parallel and the cores, not waiting, bound the round",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            f"federated: {OWNERS} one-owner rounds in a row{link}", median(serial) * 1000, "ms",
            baseline=f"the {OWNERS}-owner round is {a / median(serial):.2f} of it",
            note="the same owners trained one after the other",
        )
    )  # fmt: skip


def _round(fed: Any, cpu: list[float], pids: list[int]) -> float:
    """One round's seconds; adds the CPU this process and the owners used to ``cpu``."""
    before = time.process_time(), _owners_cpu(pids)
    report = asyncio.run(fed.run_round())
    cpu[0] += time.process_time() - before[0]
    cpu[1] += _owners_cpu(pids) - before[1]
    return report.secs


def _owners_cpu(pids: list[int]) -> float:
    return sum(seconds for pid in pids for seconds, _ in thread_stats(pid).values())
