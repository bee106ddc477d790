"""The owner's memory: every request, decision and release, and the scientists it knows.

Appended to SQLite in the duet home (``audit.sqlite3``, write-ahead log): each event is its own
committed transaction, so an owner killed mid-session (even ``kill -9``) loses no event that
was recorded, and the log survives restarts. ``duet.audit.pandas`` reads it.

Events: ``connect`` / ``leave`` / ``refused`` (a scientist at the door), ``request`` (what was
asked for: name, reason, object, the owner's tags and op, kind and size), ``decision`` (accepted,
denied or timed out, and by whom: the owner by hand, which handler, which rule, or a timeout),
``release`` (what left: the sha-256 of exactly the bytes sent, their size, to whom), ``grant``
(an accepted request lets its scientist get the same, unchanged object again: the digest of
what was reviewed). A release through a grant is a ``release`` whose ``decided_by`` is
"grant of request <id>"; ``releases()`` lists every release with who or what decided it.

The scientists an owner knows are kept per owner identity (one duet home may hold several, all
writing to one database): a scientist one identity confirmed is a stranger to another. A
database from before this (its ``scientists`` table keyed by the scientist alone) is upgraded
when opened: its rows are kept aside (``scientists_before_owners``) and trust nobody.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from .json_text import encoder

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)
# one encoder made once (json.dumps builds one per call)
_encode = encoder()

_EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- the rowid: rows are only ever appended, never deleted
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    scientist TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL DEFAULT '',
    object TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
)
"""
#: who each owner identity knows; ``named_by_owner``: ``name`` is the owner's, not a claim
_SCIENTISTS = """
CREATE TABLE IF NOT EXISTS scientists (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    named_by_owner INTEGER NOT NULL DEFAULT 0,
    role TEXT NOT NULL DEFAULT 'scientist',
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (owner, id)
)
"""
#: where the rows of a database from before owners had identities of their own are kept
_UNOWNED = "scientists_before_owners"
_KNOWN_FIELDS = ("id", "name", "named_by_owner", "role", "first_seen", "last_seen")
_ROW_FIELDS = ("time", "kind", "scientist", "name", "request", "object", "detail")
_INSERT = "INSERT INTO events (time, kind, scientist, name, request, object, detail) VALUES"
# one event as written: time, kind, scientist, name, request, object, detail (its JSON text)
_Row = tuple[float, str, str, str, str, str, str]
#: an event as read back: its columns and the fields of its detail (JSON values)
Event = dict[str, object]


class KnownScientist(TypedDict):
    """What an owner identity knows of a scientist (a row of ``scientists``)."""

    id: str
    name: str
    named_by_owner: bool
    role: str
    first_seen: float
    last_seen: float


