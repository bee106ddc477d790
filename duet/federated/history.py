"""What happened in each round, per owner, and a plot of the global model's metrics by round."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


class Outcome(StrEnum):
    """How one owner's part in one round ended."""

    UPDATED = "updated"  # its update was released and aggregated
    DENIED = "denied"  # the owner (or a handler) denied a release the round needs
    UNDECIDED = "undecided"  # nobody decided the request before its timeout
    LATE = "late"  # the round's deadline passed before its update arrived
    BUSY = "busy"  # still running an earlier round's work at this round's deadline
    LOST = "lost"  # the connection to it was lost (it died or left)
    GONE = "gone"  # lost in an earlier round: not asked any more
    FAILED = "failed"  # its training or its update failed (the reason says how)
    OVER_BUDGET = "over budget"  # its DP job was refused: the privacy budget cannot take it
    REFUSED = "refused"  # the owner refused its DP job (its settings, its access rules)
    DROPPED = (
        "dropped"  # secure aggregation: gone after the keys were agreed; the sum is the rest's
    )
    ABORTED = "aborted"  # secure aggregation: the round aborted (the report says why)


LEFT_OUT = frozenset(Outcome) - {Outcome.UPDATED}


class LeftOut(Exception):
    """This owner is left out of the round: ``outcome`` says how, ``reason`` why."""

    def __init__(self, outcome: Outcome, reason: str):
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


@dataclass
class OwnerResult:
    """One owner in one round: ``samples`` and ``loss`` as it released them (None if not),
    ``secs`` from the round's start to its update (or to giving up on it). In a DP federation,
    what its DP job spent: ``epsilon`` (the job's own), ``charged`` (what it added to the
    spend in the owner's ledger) and ``remaining`` (what is left of the budget), None when it
    released nothing."""

    owner: str
    outcome: Outcome
    samples: int | None = None
    loss: float | None = None
    secs: float = 0.0
    reason: str = ""
    epsilon: float | None = None
    charged: float | None = None
    remaining: float | None = None

    @property
    def included(self) -> bool:
        return self.outcome is Outcome.UPDATED


@dataclass
class RoundReport:
    """One round: each owner's result, whether the round counted (at least ``min_owners``
    updates: the global model changed), the global model's metrics after it, its duration.
    ``secure``: the updates were summed by secure aggregation (the scientist saw only their
    sum); ``note``: why such a round did not count (its abort)."""

    round: int
    owners: dict[str, OwnerResult]
    counted: bool
    min_owners: int
    metrics: dict[str, float] = field(default_factory=dict)
    secs: float = 0.0
    secure: bool = False
    note: str = ""

    @property
    def included(self) -> list[str]:
        return [name for name, r in self.owners.items() if r.included]

    @property
    def left_out(self) -> dict[str, OwnerResult]:
        return {name: r for name, r in self.owners.items() if not r.included}

    def summary(self) -> str:
        """One line: who took part, whether it counted, who was left out and why, metrics."""
        n, total = len(self.included), len(self.owners)
        verdict = "counted" if self.counted else f"did not count (min_owners={self.min_owners})"
        secure = ", securely aggregated" if self.secure and self.counted else ""
        text = f"round {self.round}: {n} of {total} owners{secure}, {verdict}"
        if self.note:
            text += f" ({self.note})"
        left = self.left_out
        if left:
            text += "; left out: " + "; ".join(
                f"{name} ({r.outcome.value}: {r.reason})"
                if r.reason
                else f"{name} ({r.outcome.value})"
                for name, r in left.items()
            )
        spent = {name: r.epsilon for name, r in self.owners.items() if r.epsilon is not None}
        if spent:
            text += "; epsilon " + ", ".join(f"{name} {e:.3g}" for name, e in spent.items())
        if self.metrics:
            text += "; " + ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return text + f"; {self.secs:.1f} s"


class History(list[RoundReport]):
    """The federation's rounds, in order (a list of RoundReport). ``private``: a DP
    federation's (each owner's update a DP job): its rows carry each job's epsilon, charge
    and the budget remaining."""

    def __init__(self, reports: Iterable[RoundReport] = (), *, private: bool = False):
        super().__init__(reports)
        self.private = private

    def metric(self, name: str) -> list[float | None]:
        """The global model's ``name`` after each round (None where it was not measured)."""
        return [report.metrics.get(name) for report in self]

    def epsilon(self) -> dict[str, list[float | None]]:
        """Each owner's DP job's epsilon in each round (None where it released nothing): a DP
        federation's spend, per owner per round."""
        owners = list(dict.fromkeys(name for report in self for name in report.owners))
        return {
            name: [r.owners[name].epsilon if name in r.owners else None for r in self]
            for name in owners
        }

    @property
    def pandas(self) -> pd.DataFrame:
        """One row per round and owner: outcome, samples, loss released, seconds, reason, and
        the round's metrics; in a DP federation also each job's epsilon, charge and the
        budget remaining."""
        from ..display import history_frame

        return history_frame(self.rows())

    def rows(self) -> list[dict[str, object]]:
        """What ``.pandas`` shows, as plain rows."""
        private = self.private
        rows: list[dict[str, object]] = []
        for report in self:
            for result in report.owners.values():
                spent: dict[str, object] = {}
                if private:
                    spent = {
                        "epsilon": result.epsilon,
                        "charged": result.charged,
                        "remaining": result.remaining,
                    }
                rows.append(
                    {
                        "round": report.round,
                        "owner": result.owner,
                        "outcome": result.outcome.value,
                        "samples": result.samples,
                        "loss": result.loss,
                        **spent,
                        "secs": round(result.secs, 3),
                        "reason": result.reason,
                        "counted": report.counted,
                        **({"secure": True} if report.secure else {}),
                        **report.metrics,
                    }
                )
        return rows

    def plot(self, path: str | Path, *, metric: str = "accuracy", title: str = "") -> Path:
        """Save a plot of the global model's ``metric`` by round to ``path`` (PNG, SVG, PDF: by
        its suffix); rounds that did not count are marked. Needs matplotlib
        (``pip install 'duet[plot]'``). Returns the path."""
        try:
            from matplotlib.figure import Figure  # no pyplot: the user's backend is left alone
        except ImportError as exc:
            raise UsageError(
                "plotting the history needs matplotlib: pip install 'duet[plot]'"
            ) from exc
        points = [(r.round, r.metrics[metric], r.counted) for r in self if metric in r.metrics]
        if not points:
            raise UsageError(f"no round measured {metric!r}; the history has {self._measured()}")
        figure = Figure(figsize=(6, 4), dpi=100)
        axes = figure.add_subplot()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=metric)
        missed = [(p[0], p[1]) for p in points if not p[2]]
        if missed:
            axes.scatter(
                [m[0] for m in missed], [m[1] for m in missed], marker="x", s=80, color="red",
                label="round did not count", zorder=3,
            )  # fmt: skip
        axes.set_xlabel("round")
        axes.set_ylabel(metric)
        axes.set_title(title or f"global {metric} by round")
        axes.grid(True, alpha=0.3)
        axes.legend()
        target = Path(path)
        figure.savefig(target)
        return target

    def _measured(self) -> str:
        names = sorted({k for r in self for k in r.metrics})
        return f"metrics {names}" if names else "no metrics (pass evaluate= to the Federation)"

    def __repr__(self) -> str:
        counted = sum(r.counted for r in self)
        private = ", DP" if self.private else ""
        return f"<History of {len(self)} rounds, {counted} counted{private}>"


__all__ = ["LEFT_OUT", "History", "LeftOut", "Outcome", "OwnerResult", "RoundReport"]
