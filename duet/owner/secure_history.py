"""What an owner must remember of its secure-aggregation rounds across restarts, in SQLite.

An owner never answers a round id twice, never submits one update twice, and never gives one
trained model's update to two rounds: two sums over different rosters would give away the
difference, its update. Kept in memory only, that memory would end with the owner's process, and
a scientist could replay a round id, or the same trained model, to an owner restarted with the
same identity (an owner node restarted, a notebook run again). So it is kept here, in
``secure_history.sqlite3`` in the duet home by default (``OwnerSession(secure_history=path)``),
per owner identity and federation, and every record is written, and made durable, before what it
guards leaves: the round's keys, the masked input. A record that cannot be written aborts the
round (fail closed).

Why SQLite in WAL mode with ``synchronous=FULL``, as the privacy ledger: a committed record
survives a ``kill -9`` and a power cut, and ``BEGIN IMMEDIATE`` makes check-and-record one step
that no other writer (two processes serving one duet home with the same identity) can
interleave with. Append-only (triggers refuse UPDATE and DELETE):

    rounds  (owner, federation, round, label, at)         one per round id this owner took part
            in: ``round`` the SHA-256 of its id, ``label`` its first 64 characters (for messages)
    given   (owner, kind, digest, federation, label, at)  one per update ("update") and trained
            model ("trained") given to a round: their SHA-256, unique per owner across its
            federations (the same update in two federations is the same leak)

Digests only, so a row's size is bounded: about 0.5 KB of file per round with 200-character
round ids (496 bytes measured by ``test_the_history_grows_by_digests_only``), 50 MB for
``MAX_ROUNDS`` (100,000) rounds of one federation, the most it records for one owner identity
(then it refuses new rounds: the owner allows the federation under a new name, or opens the
file with a larger ``max_rounds``).

Read when the first secure-aggregation rule is allowed: a file that is not this history (not
SQLite, another application's, a newer schema, damaged pages or rows) raises
SecureHistoryCorrupt there, naming the file; it is never silently started afresh, which would
forget what the owner gave.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import DuetError, DuetTimeout, UsageError

SCHEMA_VERSION = 1
#: SQLite's ``application_id`` of this file ("dsah"): another program's database is not taken
#: for a history that happens to be empty
APPLICATION_ID = int.from_bytes(b"dsah", "big")
LOCK_TIMEOUT_SECS = 30.0
MAX_ROUNDS = 100_000  # per owner identity and federation
LABEL_CHARS = 64
KINDS = ("update", "trained")

_SCHEMA = """
CREATE TABLE rounds (
    owner TEXT NOT NULL,
    federation TEXT NOT NULL,
    round BLOB NOT NULL CHECK (length(round) = 32),
    label TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (owner, federation, round)
) WITHOUT ROWID;
CREATE TABLE given (
    owner TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('update', 'trained')),
    digest BLOB NOT NULL CHECK (length(digest) = 32),
    federation TEXT NOT NULL,
    label TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (owner, kind, digest)
) WITHOUT ROWID;
""" + "".join(
    f"""
CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
BEGIN SELECT RAISE(ABORT, 'the secure-aggregation history is append-only'); END;"""
    for table in ("rounds", "given")
    for verb in ("update", "delete")
)
_TABLES = {"rounds", "given"}


class SecureHistoryError(DuetError):
    """The owner's secure-aggregation history could not be read or written: no round goes on
    (an owner takes part in none it could not remember)."""


class SecureHistoryCorrupt(SecureHistoryError):
    """The file is not an owner's secure-aggregation history, or not one this duet can read.
    Starting afresh would forget which rounds and updates the owner gave: a scientist could
    replay them. The message names the file and what to do."""


def round_digest(round_id: str) -> bytes:
    return hashlib.sha256(b"duet-secagg/1 round|" + round_id.encode()).digest()


class SecureHistory:
    """The history file at ``path`` (created if missing), checked as it opens. Thread-safe:
    one connection, one lock; several processes may open one path (SQLite orders their
    writes). A write that cannot take the file's lock within ``lock_timeout_secs`` (default
    ``LOCK_TIMEOUT_SECS``) raises DuetTimeout, having written nothing. Raises
    SecureHistoryCorrupt (see the module), SecureHistoryError (the file cannot be opened)."""

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout_secs: float | None = None,
        max_rounds: int = MAX_ROUNDS,
    ):
        if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
            raise UsageError(f"max_rounds is a number of rounds, at least 1, not {max_rounds!r}")
        self.path = Path(path)
        self.max_rounds = max_rounds
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        timeout = LOCK_TIMEOUT_SECS if lock_timeout_secs is None else lock_timeout_secs
        try:  # autocommit mode: every transaction here is opened explicitly
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise SecureHistoryError(
                f"cannot open the secure-aggregation history {self.path}: {exc}"
            ) from exc
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            with self._write():  # created or checked under the write lock: one process makes it
                application, version, tables = self._identity()
                if application == 0 and version == 0 and not tables:  # a new (or empty) file
                    for statement in _SCHEMA.split(";\n"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    application, version, tables = APPLICATION_ID, SCHEMA_VERSION, _TABLES
            if application != APPLICATION_ID:
                shown = ", ".join(sorted(tables)) or "none"
                raise self._corrupt(
                    f"is not a secure-aggregation history (another program's SQLite database: "
                    f"application id {application}, tables {shown})",
                    "point secure_history= at this owner's history file, or at a new path",
                )
            if version > SCHEMA_VERSION:
                raise self._corrupt(
                    f"is a secure-aggregation history of schema {version}; this duet reads "
                    f"{SCHEMA_VERSION}",
                    "upgrade duet",
                )
            if version != SCHEMA_VERSION or not _TABLES <= tables:
                raise self._corrupt(
                    f"is damaged (schema {version}, tables {sorted(tables)})", _RESTORE
                )
            checked = [row[0] for row in self._db.execute("PRAGMA quick_check")]
            if checked != ["ok"]:
                raise self._corrupt(f"is damaged ({'; '.join(checked[:3])})", _RESTORE)
            (bad,) = self._db.execute(
                "SELECT (SELECT count(*) FROM rounds WHERE typeof(round) != 'blob' OR"
                " length(round) != 32) + (SELECT count(*) FROM given WHERE typeof(digest) !="
                " 'blob' OR length(digest) != 32 OR kind NOT IN ('update', 'trained'))"
            ).fetchone()
            if bad:
                raise self._corrupt(f"holds {bad} rows that are not digests", _RESTORE)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise SecureHistoryError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.OperationalError as exc:  # cannot be opened or locked: not its content
            raise SecureHistoryError(
                f"cannot open the secure-aggregation history {self.path} ({exc}): check the "
                "path and its permissions"
            ) from exc
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or unreadable
            raise self._corrupt(f"cannot be read as SQLite ({exc})", _RESTORE) from exc

    def _identity(self) -> tuple[int, int, set[str]]:
        application = self._db.execute("PRAGMA application_id").fetchone()[0]
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        return application, version, tables

    def _corrupt(self, problem: str, fix: str) -> SecureHistoryCorrupt:
        return SecureHistoryCorrupt(
            f"the secure-aggregation history {self.path} {problem}: no secure aggregation "
            f"starts until it is readable ({fix}); starting afresh would forget which rounds "
            "and updates this owner gave"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, holding the file's write lock from its first statement."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise DuetTimeout(
                f"the secure-aggregation history {self.path} stayed locked by another writer: "
                f"{exc}; nothing was recorded"
            ) from exc
        try:
            yield
            self._db.execute("COMMIT")  # may fail too (a full disk): then nothing is recorded
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back on its own
                self._db.execute("ROLLBACK")
            raise

    def memory(self, owner: str, federation: str) -> OwnerHistory:
        """What owner identity ``owner`` remembers of federation ``federation`` (a
        ``duet.secure.RoundHistory``, and the trained models it gave)."""
        return OwnerHistory(self, owner, federation.lower())

    # ---- records (OwnerHistory's), each one transaction
    def begin_round(self, owner: str, federation: str, round_id: str) -> bool:
        digest = round_digest(round_id)
        with self._recording():
            if self._db.execute(
                "SELECT 1 FROM rounds WHERE owner = ? AND federation = ? AND round = ?",
                (owner, federation, digest),
            ).fetchone():
                return False
            (count,) = self._db.execute(
                "SELECT count(*) FROM rounds WHERE owner = ? AND federation = ?",
                (owner, federation),
            ).fetchone()
            if count >= self.max_rounds:
                raise SecureHistoryError(
                    f"{self.path} holds {count} rounds of federation {federation!r} for this "
                    f"owner, its limit (max_rounds): allow the federation under a new name to "
                    "go on"
                )
            self._db.execute(
                "INSERT INTO rounds (owner, federation, round, label, at) VALUES (?, ?, ?, ?, ?)",
                (owner, federation, digest, round_id[:LABEL_CHARS], time.time()),
            )
        return True

    def give(
        self, owner: str, federation: str, kind: str, digest: bytes, round_id: str
    ) -> str | None:
        if kind not in KINDS or len(digest) != 32:
            raise UsageError(f"a {kind!r} digest of {len(digest)} bytes is not recorded here")
        with self._recording():
            row = self._db.execute(
                "SELECT label, federation FROM given WHERE owner = ? AND kind = ? AND digest = ?",
                (owner, kind, digest),
            ).fetchone()
            if row is not None:
                label, where = row
                return label if where == federation else f"{label} (federation {where!r})"
            self._db.execute(
                "INSERT INTO given (owner, kind, digest, federation, label, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (owner, kind, digest, federation, round_id[:LABEL_CHARS], time.time()),
            )
        return None

    @contextmanager
    def _recording(self) -> Iterator[None]:
        with self._lock:
            try:
                with self._write():
                    yield
            except sqlite3.Error as exc:  # disk full, read-only, I/O error...
                raise SecureHistoryError(
                    f"could not record in the secure-aggregation history {self.path}: {exc}"
                ) from exc

    def counts(self, owner: str) -> dict[str, int]:
        """How many rounds, updates and trained models ``owner`` recorded (every federation)."""
        with self._lock:
            (rounds,) = self._db.execute(
                "SELECT count(*) FROM rounds WHERE owner = ?", (owner,)
            ).fetchone()
            given = dict(
                self._db.execute(
                    "SELECT kind, count(*) FROM given WHERE owner = ? GROUP BY kind", (owner,)
                ).fetchall()
            )
        return {"rounds": rounds, **{kind: given.get(kind, 0) for kind in KINDS}}


_RESTORE = "restore it from a backup, or move it aside knowingly and start a new federation"


class OwnerHistory:
    """One owner identity's history of one federation, in the file (a ``RoundHistory``):
    ``begin_round``, ``submit`` (an update's digest), ``give_trained`` (a trained model's)."""

    def __init__(self, history: SecureHistory, owner: str, federation: str):
        self.file = history
        self.owner = owner
        self.federation = federation

    def begin_round(self, round_id: str) -> bool:
        return self.file.begin_round(self.owner, self.federation, round_id)

    def submit(self, digest: bytes, round_id: str) -> str | None:
        return self.file.give(self.owner, self.federation, "update", digest, round_id)

    def give_trained(self, digest: bytes, round_id: str) -> str | None:
        """Record trained model ``digest`` as given to ``round_id``; the round it was given to
        before (nothing recorded now), or None."""
        return self.file.give(self.owner, self.federation, "trained", digest, round_id)


__all__ = [
    "OwnerHistory",
    "SecureHistory",
    "SecureHistoryCorrupt",
    "SecureHistoryError",
    "round_digest",
]
