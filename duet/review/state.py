"""What the review page shows, read from the owner's own objects as plain rows.

Everything here is read under the locks the owner's objects keep (the request queue, the
store, the access rules, the audit log) and copied, so the page renders from a snapshot that
no scientist's thread changes under it. Nothing is decided here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from ..owner.store import describe

if TYPE_CHECKING:
    from ..owner.requests import Request
    from ..sessions.owner import OwnerSession

log = logging.getLogger(__name__)
AUDIT_SHOWN = 50  # the newest audit events on the page
PREVIEW_ELEMENTS = 16  # a pending value this small is shown to the owner as it would leave


class StoreRow(TypedDict):
    """One published object."""

    id: str
    tags: list[str]
    description: str
    type: str
    shape: object  # a tensor's shape, a TensorDataset's shapes, or None
    bytes: int
    listed: bool


class RequestRow(TypedDict):
    """One pending request (``request_row``)."""

    id: str
    scientist: str
    scientist_name: str
    name: str
    reason: str
    kind: str
    shape: tuple[int, ...] | None
    elements: int
    bytes: int
    tags: list[str]
    op: str
    digest: str
    arrival: float
    expires: float | None
    note: str
    preview: str | None


class HandlerRow(TypedDict):
    """One request handler."""

    id: int
    action: str
    tags: list[str] | None
    name: str | None
    kind: str | None
    max_elements: int | None
    scientist: str | None
    element_quota: int | None
    released: int
    matched: int
    derived_inputs: bool


class AccessRow(TypedDict):
    """One access rule."""

    scientist: str
    name: str
    connect: bool
    tags: list[str] | None
    requests: bool


@dataclass
class PageState:
    owner_id: str
    # duet.scientists' rows and the audit log's events: JSON-like rows, read by key
    scientists: list[dict[str, object]] = field(default_factory=list)
    store: list[StoreRow] = field(default_factory=list)
    pending: list[RequestRow] = field(default_factory=list)
    handlers: list[HandlerRow] = field(default_factory=list)
    access: list[AccessRow] = field(default_factory=list)
    audit: list[dict[str, object]] = field(default_factory=list)
    closed: bool = False


def read_state(owner: OwnerSession) -> PageState:
    """The owner's state as the page shows it, now."""
    state = PageState(owner_id=owner.identity.id, closed=owner.closed)
    # who is connected: the rows duet.scientists shows, keyed by "id" as the page's other rows
    state.scientists = [{"id": row.pop("scientist"), **row} for row in owner.scientists.rows()]
    for entry in owner.objects.published():
        meta = describe(entry.value)
        state.store.append(
            {
                "id": entry.id,
                "tags": list(entry.tags),
                "description": entry.description,
                "type": str(meta.get("type", "")),  # a type's name
                "shape": meta.get("shape"),
                "bytes": entry.nbytes,
                "listed": entry.pointable,
            }
        )
    state.pending = [request_row(r) for r in owner.requests.pending]
    for handler in owner.requests.handlers:
        state.handlers.append(
            {
                "id": handler.id,
                "action": handler.action,
                "tags": handler.tags,
                "name": handler.name,
                "kind": handler.kind,
                "max_elements": handler.max_elements,
                "scientist": handler.scientist,
                "element_quota": handler.element_quota,
                "released": handler.released,
                "matched": handler.matched,
                "derived_inputs": handler.derived_inputs,
            }
        )
    for rule in owner.access:
        state.access.append(
            {
                "scientist": rule.scientist,
                "name": rule.name,
                "connect": rule.connect,
                "tags": None if rule.tags is None else sorted(rule.tags),
                "requests": rule.requests,
            }
        )
    try:
        state.audit = owner.audit.recent(AUDIT_SHOWN)
    except Exception as exc:  # closed with the session: the page says so, it does not fail
        log.debug("the audit log cannot be read: %s", exc)
    return state


def request_row(request: Request) -> RequestRow:
    """One pending request as the owner reviews it: what it would release (kind, shape, size,
    the owner's tags of the data it depends on, the op that made it, the digest of exactly
    what leaves) and what the scientist says about it (name, reason: its own words)."""
    snapshot = request.snapshot
    row: RequestRow = {
        "id": request.id,
        "scientist": request.peer,
        "scientist_name": request.scientist_name,
        "name": request.name,
        "reason": request.reason,
        "kind": request.kind,
        "shape": request.shape,
        "elements": request.elements,
        "bytes": snapshot.nbytes,
        "tags": list(request.tags),
        "op": request.op,
        "digest": snapshot.digest(),
        "arrival": request.arrival.timestamp(),
        "expires": request.expires,
        "note": request.note,
        "preview": None,
    }
    if request.elements <= PREVIEW_ELEMENTS and not snapshot.dropped:
        try:
            row["preview"] = repr(request.value)
        except Exception:  # decided meanwhile, or a value that does not decode: not shown
            pass
    return row
