"""A federation's progress board: a live table of the owners during a round (state, epoch,
batches, loss, samples, time).

In a terminal it is a ``rich`` live display; in Jupyter an output that updates in place; in
anything else (a pipe, a log) one line per owner state change. ``listeners`` hear every change
(``listener(owner, OwnerProgress)``), whatever is shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rich.console import Console
from rich.live import Live
from rich.table import Table

log = logging.getLogger(__name__)
REFRESH_SECS = 0.2  # batch counts redraw at most this often; state changes at once


@dataclass(frozen=True)
class OwnerProgress:
    """Where one owner is in the current round."""

    round: int = 0
    state: str = "waiting"
    epoch: int = 0
    epochs: int = 0
    batches: int = 0  # batches the owner has run in this epoch (acknowledged)
    total_batches: int = 0
    samples: int | None = None
    loss: float | None = None
    secs: float = 0.0


Listener = Callable[[str, OwnerProgress], None]


class _Handle(Protocol):
    """IPython's display handle (duet does not depend on IPython)."""

    def update(self, obj: object) -> None: ...


class ProgressBoard:
    """Per-owner progress, shown as ``show`` says: "auto" (a live table in a terminal or
    Jupyter, lines otherwise), "lines", or "none"."""

    def __init__(self, owners: Sequence[str], *, show: str = "auto", title: str = "federated"):
        self.rows: dict[str, OwnerProgress] = {name: OwnerProgress() for name in owners}
        self.listeners: list[Listener] = []
        self.title = title
        self._console = Console()
        mode = show
        if show == "auto":
            if self._console.is_jupyter:
                mode = "jupyter"
            elif self._console.is_terminal:
                mode = "live"
            else:
                mode = "lines"
        if mode not in ("live", "jupyter", "lines", "none"):
            raise ValueError(f"show must be 'auto', 'lines' or 'none', not {show!r}")
        self.mode = mode
        self._live: Live | None = None
        self._handle: _Handle | None = None  # IPython's, once shown
        self._drawn = 0.0

    def start(self) -> None:
        if self.mode == "live" and self._live is None:
            self._live = Live(self.table(), console=self._console, auto_refresh=False)
            self._live.start()
        elif self.mode == "jupyter" and self._handle is None:
            from IPython.display import display

            self._handle = display(self.table(), display_id=True)

    def stop(self) -> None:
        self._draw(force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._handle = None

    def update(self, owner: str, **changes: Any) -> None:  # Any: the row's fields, by name
        """Change ``owner``'s row; redraw (a state change at once, a batch count throttled)."""
        before = self.rows[owner]
        row = replace(before, **changes)
        self.rows[owner] = row
        state_changed = row.state != before.state or row.round != before.round
        if self.mode == "lines" and state_changed:
            print(self._line(owner, row), flush=True)
        self._draw(force=state_changed)
        for listener in list(self.listeners):
            try:
                listener(owner, row)
            except Exception:  # a listener's bug must not stop the round
                log.exception("a progress listener failed")

    def _draw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._drawn < REFRESH_SECS:
            return
        self._drawn = now
        if self._live is not None:
            self._live.update(self.table(), refresh=True)
        elif self._handle is not None:
            self._handle.update(self.table())

    def table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for column in ("owner", "round", "state", "epoch", "batches", "samples", "loss", "secs"):
            table.add_column(column, justify="left" if column in ("owner", "state") else "right")
        for owner, row in self.rows.items():
            table.add_row(
                owner,
                str(row.round or ""),
                row.state,
                f"{row.epoch}/{row.epochs}" if row.epochs else "",
                f"{row.batches}/{row.total_batches}" if row.total_batches else "",
                "" if row.samples is None else str(row.samples),
                "" if row.loss is None else f"{row.loss:.4f}",
                f"{row.secs:.1f}" if row.secs else "",
            )
        return table

    @staticmethod
    def _line(owner: str, row: OwnerProgress) -> str:
        loss = "" if row.loss is None else f", loss {row.loss:.4f}"
        return f"[{owner}] round {row.round}: {row.state}{loss}"


__all__ = ["OwnerProgress", "ProgressBoard"]
