"""The owner's privacy ledger: budgets per scientist and dataset, and every charge, in SQLite.

Why SQLite in WAL mode with ``synchronous=FULL``: a budget must hold across sessions, restarts
and a ``kill -9`` of the owner, and two requests arriving together (two threads, two processes
serving the same duet home) must not both pass the check. A write transaction opened with
``BEGIN IMMEDIATE`` takes the database's one write lock before reading the spend, so
check-and-reserve is one step no other writer can interleave with; FULL makes a committed
reservation durable before ``reserve`` returns.

Append-only, so the spend is always recomputable from the rows (triggers refuse UPDATE and
DELETE on every table):

    budgets   (id, scientist, dataset, epsilon, delta, set_at, review)   the latest row per
              (scientist, dataset) is in force; scientist "*" is the default for anyone without
              their own row, applied to each scientist separately; ``review`` 1: each release
              under it waits for the owner's decision (its charge reserved meanwhile)
    entries   (id, scientist, dataset, mechanism, at)            one per reservation: the
              mechanism's JSON (its parameters, never a bare epsilon)
    outcomes  (entry_id UNIQUE, state, at)                        committed | aborted; an entry
              with no outcome is reserved. UNIQUE: an entry changes state once.

The spend of a scientist on a dataset is ``accounting.spent`` of every entry that is not
aborted (committed and reserved alike), at the delta of the budget in force. A reservation left
"reserved" by a process that died stays counted as spent: the owner cannot tell whether the job
released anything before it died, so the ledger fails closed. The owner may abort it knowingly
(``ledger.abort(ledger.reservation(entry_id))``).

Failing closed everywhere: no budget for a scientist (nor a "*" default) refuses; an entry whose
mechanism cannot be read, or a budget row that is not a valid budget, refuses (LedgerCorrupt)
rather than counting as zero.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BudgetExceeded, DuetError, DuetTimeout, UsageError
from .accounting import (
    DpSgd,
    Gaussian,
    Laplace,
    Mechanism,
    check_delta,
    check_positive,
    mechanism_from_json,
    spent,
)

__all__ = [
    "BudgetExceeded",
    "Ledger",
    "LedgerCorrupt",
    "Quote",
    "Reservation",
    "Standing",
    "no_budget",
]

ANYONE = "*"
SCHEMA_VERSION = 2  # 2: budgets.review
LOCK_TIMEOUT_SECS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scientist TEXT NOT NULL,
    dataset TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    set_at TEXT NOT NULL,
    review INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scientist TEXT NOT NULL,
    dataset TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outcomes (
    entry_id INTEGER NOT NULL UNIQUE REFERENCES entries(id),
    state TEXT NOT NULL CHECK (state IN ('committed', 'aborted')),
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_owner ON entries (scientist, dataset);
CREATE INDEX IF NOT EXISTS budgets_by_owner ON budgets (scientist, dataset);
"""
_APPEND_ONLY = "".join(
    f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}
