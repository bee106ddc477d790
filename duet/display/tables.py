"""Tables for notebooks: pandas DataFrames built from plain rows (dicts), one function per table.

Domain types hand over their rows (``rows()``) and their ``.pandas`` calls the table here, which
picks the columns, names and orders them, and shows a scientist's text as data (``shown``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pandas as pd

from .text import shown

Rows = Iterable[Mapping[str, object]]


def _listed(value: object) -> list[object]:
    """A row's list (tags), as a list: none is an empty one."""
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return []


Row = Mapping[str, object]


def _frame(rows: Rows, columns: Mapping[str, Callable[[Row], object]]) -> pd.DataFrame:
    """One table: each column's header and how it reads a row, in order (the columns are there,
    in that order, even with no rows)."""
    return pd.DataFrame(
        [{header: read(r) for header, read in columns.items()} for r in rows],
        columns=list(columns),
    )


def _key(key: str) -> Callable[[Row], object]:
    return lambda r: r[key]


def _shown(key: str) -> Callable[[Row], object]:
    """A scientist's text, shown as data."""
    return lambda r: shown(r[key])


SHOWN_TABLE_COLUMNS = 12  # a published table's columns named in the Type cell, at most


def _stored_type(row: Row) -> object:
    """A row's type; a published table's with its columns and their dtypes (what the owner
    published about it), as ``table: year (int64), weight_g (float64)``."""
    columns = row.get("columns")
    if not isinstance(columns, Mapping):
        return row.get("type", "")
    named = [f"{shown(str(n))} ({shown(str(d))})" for n, d in columns.items()]
    more = len(named) - SHOWN_TABLE_COLUMNS
    listed = ", ".join(named[:SHOWN_TABLE_COLUMNS]) + (f", and {more} more" if more > 0 else "")
    return f"{row.get('type', '')}: {listed}"


STORE_COLUMNS: dict[str, Callable[[Row], object]] = {
    "ID": _key("id"),
    "Tags": lambda r: _listed(r.get("tags")),
    "Description": lambda r: r.get("description", ""),
    "Type": _stored_type,
    "Shape": lambda r: r.get("shape"),
    "Size": lambda r: r.get("size"),
}


def store_frame(rows: Rows) -> pd.DataFrame:
    return _frame(rows, STORE_COLUMNS)


REQUEST_COLUMNS: dict[str, Callable[[Row], object]] = {
    "Request ID": _key("id"),
    "Scientist": _key("peer"),
    "Scientist name": _shown("scientist_name"),
    "Name": _shown("name"),
    "Reason": _shown("reason"),
    "Object ID": _key("object_id"),
    "Object type": _key("object_type"),
    "Tags": lambda r: _listed(r["tags"]),
    "Op": _key("op"),
    "Elements": _key("elements"),
    "Status": _key("status"),
    "Decided by": _key("decided_by"),
    "Arrival time": _key("arrival"),
    "Grant": _key("grant"),
    # a DP release the owner reviews: its charge (epsilon) and what would remain after it
    "DP price": lambda r: r.get("dp_price"),
    "DP left after": lambda r: r.get("dp_left_after"),
}


def requests_frame(rows: Rows) -> pd.DataFrame:
    """The owner's requests (``RequestQueue.rows()``); names and reasons are the scientist's."""
    return _frame(rows, REQUEST_COLUMNS)


HANDLER_COLUMNS: dict[str, Callable[[Row], object]] = {
    "Handler ID": _key("id"),
    "Name": _key("name"),
    "Tags": _key("tags"),
    "Scientist": _key("scientist"),
    "Kind": _key("kind"),
    "Max elements": _key("max_elements"),
    "Action": _key("action"),
    "Timeout (s)": _key("timeout_secs"),
    "Print local": _key("print_local"),
    "Element quota": _key("element_quota"),
    "Released": _key("released"),
    "Matched": _key("matched"),
}


def handlers_frame(rows: Rows) -> pd.DataFrame:
    """The owner's handlers (``HandlerList.rows()``)."""
    return _frame(rows, HANDLER_COLUMNS)


HELD_COLUMNS: dict[str, Callable[[Row], object]] = {
    "ID": _key("id"),
    "Scientist": _key("scientist"),
    "Scientist name": _key("scientist_name"),
    "Type": _key("type"),
    "Shape": _key("shape"),
    "Size": _key("size"),
    "Op": _key("op"),
    "Owner's data": _key("owners_data"),
}


