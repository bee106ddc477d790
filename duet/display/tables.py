"""Tables for notebooks: pandas DataFrames built from plain rows (dicts), one function per table.

Domain types hand over their rows (``rows()``) and their ``.pandas`` calls the table here, which
picks the columns, names and orders them, and shows a scientist's text as data (``shown``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from .text import shown

Rows = Iterable[Mapping[str, object]]


def _listed(value: object) -> list[object]:
    """A row's list (tags), as a list: none is an empty one."""
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return []


def store_frame(rows: Rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "ID": r["id"],
                "Tags": _listed(r.get("tags")),
                "Description": r.get("description", ""),
                "Type": r.get("type", ""),
                "Shape": r.get("shape"),
                "Size": r.get("size"),
            }
            for r in rows
        ],
        columns=["ID", "Tags", "Description", "Type", "Shape", "Size"],
    )


def requests_frame(rows: Rows) -> pd.DataFrame:
    """The owner's requests (``RequestQueue.rows()``); names and reasons are the scientist's."""
    return pd.DataFrame(
        [
            {
                "Request ID": r["id"],
                "Scientist": r["peer"],
                "Scientist name": shown(r["scientist_name"]),
                "Name": shown(r["name"]),
                "Reason": shown(r["reason"]),
                "Object ID": r["object_id"],
                "Object type": r["object_type"],
                "Tags": _listed(r["tags"]),
                "Op": r["op"],
                "Elements": r["elements"],
                "Status": r["status"],
                "Decided by": r["decided_by"],
                "Arrival time": r["arrival"],
                "Grant": r["grant"],
            }
            for r in rows
        ],
        columns=["Request ID", "Scientist", "Scientist name", "Name", "Reason", "Object ID",
                 "Object type", "Tags", "Op",
                 "Elements", "Status", "Decided by", "Arrival time", "Grant"],
    )  # fmt: skip


def handlers_frame(rows: Rows) -> pd.DataFrame:
    """The owner's handlers (``HandlerList.rows()``)."""
    return pd.DataFrame(
        [
            {
                "Handler ID": h["id"],
                "Name": h["name"],
                "Tags": h["tags"],
                "Scientist": h["scientist"],
                "Kind": h["kind"],
                "Max elements": h["max_elements"],
                "Action": h["action"],
                "Timeout (s)": h["timeout_secs"],
                "Print local": h["print_local"],
                "Element quota": h["element_quota"],
                "Released": h["released"],
                "Matched": h["matched"],
            }
            for h in rows
        ],
        columns=["Handler ID", "Name", "Tags", "Scientist", "Kind", "Max elements", "Action", "Timeout (s)", "Print local",
                 "Element quota", "Released", "Matched"],
    )  # fmt: skip


def held_frame(rows: Rows) -> pd.DataFrame:
    """What scientists hold on the owner's machine (``OwnerStoreView.held_rows()``)."""
    return pd.DataFrame(
        [
            {
                "ID": r["id"], "Scientist": r["scientist"], "Scientist name": r["scientist_name"],
                "Type": r["type"], "Shape": r["shape"], "Size": r["size"], "Op": r["op"],
                "Owner's data": r["owners_data"],
            }
            for r in rows
        ],
        columns=["ID", "Scientist", "Scientist name", "Type", "Shape", "Size", "Op",
                 "Owner's data"],
    )  # fmt: skip


def access_frame(rows: Rows) -> pd.DataFrame:
    """The owner's access rules (``AccessRules.rows()``); ``tags`` None: all the data."""
    return pd.DataFrame(
        [
            {
                "Scientist": r["scientist"],
                "Name": r["name"],
                "Connect": r["connect"],
                "Data tags": "all" if r["tags"] is None else sorted(map(str, _listed(r["tags"]))),
                "Requests": r["requests"],
            }
            for r in rows
        ],
        columns=["Scientist", "Name", "Connect", "Data tags", "Requests"],
    )


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


def scientists_frame(rows: Rows) -> pd.DataFrame:
    """The scientists connected now (``ScientistsView.rows()``; ``since``: seconds since the
    epoch). ``name`` is the owner's, or the claimed one already quoted and marked."""
    return pd.DataFrame(
        [
            {
                "Scientist": r["scientist"],
                "Name": r["name"],
                "Connected since": pd.to_datetime(r["since"], unit="s"),
                "Objects": r["objects"],
                "Bytes": r["bytes"],
                "Pending requests": r["pending"],
                "Rule": r["rule"],
            }
            for r in rows
        ],
        columns=["Scientist", "Name", "Connected since", "Objects", "Bytes",
                 "Pending requests", "Rule"],
    )  # fmt: skip


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


PRIVACY_COLUMNS = ["Scientist", "Dataset", "Budget of", "Epsilon", "Delta", "Spent", "Remaining",
                   "Problem"]  # fmt: skip


def privacy_frame(rows: Rows) -> pd.DataFrame:
    """The owner's privacy budgets (``Ledger.rows()``): one row per scientist and dataset,
    whose budget is in force ("*": the default), and what was spent of it."""
    return pd.DataFrame(
        [
            [r["scientist"], r["dataset"], r.get("budget_of"), r.get("epsilon"), r.get("delta"),
             r.get("spent"), r.get("remaining"), r.get("problem")]
            for r in rows
        ],
        columns=PRIVACY_COLUMNS,
    )  # fmt: skip