BEGIN SELECT RAISE(ABORT, 'the privacy ledger is append-only'); END;"""
    for table in ("budgets", "entries", "outcomes")
    for verb in ("update", "delete")
)


def no_budget(scientist: str, dataset: str) -> str:
    """Why nothing is released when the owner set no budget (fail closed)."""
    return (
        f"the owner set no privacy budget on {dataset!r} for scientist {scientist}"
        ' (nor a default "*"): nothing is released under differential privacy'
    )


class LedgerCorrupt(DuetError):
    """A row in the ledger is not what the ledger writes (an unreadable mechanism, a budget that
    is not a number): every charge against that scientist and dataset is refused until the owner
    repairs it, since an unreadable charge cannot be counted as zero."""


@dataclass(frozen=True)
class Reservation:
    """A charge held against a budget: counted as spent from ``reserve`` on, until aborted.

    ``epsilon`` is what this charge adds to the spend (composition makes it the difference of
    the spend after and before); ``remaining`` what is left after it; ``review``: the budget
    it was reserved under asks the owner to decide each release."""

    entry_id: int
    scientist: str
    dataset: str
    mechanism: Mechanism
    epsilon: float
    delta: float
    remaining: float
    review: bool = False


@dataclass(frozen=True)
class Quote:
    """What a charge would cost now (``Ledger.quote``): ``epsilon`` the mechanism's alone at
    the budget's ``delta``, ``charge`` what it would add to the spend (less than ``epsilon``
    when composition helps), ``remaining`` before it and ``remaining_after``, ``fits``."""

    epsilon: float
    charge: float
    delta: float
    remaining: float
    remaining_after: float
    fits: bool


@dataclass(frozen=True)
class Standing:
    """A budget as it stands: whose row is in force (the scientist's, or "*"), its epsilon and
    delta, what was spent (reserved or committed) and what remains, and whether the owner
    reviews each release by hand."""

    budget_of: str
    epsilon: float
    delta: float
    spent: float
    remaining: float
    review: bool = False


@dataclass(frozen=True)
class _Budget:
    scientist: str  # whose row is in force: the scientist's own, or "*"
    epsilon: float
    delta: float
    review: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _name(kind: str, value: object, *, wildcard: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{kind} must be a non-empty string, not {value!r}")
    if value == ANYONE and not wildcard:
        raise UsageError(f'{kind} "*" names the default budget, not one {kind}')
    return value


def _numbers(needs: float, left: float) -> tuple[str, str]:
    """Both numbers short, but never printed equal when they differ (the reason must show why
    a charge did not fit)."""
    for digits in range(2, 18):
        a, b = f"{needs:.{digits}g}", f"{left:.{digits}g}"
        if a != b or needs == left:
            return a, b
    return repr(needs), repr(left)


class Ledger:
    """The privacy ledger at ``path`` (created if missing).

    Thread-safe: one connection, one lock. Several processes may open the same path; SQLite's
    write lock orders their reservations. A call that cannot get the write lock within
    ``lock_timeout_secs`` raises DuetTimeout with nothing written.
    """

    def __init__(self, path: str | Path, *, lock_timeout_secs: float = LOCK_TIMEOUT_SECS):
        self.path = Path(path)
        self._lock = threading.Lock()
        # autocommit mode: every transaction here is opened explicitly
        self._db = sqlite3.connect(
            self.path, timeout=lock_timeout_secs, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise UsageError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerCorrupt(
                    f"{self.path} is a ledger of schema {version}; this duet reads {SCHEMA_VERSION}"
                )
            with self._write():
                for statement in (_SCHEMA + _APPEND_ONLY).split(";\n"):
                    if statement.strip():
                        self._db.execute(statement)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(budgets)")}
                if "review" not in columns:  # a ledger of schema 1: its budgets are not reviewed
                    self._db.execute(
                        "ALTER TABLE budgets ADD COLUMN review INTEGER NOT NULL DEFAULT 0"
                    )
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, the database's write lock held from its first statement (so
        what it reads cannot change before it writes). Callers hold ``self._lock``."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DuetTimeout(
                f"the privacy ledger {self.path} stayed locked by another writer: {exc};"
                " nothing was written"
            ) from exc
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- budgets

    def set_budget(
        self, scientist: str, dataset: str, *, epsilon: float, delta: float, review: bool = False
    ) -> None:
        """Set ``scientist``'s budget on ``dataset`` (``"*"``: the default for every scientist
        without their own). A new row: the history of budgets stays readable. ``review``: each
        release under it waits for the owner's decision."""
        scientist = _name("scientist", scientist, wildcard=True)
        dataset = _name("dataset", dataset)
        epsilon = check_positive("epsilon", epsilon)
        delta = check_delta(delta)
        if not isinstance(review, bool):
            raise UsageError(f"review is True or False, not {review!r}")
        with self._lock, self._write():
            self._db.execute(
                "INSERT INTO budgets (scientist, dataset, epsilon, delta, set_at, review)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (scientist, dataset, epsilon, delta, _now(), int(review)),
            )

    def _budget(self, scientist: str, dataset: str) -> _Budget | None:
        for who in (scientist, ANYONE):
            row = self._db.execute(
                "SELECT id, epsilon, delta, review FROM budgets WHERE scientist = ? AND"
                " dataset = ?"
                " ORDER BY id DESC LIMIT 1",
                (who, dataset),
            ).fetchone()
            if row is not None:
                try:
                    epsilon = check_positive("epsilon", row["epsilon"])
                    delta = check_delta(row["delta"])
                except UsageError as exc:
                    raise LedgerCorrupt(
                        f"budget row {row['id']} in {self.path} is not a budget ({exc});"
                        f" refusing charges on {dataset!r}"
                    ) from exc
                if row["review"] not in (0, 1):
                    raise LedgerCorrupt(
                        f"budget row {row['id']} in {self.path} has review {row['review']!r};"
                        f" refusing charges on {dataset!r}"
                    )
                return _Budget(who, epsilon, delta, bool(row["review"]))
        return None

    def _charges(self, scientist: str, dataset: str) -> list[Mechanism]:
        """Every charge not aborted, committed or reserved alike."""
        rows = self._db.execute(
            "SELECT e.id, e.mechanism FROM entries e LEFT JOIN outcomes o ON o.entry_id = e.id"
            " WHERE e.scientist = ? AND e.dataset = ? AND (o.state IS NULL OR o.state != 'aborted')"
            " ORDER BY e.id",
            (scientist, dataset),
        ).fetchall()
        charges = []
        for row in rows:
            try:
                charges.append(mechanism_from_json(row["mechanism"]))
            except UsageError as exc:
                raise LedgerCorrupt(
                    f"ledger entry {row['id']} in {self.path} cannot be read ({exc}); refusing"
                    f" every charge on {dataset!r} for this scientist until the owner repairs it"
                ) from exc
        return charges

    # -- charges

    def reserve(self, scientist: str, dataset: str, mechanism: Mechanism) -> Reservation:
        """Hold ``mechanism``'s price against the budget, or refuse.

        In one write transaction: read the budget in force and every charge not aborted,
        compose them with this one at the budget's delta, and insert the reservation only if
        the total fits. Raises BudgetExceeded (no budget, or it does not fit: the message
        carries the numbers), LedgerCorrupt, DuetTimeout.
        """
        scientist = _name("scientist", scientist)
        dataset = _name("dataset", dataset)
        if not isinstance(mechanism, DpSgd | Laplace | Gaussian):
            raise UsageError(f"not a mechanism: {mechanism!r}")
        mechanism_from_json(mechanism.to_json())  # only what the ledger can read back
        with self._lock, self._write():
            budget = self._in_force(scientist, dataset)
            before = self._charges(scientist, dataset)
            spent_before = spent(before, budget.delta)
            spent_after = spent([*before, mechanism], budget.delta)
            needs = spent_after - spent_before
            left = budget.epsilon - spent_before
            if not spent_after <= budget.epsilon:  # NaN refuses too
                shown_needs, shown_left = _numbers(needs, max(left, 0.0))
                raise BudgetExceeded(
                    f"needs epsilon {shown_needs}, {shown_left} left at delta {budget.delta:g}"
                    f" (scientist {scientist} on {dataset!r}, budget {budget.epsilon:g})"
                )
            cursor = self._db.execute(
                "INSERT INTO entries (scientist, dataset, mechanism, at) VALUES (?, ?, ?, ?)",
                (scientist, dataset, mechanism.to_json(), _now()),
            )
            entry_id = cursor.lastrowid
            assert entry_id is not None  # an INSERT into a rowid table always sets it
        return Reservation(
            entry_id,
            scientist,
            dataset,
            mechanism,
            epsilon=needs,
            delta=budget.delta,
            remaining=budget.epsilon - spent_after,
            review=budget.review,
        )

    def _in_force(self, scientist: str, dataset: str) -> _Budget:
        """The budget ``scientist`` spends on ``dataset``; none refuses (fail closed)."""
        budget = self._budget(scientist, dataset)
        if budget is None:
            raise BudgetExceeded(no_budget(scientist, dataset))
        return budget

    def quote(self, scientist: str, dataset: str, mechanism: Mechanism) -> Quote:
        """What ``reserve`` would charge for ``mechanism`` now, reserving nothing: the epsilon
        it would add to the spend, what would be left, and whether it fits. Raises
        BudgetExceeded when no budget is set (nothing to price against), LedgerCorrupt."""
        scientist = _name("scientist", scientist)
        dataset = _name("dataset", dataset)
        with self._lock:
            budget = self._in_force(scientist, dataset)
            before = self._charges(scientist, dataset)
        spent_before = spent(before, budget.delta)
        spent_after = spent([*before, mechanism], budget.delta)
        return Quote(
            epsilon=spent([mechanism], budget.delta),
            charge=spent_after - spent_before,
            delta=budget.delta,
            remaining=budget.epsilon - spent_before,
            remaining_after=budget.epsilon - spent_after,
            fits=spent_after <= budget.epsilon,
        )

    def affordable(
        self, scientist: str, dataset: str, charge: Callable[[int], Mechanism], most: int
    ) -> int:
        """The largest ``n`` in ``[0, most]`` whose ``charge(n)`` would fit the budget now, for
        a charge that grows with ``n`` (a DP-SGD job's epochs). Reads the ledger once; reserves
        nothing. Raises BudgetExceeded when no budget is set, LedgerCorrupt."""
        scientist = _name("scientist", scientist)
        dataset = _name("dataset", dataset)
        with self._lock:
            budget = self._in_force(scientist, dataset)
            before = self._charges(scientist, dataset)
        low, high = 0, most  # charge(low) fits (n = 0 charges nothing), charge(high + 1) not
        while low < high:
            middle = (low + high + 1) // 2
            if spent([*before, charge(middle)], budget.delta) <= budget.epsilon:
                low = middle
            else:
                high = middle - 1
        return low

    def standing(self, scientist: str, dataset: str) -> Standing | None:
        """``scientist``'s budget on ``dataset`` as it stands (None: no budget, nor a "*")."""
        scientist = _name("scientist", scientist)
        dataset = _name("dataset", dataset)
        with self._lock:
            budget = self._budget(scientist, dataset)
            if budget is None:
                return None
            used = spent(self._charges(scientist, dataset), budget.delta)
        return Standing(
            budget.scientist, budget.epsilon, budget.delta, used, budget.epsilon - used,
            budget.review,
        )  # fmt: skip

    def commit(self, reservation: Reservation) -> None:
        """The release happened: the charge stays, for good."""
        self._settle(reservation, "committed")

    def abort(self, reservation: Reservation) -> None:
        """Nothing was released (the job failed before any output left): the charge is
        dropped from the spend. Only for a reservation still reserved."""
        self._settle(reservation, "aborted")

    def _settle(self, reservation: Reservation, state: str) -> None:
        with self._lock, self._write():
            row = self._db.execute(
                "SELECT e.scientist, e.dataset, o.state FROM entries e"
                " LEFT JOIN outcomes o ON o.entry_id = e.id WHERE e.id = ?",
                (reservation.entry_id,),
            ).fetchone()
            if row is None or (row["scientist"], row["dataset"]) != (
                reservation.scientist,
                reservation.dataset,
            ):
                raise UsageError(f"no reservation {reservation.entry_id} in {self.path}")
            if row["state"] is not None:
                raise UsageError(
                    f"reservation {reservation.entry_id} is already {row['state']}; it cannot"
                    f" become {state}"
                )
            self._db.execute(
                "INSERT INTO outcomes (entry_id, state, at) VALUES (?, ?, ?)",
                (reservation.entry_id, state, _now()),
            )

    def reservation(self, entry_id: int) -> Reservation:
        """The entry ``entry_id`` as a Reservation, for the owner to commit or abort one that a
        dead process left reserved (its price shown as the mechanism's spend alone)."""
        with self._lock:
            row = self._db.execute(
                "SELECT scientist, dataset, mechanism FROM entries WHERE id = ?", (entry_id,)
            ).fetchone()
            if row is None:
                raise UsageError(f"no reservation {entry_id} in {self.path}")
            mechanism = mechanism_from_json(row["mechanism"])
            budget = self._budget(row["scientist"], row["dataset"])
            delta = budget.delta if budget else math.nan
            alone = spent([mechanism], delta) if budget else math.nan
            left = self._remaining(row["scientist"], row["dataset"], budget)
        return Reservation(
            entry_id, row["scientist"], row["dataset"], mechanism, alone, delta, left
        )

    # -- views

    def _remaining(self, scientist: str, dataset: str, budget: _Budget | None) -> float:
        if budget is None:
            return 0.0
        return budget.epsilon - spent(self._charges(scientist, dataset), budget.delta)

    def remaining(self, scientist: str, dataset: str) -> float:
        """Epsilon left for ``scientist`` on ``dataset`` at its budget's delta (0.0 with no
        budget; negative if the owner lowered a budget below what was already spent)."""
        scientist = _name("scientist", scientist)
        dataset = _name("dataset", dataset)
        with self._lock:
            return self._remaining(scientist, dataset, self._budget(scientist, dataset))

    def rows(self) -> list[dict[str, object]]:
        """One row per (scientist, dataset) with a budget or a charge: the budget in force
        (``budget_of`` says whose: the scientist's or "*"), spent and remaining. The "*" rows
        show the default itself, with nothing spent against it as such. A pair whose rows the
        ledger cannot read says so in ``problem`` (its charges are refused meanwhile)."""
        with self._lock:
            pairs = self._db.execute(
                "SELECT scientist, dataset FROM budgets UNION SELECT scientist, dataset FROM"
                " entries ORDER BY dataset, scientist"
            ).fetchall()
            out: list[dict[str, object]] = []
            for scientist, dataset in pairs:
                row: dict[str, object] = {"scientist": scientist, "dataset": dataset}
                try:
                    budget = self._budget(scientist, dataset)
                    spent_now = None
                    if budget and scientist != ANYONE:
                        spent_now = spent(self._charges(scientist, dataset), budget.delta)
                except LedgerCorrupt as exc:  # shown where it is, the other rows still listed
                    out.append({**row, "problem": str(exc)})
                    continue
                out.append(
                    {
                        **row,
                        "budget_of": budget.scientist if budget else None,
                        "epsilon": budget.epsilon if budget else None,
                        "delta": budget.delta if budget else None,
                        "review": budget.review if budget else None,
                        "spent": spent_now,
                        "remaining": (
                            budget.epsilon - spent_now if budget and spent_now is not None else None
                        ),
                        "problem": None,
                    }
                )
            return out

    def history(
        self, scientist: str | None = None, *, last: int | None = None, dataset: str | None = None
    ) -> list[dict[str, object]]:
        """Every charge, oldest first (one scientist's with ``scientist``, on one dataset with
        ``dataset``; only the newest ``last`` with ``last``): its id, scientist, dataset,
        mechanism (JSON as stored), state (reserved, committed, aborted) and times."""
        query = (
            "SELECT e.id, e.scientist, e.dataset, e.mechanism, e.at,"
            " COALESCE(o.state, 'reserved') AS state, o.at AS settled_at"
            " FROM entries e LEFT JOIN outcomes o ON o.entry_id = e.id"
        )
        where: list[str] = []
        args: tuple[str, ...] = ()
        if scientist is not None:
            where.append("e.scientist = ?")
            args += (_name("scientist", scientist),)
        if dataset is not None:
            where.append("e.dataset = ?")
            args += (_name("dataset", dataset),)
        if where:
            query += " WHERE " + " AND ".join(where)
        if last is not None:
            if isinstance(last, bool) or not isinstance(last, int) or last < 0:
                raise UsageError(f"last must be a count of charges, not {last!r}")
            # the newest, read by the index on id, then put oldest first
            query = f"SELECT * FROM ({query} ORDER BY e.id DESC LIMIT {last}) ORDER BY id"
        else:
            query += " ORDER BY e.id"
        with self._lock:
            return [dict(row) for row in self._db.execute(query, args)]
