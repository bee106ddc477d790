"""Tables for notebooks: the store, requests and handlers as pandas DataFrames."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from .owner.requests import Handler, Request


def store_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
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


def requests_frame(requests: Iterable[Request]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Request ID": r.id,
                "Scientist": r.peer,
                "Scientist name": r.scientist_name,
                "Name": r.name,
                "Reason": r.reason,
                "Object ID": r.object_id,
                "Object type": r.object_type,
                "Tags": list(r.tags),
                "Op": r.op,
                "Elements": r.elements,
                "Status": r.status.value,
                "Decided by": r.decided_by,
                "Arrival time": r.arrival,
            }
            for r in requests
        ],
        columns=["Request ID", "Scientist", "Scientist name", "Name", "Reason", "Object ID",
                 "Object type", "Tags", "Op",
                 "Elements", "Status", "Decided by", "Arrival time"],
    )  # fmt: skip


def handlers_frame(handlers: Iterable[Handler]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Handler ID": h.id,
                "Name": h.name,
                "Tags": h.tags,
                "Scientist": h.scientist,
                "Kind": h.kind,
                "Max elements": h.max_elements,
                "Action": h.action,
                "Timeout (s)": h.timeout_secs,
                "Print local": h.print_local,
                "Element quota": h.element_quota,
                "Released": h.released,
                "Matched": h.matched,
            }
            for h in handlers
        ],
        columns=["Handler ID", "Name", "Tags", "Scientist", "Kind", "Max elements", "Action", "Timeout (s)", "Print local",
                 "Element quota", "Released", "Matched"],
    )  # fmt: skip