class AuditLog:
    """An append-only log in SQLite. ``path=None``: in memory (for in-process duets)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            check_same_thread=False,
            isolation_level=None,  # autocommit: every statement is its own transaction
            timeout=30.0,
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
        self._create_tables()
        self._listeners: list[Callable[[Event], None]] = []
        self._watchers: list[Callable[[], None]] = []  # told that something was recorded
        self._batches = threading.local()  # a thread's events recorded in one transaction

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Events this thread records inside are committed together, in one transaction, when
        it ends (before the caller lets out anything they record: a handler's release is one
        commit of its request, decision and release, not three). Nested batches are one."""
        if getattr(self._batches, "rows", None) is not None:
            yield
            return
        self._batches.rows = []
        try:
            yield
        finally:
            rows, self._batches.rows = self._batches.rows, None
            if rows:
                self._write(rows)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener(event)`` after each event is recorded (on the recording thread; an
        exception it raises is logged, never lost into the owner's work): a console log, a
        monitor."""
        self._listeners.append(listener)

    def add_watcher(self, watcher: Callable[[], None]) -> None:
        """Call ``watcher()`` after each write (one or a batch of events): for what only needs
        to know that something was recorded (a page that reads the log again), without the
        cost of decoding every event."""
        self._watchers.append(watcher)

    # ---- events
    def record(
        self,
        kind: str,
        *,
        scientist: str = "",
        name: str = "",
        request: str = "",
        object_id: str = "",
        **detail: object,
    ) -> None:
        """Append one event (committed before this returns, or when this thread's batch
        ends)."""
        row = (time.time(), kind, scientist, name, request, object_id,
               _encode(detail))  # fmt: skip
        pending = getattr(self._batches, "rows", None)
        if pending is not None:
            pending.append(row)
        else:
            self._write([row])

    def _write(self, rows: list[_Row]) -> None:
        # one statement, so one transaction (the connection commits each statement)
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        with self._lock:
            self._db.execute(f"{_INSERT} {values}", [v for row in rows for v in row])
        for watcher in list(self._watchers):
            try:
                watcher()
            except Exception:
                log.exception("an audit watcher failed")
        if not self._listeners:
            return
        for now, kind, scientist, name, request, object_id, text in rows:
            event = dict(time=now, kind=kind, scientist=scientist, name=name, request=request,
                         object=object_id, **json.loads(text))  # fmt: skip
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("an audit listener failed")

    def events(self, kind: str | None = None) -> list[Event]:
        query = "SELECT time, kind, scientist, name, request, object, detail FROM events"
        args: tuple[str, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", args).fetchall()
        return [
            dict(zip(("time", "kind", "scientist", "name", "request", "object"), row[:6],
                     strict=True), **json.loads(row[6]))
            for row in rows
        ]  # fmt: skip

    def recent(self, limit: int = 50) -> list[Event]:
        """The newest ``limit`` events, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, kind, scientist, name, request, object, detail FROM events "
                "ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            dict(zip(("time", "kind", "scientist", "name", "request", "object"), row[:6],
                     strict=True), **json.loads(row[6]))
            for row in rows
        ]  # fmt: skip

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        """Stop calling ``listener`` (or a watcher); no error if it was not added."""
        if listener in self._listeners:
            self._listeners.remove(listener)
        if listener in self._watchers:
            self._watchers.remove(listener)  # type: ignore[arg-type]

    def releases(self) -> list[Event]:
        """Every release, oldest first, each with ``decided_by``: the owner, a handler, a rule
        (from the request's decision) or "grant of request <id>"."""
        decided = {e["request"]: e.get("decided_by", "") for e in self.events("decision")}
        return [
            {**event, "decided_by": event.get("decided_by") or decided.get(event["request"], "")}
            for event in self.events("release")
        ]

    def rows(self) -> list[dict[str, object]]:
        """Every event as recorded, oldest first (what ``.pandas`` shows): ``time`` in seconds
        since the epoch, ``detail`` as its JSON text."""
        with self._lock:
            rows = self._db.execute(
                "SELECT time, kind, scientist, name, request, object, detail FROM events "
                "ORDER BY seq"
            ).fetchall()
        return [dict(zip(_ROW_FIELDS, row, strict=True)) for row in rows]

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import audit_frame

        return audit_frame(self.rows())

    # ---- scientists each owner identity knows
    def _create_tables(self) -> None:
        """Create the tables, upgrading a ``scientists`` table keyed by the scientist alone (in
        one transaction: two owners opening the file at once upgrade it once)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_EVENTS)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(scientists)")}
                if columns and "owner" not in columns:
                    # whose trust those rows were cannot be told: they trust nobody now
                    self._db.execute(f"ALTER TABLE scientists RENAME TO {_UNOWNED}")
                    log.warning(
                        "%s: the known scientists it held were not kept per owner identity; "
                        "they are known to no owner now (kept in table %s)",
                        self.path, _UNOWNED,
                    )  # fmt: skip
                self._db.execute(_SCIENTISTS)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def known(self, scientist: str, *, owner_id: str) -> KnownScientist | None:
        """What owner identity ``owner_id`` knows of ``scientist`` (ID, name, whether the owner
        gave that name, role, first and last seen), or None: a stranger to it."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_KNOWN_FIELDS)} FROM scientists WHERE owner = ? AND id = ?",
                (owner_id, scientist),
            ).fetchone()
        return None if row is None else _known_row(row)

    def remember(
        self,
        scientist: str,
        name: str = "",
        *,
        owner_id: str,
        named_by_owner: bool = False,
        role: str = "scientist",
    ) -> None:
        """Owner identity ``owner_id`` knows ``scientist`` from now on (or saw it again).

        Only for a scientist that identity really confirmed: its ID typed or given by the owner,
        a confirm function's yes, or an access rule naming it. ``name``: the owner's name for it
        (``named_by_owner``), or else the name it claims, which never replaces the owner's."""
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO scientists (owner, id, name, named_by_owner, role, first_seen, "
                "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(owner, id) DO UPDATE SET "
                "last_seen = excluded.last_seen, "
                "name = CASE WHEN excluded.named_by_owner OR NOT named_by_owner "
                "THEN excluded.name ELSE name END, "
                "named_by_owner = MAX(named_by_owner, excluded.named_by_owner)",
                (owner_id, scientist, name, int(named_by_owner), role, now, now),
            )

    def forget(self, scientist: str, *, owner_id: str) -> None:
        """Owner identity ``owner_id`` no longer knows ``scientist`` (it is a stranger again)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM scientists WHERE owner = ? AND id = ?", (owner_id, scientist)
            )

    def known_scientists(self, *, owner_id: str) -> list[KnownScientist]:
        """Every scientist owner identity ``owner_id`` knows, first seen first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_KNOWN_FIELDS)} FROM scientists WHERE owner = ? "
                "ORDER BY first_seen",
                (owner_id,),
            ).fetchall()
        return [_known_row(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        return f"<audit log in {where}>"


def _known_row(row: tuple[str, str, int, str, float, float]) -> KnownScientist:
    """A row of ``scientists`` (its columns ``_KNOWN_FIELDS``, as the table declares them)."""
    scientist, name, named_by_owner, role, first_seen, last_seen = row
    return KnownScientist(
        id=scientist, name=name, named_by_owner=bool(named_by_owner), role=role,
        first_seen=first_seen, last_seen=last_seen,
    )  # fmt: skip
