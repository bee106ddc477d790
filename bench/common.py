"""What every benchmark shares: settings, the shared session, figures and statistics."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procs import Owner


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

    def close(self) -> None:
        if self._duet is not None and self._owner is not None:
            self._owner.close(self._duet)
            self._duet = self._owner = None

    def report(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure


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
