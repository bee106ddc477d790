"""``owner.privacy``: the owner's privacy budgets, per scientist and published dataset.

A thin face on ``duet.privacy.Ledger`` (the SQLite ledger in the duet home, or the path the
owner gave): budgets set here hold across sessions and restarts, because they are the ledger's
rows. The ledger is opened on first use, so an owner that never uses differential privacy
creates no file and imports none of Opacus or OpenDP.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .access import DEFAULT
from .access import _key as scientist_key

if TYPE_CHECKING:
    import pandas as pd

    from ..privacy import Ledger

ANYONE = "*"  # the ledger's default budget: every scientist without one of their own


def _scientist(scientist: object) -> str:
    """A scientist ID as the ledger keys it (the one the handshake proves), or "*"."""
    if scientist in (ANYONE, DEFAULT):
        return ANYONE
    if not isinstance(scientist, str):
        raise UsageError(f"scientist must be an ID or '*', not {scientist!r}")
    return scientist_key(scientist)


class PrivacyDesk:
    """The owner's privacy budgets: ``set_budget``, ``budget``, ``rows``, ``pandas``,
    ``history``. Thread-safe (the ledger is); ``ledger`` is the ``duet.privacy.Ledger``."""

    #: the most optimizer steps one DP job may take (a job holds its scientist's worker and
    #: the owner's CPU while it runs); the owner may change it
    max_steps: int = 100_000

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened on first use (the file is created then)."""
        with self._lock:
            if self._closed:
                raise UsageError("this owner session is closed; its privacy ledger too")
            if self._ledger is None:
                from ..privacy import Ledger

                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._ledger = Ledger(self.path)
            return self._ledger

    @property
    def in_use(self) -> bool:
        """Whether there is a ledger to read (opened, or its file exists): views that only
        show budgets (the review page) read none otherwise, so they create no file."""
        with self._lock:
            return not self._closed and (self._ledger is not None or self.path.exists())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ledger, self._ledger = self._ledger, None
        if ledger is not None:
            ledger.close()

    def set_budget(
        self, scientist: str, data: str, *, epsilon: float, delta: float, review: bool = False
    ) -> None:
        """Let ``scientist`` (an ID, or ``"*"``: the default for every scientist without a
        budget of their own, each counted separately) spend ``epsilon`` at ``delta`` on the
        published dataset tagged ``data``. A new budget replaces the one in force; what was
        spent stays spent.

        ``review``: False (the default), the budget is the decision: each DP release is charged
        and sent at once. True, each one waits in ``owner.requests`` (and on the review page)
        with its price and what would remain, its charge reserved meanwhile: accepting sends it
        and keeps the charge, denying (or its timing out) sends nothing and drops the charge.
        Handlers never decide these.

        >>> owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
        """
        self.ledger.set_budget(
            _scientist(scientist), data, epsilon=epsilon, delta=delta, review=review
        )

    def budget(self, scientist: str, data: str) -> dict[str, object] | None:
        """``scientist``'s budget on ``data`` as it stands: whose budget is in force
        (``budget_of``: the ID or "*"), ``epsilon``, ``delta``, ``spent``, ``remaining``;
        None when no budget applies (every DP release on it is refused)."""
        who = _scientist(scientist)
        if who == ANYONE:
            raise UsageError('budget() reports one scientist\'s; "*" is listed in rows()')
        standing = self.ledger.standing(who, data)
        if standing is None:
            return None
        return {
            "scientist": who,
            "dataset": data,
            "budget_of": standing.budget_of,
            "epsilon": standing.epsilon,
            "delta": standing.delta,
            "spent": standing.spent,
            "remaining": standing.remaining,
            "review": standing.review,
        }

    def rows(self) -> list[dict[str, object]]:
        """One row per (scientist, dataset) with a budget or a charge (``Ledger.rows``)."""
        return self.ledger.rows()

    @property
    def pandas(self) -> pd.DataFrame:
        """The budgets and what was spent of them, as a table."""
        from ..display.tables import privacy_frame

        return privacy_frame(self.rows())

    def history(
        self, scientist: str | None = None, *, last: int | None = None
    ) -> list[dict[str, object]]:
        """Every charge, oldest first (one scientist's with ``scientist``; the newest ``last``
        with ``last``)."""
        who = None if scientist is None else _scientist(scientist)
        return self.ledger.history(who, last=last)

    def __repr__(self) -> str:
        return f"<owner.privacy: ledger {self.path}>"


__all__ = ["ANYONE", "PrivacyDesk"]
