"""Tables for notebooks: pandas DataFrames built from plain rows (dicts), one function per table.

Domain types hand over their rows (``rows()``) and their ``.pandas`` calls the table here, which
picks the columns, names and orders them, and shows a scientist's text as data (``shown``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from .text import shown

Rows = Iterable[dict[str, Any]]


def store_frame(rows: Rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "ID": r["id"],
                "Tags": list(r.get("tags") or []),
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
                "Tags": list(r["tags"]),
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