def held_frame(rows: Rows) -> pd.DataFrame:
    """What scientists hold on the owner's machine (``OwnerStoreView.held_rows()``)."""
    return _frame(rows, HELD_COLUMNS)


ACCESS_COLUMNS: dict[str, Callable[[Row], object]] = {
    "Scientist": _key("scientist"),
    "Name": _key("name"),
    "Connect": _key("connect"),
    "Data tags": lambda r: "all" if r["tags"] is None else sorted(map(str, _listed(r["tags"]))),
    "Requests": _key("requests"),
}


def access_frame(rows: Rows) -> pd.DataFrame:
    """The owner's access rules (``AccessRules.rows()``); ``tags`` None: all the data."""
    return _frame(rows, ACCESS_COLUMNS)


AUDIT_COLUMNS = ["Time", "Event", "Scientist", "Name", "Request", "Object", "Detail"]


def audit_frame(rows: Rows) -> pd.DataFrame:
    """The audit log's events, oldest first (``AuditLog.rows()``: ``time`` in seconds since the
    epoch, ``detail`` as JSON text); the name is the one a scientist claimed."""
    frame = pd.DataFrame(
        [
            (r["time"], r["kind"], r["scientist"], r["name"], r["request"], r["object"],
             r["detail"])
            for r in rows
        ],
        columns=AUDIT_COLUMNS,
    )  # fmt: skip
    frame["Time"] = pd.to_datetime(frame["Time"], unit="s")
    frame["Name"] = frame["Name"].map(shown)  # a claimed name is the scientist's text
    return frame


SENT_REQUESTS_COLUMNS = ["id", "name", "reason", "object id", "status", "note", "sent", "answered"]


def sent_requests_frame(rows: Rows) -> pd.DataFrame:
    """The requests a scientist sent (``SentRequests.rows()``): its own words, shown as they are."""
    return pd.DataFrame(
        [
            [r["id"], r["name"], r["reason"], r["object_id"], r["status"], r["note"], r["sent"],
             r["answered"]]
            for r in rows
        ],
        columns=SENT_REQUESTS_COLUMNS,
    )  # fmt: skip


SCIENTIST_COLUMNS: dict[str, Callable[[Row], object]] = {
    "Scientist": _key("scientist"),
    "Name": _key("name"),
    "Connected since": lambda r: pd.to_datetime(r["since"], unit="s"),
    "Objects": _key("objects"),
    "Bytes": _key("bytes"),
    "Pending requests": _key("pending"),
    "Rule": _key("rule"),
}


def scientists_frame(rows: Rows) -> pd.DataFrame:
    """The scientists connected now (``ScientistsView.rows()``; ``since``: seconds since the
    epoch). ``name`` is the owner's, or the claimed one already quoted and marked."""
    return _frame(rows, SCIENTIST_COLUMNS)


def known_scientists_frame(rows: Rows) -> pd.DataFrame:
    """The scientists an owner identity knows (``ScientistsView.known_rows()``; first and last
    seen in seconds since the epoch)."""
    frame = pd.DataFrame(list(rows), columns=["id", "name", "role", "first_seen", "last_seen"])
    for column in ("first_seen", "last_seen"):
        frame[column] = pd.to_datetime(frame[column], unit="s")
    return frame


def history_frame(rows: Rows) -> pd.DataFrame:
    """A federation's rounds, one row per round and owner (``History.rows()``); the columns
    are the rows' keys, the round's metrics among them."""
    return pd.DataFrame(list(rows))


PRIVACY_COLUMNS: dict[str, Callable[[Row], object]] = {
    "Scientist": _key("scientist"),
    "Dataset": _key("dataset"),
    "Budget of": lambda r: r.get("budget_of"),
    "Epsilon": lambda r: r.get("epsilon"),
    "Delta": lambda r: r.get("delta"),
    "Spent": lambda r: r.get("spent"),
    "Remaining": lambda r: r.get("remaining"),
    "Reviewed": lambda r: r.get("review"),
    "Problem": lambda r: r.get("problem"),
}


def privacy_frame(rows: Rows) -> pd.DataFrame:
    """The owner's privacy budgets (``Ledger.rows()``): one row per scientist and dataset,
    whose budget is in force ("*": the default), what was spent of it, and whether the owner
    reviews each release by hand."""
    return _frame(rows, PRIVACY_COLUMNS)
