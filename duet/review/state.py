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
CHARGES_SHOWN = 20  # the newest DP charges on the page
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
    # a DP release under a budget the owner reviews: its price and what would remain
    privacy: PriceRow | None


class PriceRow(TypedDict):
    """A DP release's price (``owner.requests.DpPrice``)."""

    dataset: str
    epsilon: float
    delta: float
    remaining_after: float


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


class BudgetRow(TypedDict):
    """One privacy budget (``owner.privacy.rows()``): a scientist (or "*") on a dataset."""

    scientist: str
    dataset: str
    budget_of: str | None  # whose budget is in force: the scientist's own, or "*"
    epsilon: float | None
    delta: float | None
    spent: float | None  # None for the "*" row itself, and a pair the ledger cannot read
    remaining: float | None
    review: bool  # each release under it waits for the owner
    problem: str | None


class ChargeRow(TypedDict):
    """One DP charge in the ledger (``owner.privacy.history()``)."""

    id: int
    scientist: str
    dataset: str
    mechanism: str  # its parameters, as the ledger stores them (JSON)
    state: str  # reserved, committed, aborted
    at: str  # ISO 8601, UTC


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
    budgets: list[BudgetRow] = field(default_factory=list)
    charges: list[ChargeRow] = field(default_factory=list)  # the newest, oldest first
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
    _read_privacy(owner, state)
    return state


def _read_privacy(owner: OwnerSession, state: PageState) -> None:
    """The privacy budgets and the newest charges, if the owner has a ledger (reading one
    would create its file: an owner that never used differential privacy gets none)."""
    desk = owner.privacy
    if not desk.in_use:
        return
    try:
        rows = desk.rows()
        charges = desk.history(last=CHARGES_SHOWN)
    except Exception as exc:  # closed with the session, or locked: shown at the next change
        log.debug("the privacy ledger cannot be read: %s", exc)
        return
    for row in rows:
        state.budgets.append(
            {
                "scientist": str(row["scientist"]),
                "dataset": str(row["dataset"]),
                "budget_of": _text_or_none(row.get("budget_of")),
                "epsilon": _number_or_none(row.get("epsilon")),
                "delta": _number_or_none(row.get("delta")),
                "spent": _number_or_none(row.get("spent")),
                "remaining": _number_or_none(row.get("remaining")),
                "review": row.get("review") is True,
                "problem": _text_or_none(row.get("problem")),
            }
        )
    for charge in charges:
        entry_id = charge["id"]
        state.charges.append(
            {
                "id": entry_id if isinstance(entry_id, int) else -1,
                "scientist": str(charge["scientist"]),
                "dataset": str(charge["dataset"]),
                "mechanism": str(charge["mechanism"]),
                "state": str(charge["state"]),
                "at": str(charge["at"]),
            }
        )


def _number_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


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
        "privacy": None,
    }
    price = request.privacy
    if price is not None:
        row["privacy"] = {
            "dataset": price.dataset, "epsilon": price.epsilon, "delta": price.delta,
            "remaining_after": price.remaining_after,
        }  # fmt: skip
    if request.elements <= PREVIEW_ELEMENTS and not snapshot.dropped:
        try:
            row["preview"] = repr(request.value)
        except Exception:  # decided meanwhile, or a value that does not decode: not shown
            pass
    return row
