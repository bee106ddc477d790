"""Secure aggregation's cost over a plain FedAvg round, side by side in one run (issue 20).

    PYTHONPATH=. python -m bench.secure_aggregation                # 1, 2 and 3
    PYTHONPATH=. python -m bench.secure_aggregation --in-process   # 1 and 2 only
    PYTHONPATH=. python -m bench.secure_aggregation --processes    # 3 only
    PYTHONPATH=. python -m bench.secure_aggregation --processes --owners 3 --rounds 5
    PYTHONPATH=. python -m bench.secure_aggregation --processes --quick   # smoke run
    python -m bench --only secure_aggregation                      # 3, as a figure of the suite

1. Rounds over duets: three owners in this process (in-memory channels, real frames, each
   owner's worker a thread of this process), the same data and training, a plain federation
   and a secure one (``secure_aggregation=True``), for the tests' model (64-16-10, 1,210
   weights) and for a 1M-weight model, and eight owners for the 1M-weight model; medians of
   rounds 2 onwards (round 1 sets up), and the CPU a round took in this process (every
   thread: owners, scientist, network), which the machine's other load does not inflate.
2. The protocol alone (``duet.secure.Relay``, no wire): one round of a 1M-element update with
   3 and 8 owners: what the cryptography and the masks cost, per round.
3. Rounds over real processes: a signaling server process, N owner processes
   (``bench/secure_owner.py``, each with a duet home and so an identity of its own) and this
   process the scientist, joining each owner over WebRTC on 127.0.0.1. Each owner publishes
   the same data as in 1 and allows a plain federation; once every owner has printed its identity ID,
   this driver tells each the roster and each allows a secure federation over it (the owners'
   roster comes from the owners, relayed here as a stand-in for their own channel). Both
   federations run over the same sessions and the same ~1M-weight model (``large()``): one
   warm-up round each, then ``--rounds`` rounds alternating plain and secure; medians, the
   ratio secure/plain (issue 20's target: at most 2x) and the CPU each round took in the
   owners (all their threads) and in this process, from /proc. ``--owners`` (default 3 and
   8); ``--quick``: 3 owners, the small model, one round each (after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import duet as sy
from duet import federated as fl
from duet.identity import Identity
from duet.secure import Layout, OwnerRound, Quantiser, Relay, RoundSpec, model_digest

from .common import Context, Figure, cpu_ticks, others_busy
from .procs import Process, child_env, start_signaling_server, terminate, thread_stats

ROUNDS = 4
STARTUP_SECS = 300.0  # eight owners importing torch at once on two cores take a while
ROUND_SECS = 600.0


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def large() -> nn.Module:  # 999,985 weights
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 13_333), nn.ReLU(), nn.Linear(13_333, 10))


def data(seed: int, n: int = 256) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=g)
    return torch.utils.data.TensorDataset(x, torch.randint(0, 10, (n,), generator=g))


def federation(make: type | object, *, secure: bool, owners: int = 3) -> fl.Federation:
    model = make()  # type: ignore[operator]
    elements = sum(p.numel() for p in model.state_dict().values())
    nodes = [sy.OwnerSession() for _ in range(owners)]
    ids = [n.identity.id for n in nodes]
    sessions = {}
    for i, node in enumerate(nodes):
        node.publish(data(i), tags=["data"], description="bench")
        if secure:
            fl.allow_federated_training(node, "data", model_elements=elements,
                                        secure_aggregation=True, owners=ids)  # fmt: skip
        else:
            fl.allow_federated_training(node, "data", model_elements=elements)
        _, scientist = sy.duet_pair(owner=node, identity=Identity.ephemeral("scientist"),
                                    max_bytes=1 << 30)  # fmt: skip
        sessions[f"owner{i}"] = scientist
    training = fl.LocalTraining(epochs=1, batch_size=64, optimizer_options={"lr": 0.01},
                                release_loss=False)  # fmt: skip
    return fl.Federation(model, sessions, data="data", training=training, show="none",
                         secure_aggregation=secure, round_timeout_secs=600)  # fmt: skip


def rounds(make: object, secure: bool, owners: int = 3) -> tuple[float, float]:
    """Median wall seconds of rounds 2 onwards, and the CPU seconds (every thread of this
    process: owners, scientist, network) a round took on average over them."""
    fed = federation(make, secure=secure, owners=owners)
    try:
        history = fed.fit(rounds=1)  # sets up
        cpu = time.process_time()
        history = fed.fit(rounds=ROUNDS - 1)
        cpu = (time.process_time() - cpu) / (ROUNDS - 1)
    finally:
        for member in fed.members:
            member.session.close()
    assert all(r.counted for r in history), [r.summary() for r in history]
    return statistics.median(r.secs for r in history[1:]), cpu


def protocol_only(owners: int, size: int = 1_000_000) -> float:
    identities = [Identity.ephemeral("owner") for _ in range(owners)]
    roster = tuple(i.id for i in identities)
    update = torch.zeros(size, dtype=torch.float64)
    digest = model_digest({"w": update})
    spec = RoundSpec("bench", roster, digest, Quantiser(clip=1e4), owners // 2 + 1)
    updates = {i.id: torch.randn(size, dtype=torch.float64) for i in identities}  # not timed
    started = time.perf_counter()
    parties = [OwnerRound(i, spec, expected_owners=roster, model_digest=digest)
               for i in identities]  # fmt: skip
    Relay(spec, Layout.of(update)).run(parties, updates)
    return time.perf_counter() - started


@dataclass
class ProcessRounds:
    """Rounds over owner processes: seconds of each, and the CPU seconds each kind of round
    took in all (scientist: this process; owners: every thread of every owner process)."""

    owners: int
    weights: int
    pids: list[int] = field(default_factory=list)
    plain: list[float] = field(default_factory=list)
    secure: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(
        default_factory=lambda: {"plain": [0.0, 0.0], "secure": [0.0, 0.0]}
    )

    def median(self, kind: str) -> float:
        return statistics.median(getattr(self, kind))

    def paired_ratio(self) -> float:
        """The median of each secure round over the plain round just before it: other load
        that comes and goes slows both of a pair alike."""
        return statistics.median(s / p for p, s in zip(self.plain, self.secure, strict=True))

    def cpu_ms(self, kind: str) -> tuple[float, float]:
        """Scientist's and owners' CPU per round of ``kind``, in ms."""
        n = len(getattr(self, kind))
        scientist, owners = self.cpu[kind]
        return 1000 * scientist / n, 1000 * owners / n

    def line(self) -> str:
        plain, secure = self.median("plain"), self.median("secure")
        cpu = {k: self.cpu_ms(k) for k in ("plain", "secure")}
        return (
            f"  {self.weights:,} weights, {self.owners} owner processes: plain "
            f"{plain * 1000:.0f} ms | secure {secure * 1000:.0f} ms | {secure / plain:.2f}x "
            f"(median of {len(self.plain)} rounds each; of the pairs' ratios "
            f"{self.paired_ratio():.2f}x)\n"
            f"    CPU per round, scientist / owners (all {self.owners}): plain "
            f"{cpu['plain'][0]:.0f} / {cpu['plain'][1]:.0f} ms, secure {cpu['secure'][0]:.0f} / "
            f"{cpu['secure'][1]:.0f} ms\n"
            f"    rounds (ms): plain {[round(s * 1000) for s in self.plain]}, "
            f"secure {[round(s * 1000) for s in self.secure]}; owner pids {self.pids} (stopped)"
        )


def over_processes(
    url: str, *, owners: int, make: Callable[[], nn.Module], rounds: int, warmup: int = 1,
    threads: int = 1,
) -> ProcessRounds:  # fmt: skip
    """Plain and secure rounds, alternating, over ``owners`` owner processes
    (``bench/secure_owner.py``) joined from this process through the signaling server at
    ``url``. Every owner process is stopped before this returns, also on failure."""
    models = {"plain": make(), "secure": make()}  # the same weights: one seed
    weights = sum(p.numel() for p in models["plain"].state_dict().values())
    result = ProcessRounds(owners, weights)
    processes: list[Process] = []
    sessions: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-secure-") as homes:
        try:
            for i in range(owners):
                home = os.path.join(homes, f"owner{i}")  # its identity, its secure history
                os.mkdir(home)
                processes.append(
                    Process(
                        "-m", "bench.secure_owner", "--url", url, "--seed", str(i),
                        "--elements", str(weights), "--threads", str(threads),
                        env=child_env(DUET_HOME=home),
                    )
                )  # fmt: skip
            addresses = []
            for i, process in enumerate(processes):
                session_id = process.event("ready", STARTUP_SECS)["session_id"]
                owner_id = process.event("published", STARTUP_SECS)["owner_id"]
                addresses.append(fl.OwnerAddress(f"owner{i}", session_id, url, owner_id))
            roster = ",".join(a.owner_id for a in addresses if a.owner_id)
            for process in processes:
                process.send(f"roster {roster}")
            for process in processes:
                process.event("allowed", STARTUP_SECS)
            who = Identity.ephemeral("bench scientist")
            with contextlib.redirect_stdout(io.StringIO()):
                sessions = fl.join_owners(addresses, identity=who, timeout_secs=STARTUP_SECS)
            training = fl.LocalTraining(epochs=1, batch_size=64, optimizer_options={"lr": 0.01},
                                        release_loss=False)  # fmt: skip
            feds = {
                kind: fl.Federation(
                    models[kind], sessions, data="data", training=training, show="none",
                    name=kind, secure_aggregation=kind == "secure", min_owners=owners,
                    round_timeout_secs=ROUND_SECS,
                )
                for kind in ("plain", "secure")
            }  # fmt: skip
            pids = result.pids = [p.pid for p in processes]
            for _ in range(warmup):  # a federation's first round sends the model, starts torch
                for fed in feds.values():
                    _counted(asyncio.run(fed.run_round()))
            for _ in range(rounds):
                for kind, fed in feds.items():
                    before = time.process_time(), _owners_cpu(pids)
                    report = _counted(asyncio.run(fed.run_round()))
                    result.cpu[kind][0] += time.process_time() - before[0]
                    result.cpu[kind][1] += _owners_cpu(pids) - before[1]
                    getattr(result, kind).append(report.secs)
        finally:
            try:
                for session in sessions.values():
                    session.close()
            finally:  # the owners stop even if a session's close failed
                for process in processes:
                    terminate(process)
    return result


def _counted(report: fl.RoundReport) -> fl.RoundReport:
    if not report.counted:  # a round without every owner measures something else
        raise RuntimeError(f"a round did not count: {report.summary()}")
    return report


def _owners_cpu(pids: list[int]) -> float:
    return sum(seconds for pid in pids for seconds, _ in thread_stats(pid).values())


def process_cases(*, quick: bool, owners: list[int]) -> list[tuple[int, Callable[[], nn.Module]]]:
    return [(3, small)] if quick else [(n, large) for n in owners]


def run(ctx: Context) -> None:
    """``python -m bench --only secure_aggregation``: part 3, over the suite's signaling
    server, each case a figure (the ratio secure/plain; target at most 2x)."""
    for owners, make in process_cases(quick=ctx.quick, owners=[3, 8]):
        m = over_processes(ctx.url, owners=owners, make=make, rounds=ctx.n(5, 1),
                           warmup=1, threads=ctx.threads)  # fmt: skip
        plain, secure = m.median("plain"), m.median("secure")
        (sp, op), (ss, os_) = m.cpu_ms("plain"), m.cpu_ms("secure")
        ctx.report(
            Figure(
                f"secure aggregation: {owners} owners, {m.weights:,} weights", secure / plain, "x",
                baseline=f"secure {secure * 1000:.0f} ms vs plain {plain * 1000:.0f} ms; pairs "
                f"{m.paired_ratio():.2f}x",
                target="<= 2x", met=secure / plain <= 2,
                note=f"medians of {len(m.plain)} rounds; CPU per round "
                f"scientist/owners: plain {sp:.0f}/{op:.0f} ms, secure {ss:.0f}/{os_:.0f} ms",
            )
        )  # fmt: skip


def in_process() -> None:
    torch.set_num_threads(1)
    print(
        "round over in-process duets (rounds 2-4): wall median plain | secure | ratio; "
        "CPU per round plain | secure | ratio"
    )
    cases = (("64-16-10, 1,210 weights", small, 3), ("1M weights (999,985)", large, 3),
             ("1M weights (999,985)", large, 8))  # fmt: skip
    for name, make, owners in cases:
        plain, plain_cpu = rounds(make, secure=False, owners=owners)
        secure, secure_cpu = rounds(make, secure=True, owners=owners)
        print(f"  {name:24s} {owners} owners {plain * 1000:6.0f} | {secure * 1000:6.0f} ms | "
              f"{secure / plain:.2f}x; CPU {plain_cpu * 1000:6.0f} | {secure_cpu * 1000:6.0f} ms | "
              f"{secure_cpu / plain_cpu:.2f}x", flush=True)  # fmt: skip
    for owners in (3, 8):
        secs = protocol_only(owners)
        print(
            f"protocol alone, 1M-element update, {owners} owners: {secs:.2f} s a round "
            "(all owners' work and the aggregator's, one thread)",
            flush=True,
        )


def processes(*, quick: bool, owners: list[int], rounds: int) -> None:
    print(f"rounds over owner processes, WebRTC on 127.0.0.1 ({os.cpu_count()} cores)",
          flush=True)  # fmt: skip
    server, url = start_signaling_server()
    try:
        for n, make in process_cases(quick=quick, owners=owners):
            ticks = cpu_ticks()
            m = over_processes(url, owners=n, make=make, rounds=1 if quick else rounds,
                               warmup=1)  # fmt: skip
            print(f"{m.line()}\n    ({others_busy(ticks)})", flush=True)
    finally:
        terminate(server)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.secure_aggregation",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--in-process", action="store_true", help="parts 1 and 2 only")
    only.add_argument("--processes", action="store_true", help="part 3 only")
    parser.add_argument("--owners", type=int, action="append", help="part 3: owner processes "
                        "(repeatable; default 3 and 8)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="part 3: rounds of each kind")
    parser.add_argument("--quick", action="store_true",
                        help="part 3 as a smoke run: 3 owners, the small model, one round each")  # fmt: skip
    args = parser.parse_args()
    if args.owners and min(args.owners) < 3:
        parser.error("--owners: secure aggregation needs at least 3 owners")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    torch.set_num_threads(1)
    if not args.processes:
        in_process()
    if not args.in_process:
        processes(quick=args.quick, owners=args.owners or [3, 8], rounds=args.rounds)


if __name__ == "__main__":
    main()
