"""What every benchmark shares: settings, the shared session, figures and statistics."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import Owner, thread_stats, thread_waits


@dataclass
class Figure:
    """One measured number, printed with its baseline and target."""

    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    baseline: str = ""
    note: str = ""

    def line(self) -> str:
        value = f"{self.value:,.3f}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        verdict = {True: "ok", False: "MISSED", None: ""}[self.met]
        parts = [f"  {self.name:<44} {value:>12} {self.unit:<8}"]
        if self.baseline:
            parts.append(f" | {self.baseline}")
        if self.target:
            parts.append(f" | target {self.target} {verdict}")
        if self.note:
            parts.append(f" | {self.note}")
        return "".join(parts)


@dataclass
class Context:
    quick: bool
    threads: int
    url: str
    profile_dir: Path | None = None
    _owner: Owner | None = None
    _duet: Any = None
    figures: list[Figure] = field(default_factory=list)
    _local: concurrent.futures.ThreadPoolExecutor | None = None

    def n(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def profile_path(self, who: str, bench: str) -> str | None:
        if self.profile_dir is None:
            return None
        return str(self.profile_dir / f"{who}-{bench}.txt")

    def session(self, bench: str) -> Any:
        """The shared session (MNIST-like data and a 50 MB tensor), started on first use."""
        if self._duet is None:
            self._owner = Owner(
                self.url, "serve", "--data", "mnist", "--big",
                threads=self.threads, profile=self.profile_path("owner", bench),
            )  # fmt: skip
            self._duet = self._owner.join()
        return self._duet

    @property
    def owner_pid(self) -> int:
        assert self._owner is not None
        return self._owner.pid

    def owner_threads(self) -> dict[int, str]:
        assert self._owner is not None
        return self._owner.threads()

    def owner_idle(self) -> float:
        """How long the owner's workers have waited for work, so far (seconds)."""
        assert self._owner is not None
        return self._owner.idle_secs()

    def close(self) -> None:
        if self._local is not None:
            self._local.shutdown()
            self._local = None
        if self._duet is not None and self._owner is not None:
            self._owner.close(self._duet)
            self._duet = self._owner = None

    def local(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a local baseline on this driver's worker thread, as the owner runs torch on its
        executor thread.

        Like for like matters here: with glibc's allocator the same torch step ran ~20 %
        slower on a process's main thread (its arena returns the big activation buffers to the
        OS and faults them back in every step) than on another thread, so a baseline on the
        main thread flattered every remote/local ratio.
        """
        if self._local is None:
            self._local = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-local")
        return self._local.submit(fn, *args).result()

    def report(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure


class ThreadUsage:
    """CPU time and minor page faults per thread of the owner and of this driver, summed over
    the intervals measured (``with usage.measure(): ...``).

    Threads are named by role: ``owner executor`` (duet-owner-*, where torch runs),
    ``owner duet-loop`` (network, frame decoding), ``scientist MainThread`` (issuing actions),
    ``scientist duet-loop``; the rest is ``other``.
    """

    def __init__(self, ctx: Context):
        self._owner = (ctx.owner_pid, ctx.owner_threads())
        self.cpu: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.faults: collections.defaultdict[str, int] = collections.defaultdict(int)
        #: seconds runnable but waiting for a CPU (the machine's other threads had them)
        self.waited: collections.defaultdict[str, float] = collections.defaultdict(float)

    def _snapshot(self) -> dict[str, tuple[float, int, float]]:
        here = {t.native_id: t.name for t in threading.enumerate()}
        out: dict[str, tuple[float, int, float]] = {}
        for who, (pid, names) in (("owner", self._owner), ("scientist", (os.getpid(), here))):
            waits = thread_waits(pid)
            for tid, (cpu, faults) in thread_stats(pid).items():
                name = names.get(tid, "other")
                role = f"{who} {'executor' if name.startswith('duet-owner') else name}"
                c, f, w = out.get(role, (0.0, 0, 0.0))
                out[role] = (c + cpu, f + faults, w + waits.get(tid, 0.0))
        return out

    def reset(self) -> None:
        self.cpu.clear()
        self.faults.clear()
        self.waited.clear()

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        before = self._snapshot()
        yield
        for role, (cpu, faults, waited) in self._snapshot().items():
            c, f, w = before.get(role, (0.0, 0, 0.0))
            self.cpu[role] += cpu - c
            self.faults[role] += faults - f
            self.waited[role] += waited - w

    def per_step(self, steps: int, roles: list[str]) -> str:
        """``role cpu ms (faults)`` per step for the given roles."""
        return ", ".join(
            f"{role} {1000 * self.cpu[role] / steps:.1f} ms"
            + (f" ({self.faults[role] / steps:,.0f} faults)" if self.faults[role] >= steps else "")
            for role in roles
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cpu_ticks() -> tuple[int, int, int]:
    """CPU ticks so far: busy on the machine, used by this benchmark's processes (its process
    group, finished children included), and in all."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields)
    ours, group = 0, os.getpgrp()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parts = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended
            continue
        if int(parts[2]) == group:
            ours += int(parts[11]) + int(parts[12])
            if stat.parent.name == str(os.getpid()):
                ours += int(parts[13]) + int(parts[14])
    return total - fields[3] - fields[4], ours, total


def others_busy(before: tuple[int, int, int]) -> str:
    """How much of the machine other processes used since ``before`` (they skew timings)."""
    busy, ours, total = (a - b for a, b in zip(cpu_ticks(), before, strict=True))
    share = max(0, busy - ours) / max(1, total)
    return f"other processes used {100 * share:.0f}% of the CPUs meanwhile" + (
        " (NOT idle: figures skewed)" if share > 0.05 else ""
    )
