"""The owner's request queue and the handlers that decide requests as they arrive.

A request asks the owner to release a private value. Handlers are checked in the order they
were added the moment a request arrives (first match wins); a request no handler decides waits
for the owner (``duet.requests[0].accept()``) until it is decided or its timeout passes.

An accepted request leaves a grant (grants.py): its scientist may get the same object again
without asking, as long as the object is exactly what was reviewed. ``request.revoke()`` or
``requests.revoke_grants(...)`` ends grants.

PySyft-Duet names are kept where its notebooks use them: ``requests.requests`` (the pending
requests), ``request.request_description`` and ``request.request_name``, handlers readable as
dicts (``handler["tags"]``, ``handler["action"]``) and removed by what they were added with
(``requests.remove_handler(tags=["loss"])``).
"""

from __future__ import annotations

import collections
import itertools
import logging
import numbers
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, SupportsIndex, overload

from ..errors import UsageError
from ..protocol.allowlist import FUNCTIONS, OP_NAMES, SHAPE_OPS
from ..protocol.messages import RequestStatus
from .grants import Grant, GrantState
from .labels import Label, shapes_only, tags_of
from .snapshot import KINDS, Snapshot

if TYPE_CHECKING:
    import pandas
    from torch import nn

    from .audit import AuditLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DpPrice:
    """What a DP release waiting for the owner costs: ``epsilon`` it adds to the scientist's
    spend on ``dataset`` (reserved while it waits) at ``delta``, and what remains after it."""

    dataset: str
    epsilon: float
    delta: float
    remaining_after: float


@dataclass(eq=False)
class Request:
    """One request from a scientist to release a value. ``accept()`` or ``deny()`` decides it.

    What is decided on, and released, is ``snapshot``: the value as it was when the request
    arrived (``value`` shows it). ``tags`` are the owner's tags of the data the value depends
    on, ``op`` the operation that made it; both come from the owner's records, never from the
    scientist.
    """

    id: str
    name: str
    reason: str
    object_id: str
    peer: str
    label: Label
    op: str
    snapshot: Snapshot
    scientist_name: str = ""
    arrival: datetime = field(default_factory=datetime.now)
    status: RequestStatus = RequestStatus.PENDING
    decided_by: str = ""
    # what automatic decisions rely on (derivation.py): the op the value is, applied to a
    # published object as a whole (None: it is not); a model's architecture, the one it had
    # when the scientist sent it, and whether its layer settings depend on the owner's data
    whole: str | None = None
    architecture: str | None = None
    sent_architecture: str | None = None
    settings_private: bool = False
    # why no handler decided it, when one would have (its quota is spent): told the scientist
    note: str = ""
    # how long it waits (the scientist's timeout, at most the owner's; None: until decided)
    # and when that passes (time.monotonic())
    timeout_secs: float | None = None
    deadline: float | None = None
    denial: str = ""  # the owner's reason for denying it, told the scientist
    # a DP release under a budget the owner reviews (privacy_desk.set_budget(review=True)):
    # its price; only the owner decides it, never a handler
    privacy: DpPrice | None = None
    # what accepting it left (set by the service that serves the scientist); None: no grant
    grant: Grant | None = field(default=None, repr=False)
    # the way back to the scientist who asked: its service's (set where the request is made);
    # called once, with the decision, from whichever thread decided
    reply: Callable[[Request], None] | None = field(default=None, repr=False, compare=False)
    _queue: RequestQueue | None = field(default=None, repr=False)

    @property
    def tags(self) -> list[str]:
        return tags_of(self.label)

    @property
    def expires(self) -> float | None:
        """When it times out if no one decides it (``time.time()``); None: never."""
        if self.deadline is None:
            return None
        return time.time() + (self.deadline - time.monotonic())

    # ---- PySyft-Duet's names
    @property
    def request_description(self) -> str:
        """The reason the scientist gave (PySyft's name for it)."""
        return self.reason

    @property
    def request_name(self) -> str:
        return self.name

    @property
    def request_id(self) -> str:
        return self.id

    @property
    def object_tags(self) -> list[str]:
        return self.tags

    @property
    def grant_state(self) -> str:
        """ "active", "revoked" or "stale" for an accepted request; "" when there is no grant."""
        return "" if self.grant is None else self.grant.state.value

    @property
    def kind(self) -> str:
        return self.snapshot.kind

    @property
    def elements(self) -> int:
        return self.snapshot.elements

    @property
    def object_type(self) -> str:
        return self.snapshot.kind

    @property
    def value(self) -> object:
        """What accepting releases, exactly as the scientist would receive it. Kept while the
        request waits; once it is decided the value is let go (the audit log keeps its digest),
        and reading it raises UsageError."""
        if self.snapshot.dropped:
            raise UsageError(
                f"request {self.id} was {self.status.value}; its value is no longer kept (the "
                f"audit log has its digest, {self.snapshot.sha256[:12]}…)"
            )
        return self.snapshot.decoded()

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The released tensor's shape (None for anything else)."""
        return self.snapshot.shape

    @property
    def by_hand(self) -> bool:
        """Decided by the owner by hand (in code, or on the review page), not by a handler,
        a rule or a timeout."""
        return self.decided_by == BY_OWNER or self.decided_by.startswith(BY_OWNER + " (")

    def accept(self, *, via: str = "") -> None:
        """Release the value to the scientist. ``via``: where the owner decided (the audit
        log's ``decided_by`` says "owner (via)"). Raises UsageError if it was decided already
        (or timed out)."""
        self._decide(RequestStatus.ACCEPTED, _by_owner(via))

    def deny(self, reason: str = "", *, via: str = "") -> None:
        """Refuse; the scientist's get returns None with a warning, which carries ``reason``
        (the owner's words, sent to the scientist) when one is given. Raises UsageError if it
        was decided already (or timed out)."""
        self._decide(RequestStatus.DENIED, _by_owner(via), reason=str(reason))

    def revoke(self) -> bool:
        """End the grant this accepted request left: the scientist's next get of the object is
        a request again. Returns False if the grant had ended already (stale or revoked).
        Raises UsageError when the request left no grant (not accepted, or not grantable)."""
        if self.grant is None:
            raise UsageError(
                f"request {self.id} is {self.status.value} and left no grant to revoke"
            )
        return self.grant.revoke()

    def _decide(self, status: RequestStatus, by: str, *, reason: str = "") -> None:
        if self._queue is None:
            raise UsageError("this request is not attached to a queue")
        self._queue._decide(self, status, by, reason=reason)

    def __repr__(self) -> str:
        return (
            f"<Request {self.id} {self.name!r}: {self.kind} of {self.elements} elements from "
            f"{self.tags or 'untagged data'} made by {self.op or 'the owner'} ({self.status.value})>"
        )


class HandlerId(int):
    """A handler's id: a number (``remove_handler(3)``), with PySyft's ``.value``:
    ``remove_handler(str(handlers[0]["id"].value).replace("-", ""))`` removes it, as it removed
    a PySyft handler by its UID string."""

    __slots__ = ()

    @property
    def value(self) -> int:
        return int(self)


@dataclass(eq=False)
class Handler:
    """Decides matching requests at once. Create with ``requests.add_handler(...)``.

    A handler matches what is released, not what the scientist says about it: ``data_tags``
    must name a tag of every piece of the owner's data the value depends on, ``op_tags`` the
    operation that made it, ``kind`` and ``max_elements`` its type and size. ``name`` (chosen
    by the scientist) narrows further but proves nothing.
    """

    id: HandlerId
    name: str | None
    tags: list[str] | None
    data_tags: frozenset[str]
    op_tags: frozenset[str]
    kind: str | None
    max_elements: int | None
    action: str
    timeout_secs: float
    print_local: bool
    element_quota: int | None
    scientist: str | None = None  # only this scientist's requests (an identity ID)
    log_local: bool = False
    # op tags match the op at the end of any computation from the data (not only that op
    # applied to the published object as a whole)
    derived_inputs: bool = False
    # a model must have this architecture (derivation.architecture), or AS_SENT: the one it
    # had when the scientist sent it; either way its settings must not depend on the data
    architecture: str | None = None
    name_pattern: re.Pattern[str] | None = None  # the request's name must match it whole
    created: float = field(default_factory=time.monotonic)
    created_time: float = field(default_factory=time.time)  # wall clock, as PySyft showed it
    released: int = 0
    matched: int = 0

    # ---- read as a dict, as PySyft-Duet's handlers were (``handler["tags"]``)
    def keys(self) -> list[str]:
        return list(HANDLER_KEYS)

    def __getitem__(self, key: str) -> object:
        fields = self._fields()
        if key not in fields:
            raise KeyError(f"handlers have no {key!r}; they have {', '.join(HANDLER_KEYS)}")
        return fields[key]

    def _fields(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name,
            "tags": list(self.tags or []),  # PySyft's handlers always had a list
            "action": self.action, "timeout_secs": self.timeout_secs,
            "element_quota": self.element_quota, "print_local": self.print_local,
            "log_local": self.log_local, "created_time": self.created_time, "kind": self.kind,
            "max_elements": self.max_elements, "scientist": self.scientist,
            "released": self.released, "matched": self.matched,
            "derived_inputs": self.derived_inputs, "architecture": self.architecture,
        }  # fmt: skip

    def get(self, key: str, default: object = None) -> object:
        return self[key] if key in HANDLER_KEYS else default

    def __contains__(self, key: object) -> bool:
        return key in HANDLER_KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(HANDLER_KEYS)

    def __len__(self) -> int:
        return len(HANDLER_KEYS)

    def items(self) -> list[tuple[str, object]]:
        return list(self._fields().items())

    def values(self) -> list[object]:
        return list(self._fields().values())

    def expired(self, now: float) -> bool:
        return self.timeout_secs >= 0 and now - self.created > self.timeout_secs

    def matches(self, request: Request) -> bool:
        """Whether this handler says what ``request`` releases (its quota aside: ``spent``)."""
        if request.privacy is not None:  # the owner asked to review these by hand
            return False
        if self.scientist is not None and self.scientist != request.peer:
            return False
        if self.name is not None and self.name != _normalize(request.name):
            return False
        if self.name_pattern is not None and not self.name_pattern.fullmatch(request.name):
            return False
        if self.kind is not None and request.kind != self.kind:
            return False
        if self.max_elements is not None and request.elements > self.max_elements:
            return False
        if self.architecture is not None:
            wanted = (
                request.sent_architecture if self.architecture == AS_SENT else self.architecture
            )
            if (
                request.kind != "module"
                or request.settings_private
                or wanted is None
                or request.architecture != wanted
            ):
                return False
        if self.tags is not None:
            if self.op_tags:
                made_by = request.op if self.derived_inputs else request.whole
                if made_by not in self.op_tags:
                    return False
                if self.op_tags <= SHAPE_OPS and not shapes_only(request.label):
                    return False  # a length handler releases shapes, never values
            if self.data_tags or not self.op_tags:
                # every source of the value must be data the handler names; unknown ones never
                if not request.label or any(
                    source.kind == "unknown" or not (source.tags & self.data_tags)
                    for source in request.label
                ):
                    return False
        return True

    def spent(self, request: Request) -> bool:
        """Whether accepting ``request`` would pass this handler's ``element_quota``."""
        return (
            self.action == "accept"
            and self.element_quota is not None
            and self.released + request.elements > self.element_quota
        )

    @property
    def constrained(self) -> bool:
        """True when the handler says something about what is released (not only its name)."""
        return (
            self.tags is not None
            or self.kind is not None
            or self.max_elements is not None
            or self.architecture is not None
        )


BY_OWNER = "owner"  # ``decided_by`` of a decision by the owner's hand


def _by_owner(via: str) -> str:
    return f"{BY_OWNER} ({via})" if via else BY_OWNER


# what ``handler[key]`` reads: PySyft-Duet's keys, then ours
HANDLER_KEYS = ("id", "name", "tags", "action", "timeout_secs", "element_quota", "print_local",
                "log_local", "created_time", "kind", "max_elements", "scientist", "released",
                "matched", "derived_inputs", "architecture")  # fmt: skip


def _owner_facts() -> frozenset[str]:
    """The tags of the owner's own information (``torch.cuda.is_available``, a dataset read
    from its files): a handler may name them as it names published data."""
    return frozenset(path for path, op in list(FUNCTIONS.items()) if op.owner_data)


#: ``add_handler(architecture=AS_SENT)``: a model must have the architecture it was sent with
AS_SENT = "as sent"
HISTORY_KEPT = 1000  # decided requests kept in memory (the audit log keeps them all)


def _scientist_id(text: str) -> str:
    from .access import _key

    return _key(text)


def _architecture(model: object) -> str:
    from torch import nn

    from .derivation import architecture

    if isinstance(model, str):
        return model  # a digest, as the request table shows it
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"architecture is a model (an nn.Module) or AS_SENT, not {type(model).__name__}"
        )
    found = architecture(model)
    if found is None:
        raise UsageError(f"the architecture of this {type(model).__name__} cannot be described")
    return found


def _count(argument: str, value: object) -> int | None:
    """``value`` as a number of elements (an int >= 0, or None); UsageError naming
    ``argument`` otherwise (a bool, a float, a string are not counts)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(
            f"{argument} is a whole number of elements (an int >= 0) or None, not "
            f"{type(value).__name__} {value!r}"
        )
    if value < 0:
        raise UsageError(f"{argument} is a number of elements, at least 0, not {value}")
    return int(value)


def _seconds(argument: str, value: object) -> float:
    """``value`` as seconds (a number >= 0, or -1: never); UsageError naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(
            f"{argument} is a number of seconds (or -1: never), not {type(value).__name__} "
            f"{value!r}"
        )
    seconds = float(value)
    if seconds != seconds or (seconds < 0 and seconds != -1):  # NaN, or a negative but -1
        raise UsageError(f"{argument} is a number of seconds >= 0, or -1 (never), not {value}")
    return seconds


def _normalize(name: str | None) -> str:
    return (name or "").strip().lower()


class HandlerWarning(UserWarning):
    """A handler that accepts requests by their name alone (the scientist chooses names), or
    whose tags name nothing the owner has published."""


class RequestQueue:
    """``duet.requests``: indexable over the pending requests, ``.pandas`` shows them all.

    A decision is recorded in ``audit`` (before what it lets out leaves) and sent back by the
    request's own ``reply`` (from whichever thread decided), once per request: it never leaves
    the owner's package. ``data_tags()`` gives the tags of the owner's published data, so a
    handler's tags can be told apart from op names.
    """

    def __init__(
        self,
        *,
        audit: AuditLog | None = None,
        data_tags: Callable[[], set[str]] | None = None,
    ):
        self._data_tags = data_tags or set
        self._lock = threading.RLock()
        self._pending: list[Request] = []  # oldest first
        # the newest decided requests (their values let go): the audit log keeps them all
        self._decided: collections.deque[Request] = collections.deque(maxlen=HISTORY_KEPT)
        self._granted: dict[str, Request] = {}  # accepted by hand, leaving a grant
        self._handlers: list[Handler] = []
        self._handler_ids = itertools.count(1)
        self.audit = audit
        self.printer: Callable[[str], None] = print
        self._changed = threading.Condition(self._lock)
        self._listeners: list[Callable[[Request], None]] = []
        self._arrival_listeners: list[Callable[[Request], None]] = []
        self._waiting_listeners: list[Callable[[Request], None]] = []
        # set by the owner's session: the review page's requests as HTML (None: not running)
        self.page: Callable[[], str | None] | None = None

    # ---- requests
    def submit(self, request: Request) -> Request:
        """Record a request and let the handlers decide it; returns it (maybe still pending,
        with ``note`` saying why a handler that would have decided it did not)."""
        request._queue = self
        with self._lock:
            self._pending.append(request)
            handler = self._match(request, reserve=True)
            if handler is not None:
                self._changed.notify_all()
        if handler is not None:
            self._apply(handler, request)
        elif request.status is RequestStatus.PENDING:
            # the owner is told before wait_for_request() returns it: what the owner does
            # next comes after the notice, not in the middle of its line
            self._tell(self._waiting_listeners, request)
            with self._lock:
                self._changed.notify_all()
        self._tell(self._arrival_listeners, request)
        return request

    def _apply(self, handler: Handler, request: Request) -> None:
        action = handler.action
        verdict = "accepted" if action == "accept" else "denied"
        if handler.print_local:
            self.printer(
                f"[duet] request {request.name!r} ({verdict} by a handler): {request.value!r}"
            )
        if handler.log_local:
            log.info("request %r (%s by handler %s): %r", request.name, verdict, handler.id,
                     request.value)  # fmt: skip
        status = RequestStatus.ACCEPTED if action == "accept" else RequestStatus.DENIED
        try:
            self._decide(request, status, f"handler {handler.id}")
        except UsageError:  # decided meanwhile by the owner's hand: the hand wins
            pass

    def expire(self, request: Request, by: str = "timeout") -> None:
        with self._lock:
            if request.status is not RequestStatus.PENDING:
                return
        try:
            self._decide(request, RequestStatus.TIMEOUT, by)
        except UsageError:  # decided meanwhile
            pass

    def cancel_peer(self, peer: str) -> None:
        """The scientist left: its waiting requests time out (and let go of their values), and
        its grants end."""
        for request in self.pending:
            if request.peer == peer:
                self.expire(request, "the scientist left")
        with self._lock:
            granted = [r for r in self._granted.values() if r.peer == peer]
        for request in granted:
            assert request.grant is not None
            request.grant.end(GrantState.STALE, "the scientist left")

    def _decide(
        self, request: Request, status: RequestStatus, by: str, *, reason: str = ""
    ) -> None:
        with self._lock:
            if request.status is not RequestStatus.PENDING:
                raise UsageError(f"request {request.id} was already {request.status.value}")
            request.status = status
            request.decided_by = by
            request.denial = reason
            self._pending.remove(request)
            self._decided.append(request)
            self._changed.notify_all()
        log.info("request %s %r %s by %s", request.id, request.name, status.value, by)
        try:
            if self.audit is not None:  # logged before what it lets out
                self.audit.record(
                    "decision", scientist=request.peer, name=request.scientist_name,
                    request=request.id, object_id=request.object_id,
                    status=request.status.value, decided_by=request.decided_by,
                    request_name=request.name,
                )  # fmt: skip
            if request.reply is not None:
                request.reply(request)
            self._tell(self._listeners, request)
        finally:
            # what was reviewed has been sent (or refused): the owner keeps its digest, not
            # its bytes; a grant keeps the object itself
            request.snapshot.drop()
            request.reply = None  # a decided request keeps no way to its scientist's service
            if request.grant is not None:
                with self._lock:
                    self._granted[request.id] = request

    def handler_for(self, request: Request) -> Handler | None:
        """The handler that would decide ``request`` now, if any (nothing is reserved)."""
        with self._lock:
            return self._match(request, reserve=False)

    def _match(self, request: Request, *, reserve: bool) -> Handler | None:
        """The first handler that says what ``request`` releases and has quota left for it.
        A handler whose quota is spent does not match: the next one, or the owner, decides,
        and ``request.note`` says why. ``reserve``: count the elements against its quota now
        (under the lock, so that two requests cannot both pass it)."""
        now = time.monotonic()
        self._handlers = [h for h in self._handlers if not h.expired(now)]
        for handler in self._handlers:
            if not handler.matches(request):
                continue
            if handler.spent(request):
                if reserve and not request.note:
                    request.note = (
                        f"handler {handler.id} would decide it, but its quota of "
                        f"{handler.element_quota} elements is spent ({handler.released} "
                        f"released, this request has {request.elements})"
                    )
                continue
            if reserve:
                handler.matched += 1
                if handler.action == "accept" and handler.element_quota is not None:
                    handler.released += request.elements
            return handler
        return None

    def add_listener(self, listener: Callable[[Request], None], *, arrivals: bool = False) -> None:
        """Call ``listener(request)`` after each decision (to show or log decisions live);
        ``arrivals=True``: after each request arrives instead, once its handlers had their say
        (it may be decided already). Called on the thread that decided or submitted; an
        exception it raises is logged."""
        (self._arrival_listeners if arrivals else self._listeners).append(listener)

    def remove_listener(self, listener: Callable[[Request], None]) -> None:
        """Stop calling ``listener`` (added with ``add_listener``); no error if it was not."""
        for listeners in (self._listeners, self._arrival_listeners, self._waiting_listeners):
            if listener in listeners:
                listeners.remove(listener)

    @staticmethod
    def _tell(listeners: list[Callable[[Request], None]], request: Request) -> None:
        for listener in list(listeners):
            try:
                listener(request)
            except Exception:  # a listener's bug must not stop the owner serving
                log.exception("a request listener failed")

    def add_waiting_listener(self, listener: Callable[[Request], None]) -> None:
        """Call ``listener(request)`` when a request arrives that no handler decides: it waits
        for the owner (to tell the owner so). Called on the thread that submitted it; an
        exception it raises is logged, never lost into the owner's work."""
        self._waiting_listeners.append(listener)

    @property
    def pending(self) -> list[Request]:
        with self._lock:
            return list(self._pending)

    @property
    def history(self) -> list[Request]:
        """The requests kept in memory, in order of arrival: every pending one, the newest
        decided ones (HISTORY_KEPT) and those whose grants are still recorded. Every request
        ever made is in the audit log (``duet.audit``)."""
        with self._lock:
            kept = {id(r): r for r in (*self._decided, *self._granted.values(), *self._pending)}
        return sorted(kept.values(), key=lambda r: r.arrival)

    @property
    def requests(self) -> list[Request]:
        """The requests waiting for a decision (PySyft-Duet's ``duet.requests.requests``)."""
        return self.pending

    def wait_for_request(self, timeout_secs: float | None = None) -> Request | None:
        """Block until a request is pending (or the timeout passes); returns it or None."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self.pending), timeout=timeout_secs)
            pending = self.pending
            return pending[0] if pending else None

    def __len__(self) -> int:
        return len(self.pending)

    def __iter__(self) -> Iterator[Request]:
        return iter(self.pending)

    def __getitem__(self, key: int | str) -> Request:
        if isinstance(key, int):
            pending = self.pending
            if not -len(pending) <= key < len(pending):
                raise IndexError(
                    f"there are {len(pending)} pending requests; index {key} is out of range"
                )
            return pending[key]
        for request in self.history:
            if request.id == key:
                return request
        raise KeyError(f"no request with ID {key!r}")

    def rows(self) -> list[dict[str, object]]:
        """Every request as a plain row, the pending ones first (what ``.pandas`` shows)."""
        ordered = self.pending + [r for r in self.history if r.status is not RequestStatus.PENDING]
        return [
            {
                "id": r.id, "peer": r.peer, "scientist_name": r.scientist_name, "name": r.name,
                "reason": r.reason, "object_id": r.object_id, "object_type": r.object_type,
                "tags": r.tags, "op": r.op, "elements": r.elements, "status": r.status.value,
                "decided_by": r.decided_by, "arrival": r.arrival,
                # what an accepted request left: "active" (its scientist may get the object
                # again while it is unchanged), "revoked", "stale" (it changed, or the
                # scientist left), or ""
                "grant": r.grant_state,
                "dp_price": None if r.privacy is None else r.privacy.epsilon,
                "dp_left_after": None if r.privacy is None else r.privacy.remaining_after,
            }
            for r in ordered
        ]  # fmt: skip

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import requests_frame

        return requests_frame(self.rows())

    # ---- grants
    @property
    def grants(self) -> list[Grant]:
        """The grants accepted requests left that are still active."""
        with self._lock:
            self._granted = {
                k: r for k, r in self._granted.items() if r.grant is not None and r.grant.active
            }
            return [r.grant for r in self._granted.values() if r.grant is not None]

    def revoke_grants(self, *, scientist: str | None = None, object_id: str | None = None) -> int:
        """End active grants (all of them, or a scientist's, or those on one object): the next
        get of those objects is a request again. Returns how many ended."""
        peer = None if scientist is None else _scientist_id(scientist)
        ended = 0
        for grant in self.grants:
            if peer is not None and grant.peer != peer:
                continue
            if object_id is not None and object_id not in (grant.object_id, _short(grant)):
                continue
            ended += grant.revoke()
        return ended

    def __repr__(self) -> str:
        return f"<requests: {len(self)} pending, {len(self.history)} in all>"

    def _repr_html_(self) -> str | None:
        """In a notebook, ``duet.requests`` shows the owner's review page at its requests (its
        Accept / Deny buttons work there) while the page runs; otherwise the text above."""
        if self.page is None:
            return None
        return self.page()

    # ---- handlers
    def add_handler(
        self,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        action: str = "accept",
        timeout_secs: float = -1,
        print_local: bool = False,
        log_local: bool = False,
        element_quota: int | None = None,
        kind: str | None = None,
        max_elements: int | None = None,
        scientist: str | None = None,
        derived_inputs: bool = False,
        architecture: nn.Module | str | None = None,
        name_pattern: str | None = None,
    ) -> Handler:
        """Decide matching requests automatically, first match wins.

        What a handler matches is what would be released (the README's "Handlers" section
        shows, for each constraint, a value it releases and one it does not):

        - ``tags``: the owner's tags of the data the value was computed from, and the names of
          operations. A value matches only when *every* piece of the owner's data it depends
          on carries one of the tags (``private + public * 0`` does not match a handler for
          ``public``). With op names among the tags (``"mean"``, ``"__len__"``), only that op
          applied to a published object *as a whole* matches: ``tags=["ages", "mean"]``
          releases ``ages.mean()`` (also as ``.item()``), never ``ages[0:2].mean()`` or
          ``ages.reshape(6, 1).mean(dim=1)``; a length op (``__len__``, ``size``, ``shape``,
          ``numel``, ``dim``, ``ndim``) releases only what depends on shapes alone: the length
          of the published tensor or dataset, of a loader over it. ``derived_inputs=True``
          lets op tags match the op at the end of any computation from the data instead (a
          loss: ``tags=["digits", "item"], derived_inputs=True``), which releases whatever a
          scientist computes that way.
        - ``kind`` (``"int"``, ``"float"``, ``"tensor"``, ...) and ``max_elements``: the type
          and size of the value. Sizes count every number that leaves: a tensor's elements, a
          string's characters, a container's leaves, a model's weights and buffers (and its
          layer settings when they were computed from the owner's data).
        - ``architecture``: a model (an ``nn.Module``, or ``AS_SENT``: the architecture it had
          when the scientist sent it): only models of exactly that architecture (layer types,
          settings, weight shapes), whose settings depend on nothing of the owner's, match.
        - ``name``: the name the scientist gave the request (trimmed, case-insensitive);
          ``name_pattern`` a regular expression the whole name must match. The scientist
          chooses names, so an accept handler keyed by a name alone accepts anything a
          scientist names that way (a HandlerWarning says so).
        - ``scientist``: only requests of the scientist with this ID.

        Tags that name nothing you have published (no op name, no published data's tag) give
        a HandlerWarning: such a handler matches nothing. ``max_elements``, ``element_quota``
        (ints >= 0) and ``timeout_secs`` of another type or sign raise UsageError naming them.

        ``timeout_secs`` makes the handler expire (-1: never). ``print_local`` prints the value
        here, ``log_local`` logs it (at INFO). ``element_quota`` caps the elements it may
        release in all; once spent the handler no longer matches: the next handler, or you,
        decide, and the scientist is told why.
        """
        if action not in ("accept", "deny"):
            raise UsageError(f"action must be 'accept' or 'deny', not {action!r}")
        element_quota = _count("element_quota", element_quota)
        max_elements = _count("max_elements", max_elements)
        timeout_secs = _seconds("timeout_secs", timeout_secs)
        if kind is not None and kind not in KINDS:
            raise UsageError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        if isinstance(tags, str):
            raise UsageError("tags is a list of tags, not one string")
        tag_list = None if tags is None else [str(t) for t in tags]
        wanted = None
        if architecture is not None:
            wanted = AS_SENT if architecture == AS_SENT else _architecture(architecture)
        pattern = None
        if name_pattern is not None:
            try:
                pattern = re.compile(name_pattern)
            except re.error as exc:
                raise UsageError(
                    f"name_pattern {name_pattern!r} is not a regular expression: {exc}"
                ) from None
        data_tags = self._data_tags()
        op_tags = frozenset(t for t in tag_list or () if t in OP_NAMES and t not in data_tags)
        # a handler whose data tags name nothing published (nor the owner's own information,
        # tagged with the op's path) matches nothing: a misspelt tag, or data not yet published
        named = frozenset(tag_list or ()) - op_tags
        unpublished = sorted(named)
        if named and not named & (data_tags | _owner_facts()):
            known = ", ".join(repr(t) for t in sorted(data_tags)) or "none yet"
            warnings.warn(
                f"tags {unpublished} name nothing you have published (the published tags: "
                f"{known}), so this handler matches no request until data with those tags is "
                "published; check the spelling, or publish first",
                HandlerWarning,
                stacklevel=2,
            )
        handler = Handler(
            id=HandlerId(next(self._handler_ids)),
            name=None if name is None else _normalize(name),
            tags=tag_list,
            data_tags=frozenset(tag_list or ()) - op_tags,
            op_tags=op_tags,
            kind=kind,
            max_elements=max_elements,
            action=action,
            timeout_secs=float(timeout_secs),
            print_local=print_local,
            element_quota=element_quota,
            scientist=None if scientist is None else _scientist_id(scientist),
            log_local=bool(log_local),
            derived_inputs=bool(derived_inputs),
            architecture=wanted,
            name_pattern=pattern,
        )
        if action == "accept" and not handler.constrained:
            what = f"named {name!r}" if name is not None else "of any kind"
            warnings.warn(
                f"this handler accepts every request {what}, whatever it releases (the "
                "scientist chooses request names); constrain it by what is released: "
                "tags=[...] (the data's tags and op names like '__len__'), kind=..., "
                "max_elements=...",
                HandlerWarning,
                stacklevel=2,
            )
        with self._lock:
            self._handlers.append(handler)
            # requests already waiting are decided now too, as if they had just arrived
            decided = []
            for request in self._pending:
                found = self._match(request, reserve=True)
                if found is not None:
                    decided.append((found, request))
        for found, request in decided:
            self._apply(found, request)
        return handler

    @property
    def handlers(self) -> HandlerList:
        with self._lock:
            now = time.monotonic()
            self._handlers = [h for h in self._handlers if not h.expired(now)]
            return HandlerList(self._handlers)

    def remove_handler(
        self,
        handler: Handler | int | str | list[str] | tuple[str, ...] | None = None,
        *,
        name: str | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
    ) -> int:
        """Remove handlers; returns how many. Name them as they were added, as PySyft did:

        - ``remove_handler(handler)``: the Handler ``add_handler`` returned, or its id (an
          int, or its string: ``str(handler["id"].value)``, as PySyft's notebooks wrote it);
        - ``remove_handler("loss")``: the handlers added with that name; if none has it, the
          one handler that has that tag (two: a UsageError, name it better);
        - ``remove_handler(["ages", "mean"])`` or ``remove_handler(tags=[...])``: the handlers
          added with exactly those tags (in any order);
        - ``remove_handler(name=..., tags=...)``: both must match.

        Raises UsageError when nothing matches (nothing is removed).
        """
        if handler is not None and (name is not None or tags is not None):
            raise UsageError("name the handler either by itself or by name=/tags=, not both")
        if isinstance(handler, list | tuple):
            handler, tags = None, handler
        if isinstance(tags, str):
            raise UsageError("tags is a list of tags, not one string")
        with self._lock:
            handlers = self._handlers
            if handler is None and name is None and tags is None:
                raise UsageError(
                    "say which handler to remove: remove_handler(handler), (name), (tags) "
                    "or clear_handlers()"
                )
            by_id = (
                [h for h in handlers if str(h.id) == handler.strip()]
                if isinstance(handler, str)
                else []
            )  # PySyft's remove_handler(id string): the id first, as PySyft looked it up
            if by_id:
                chosen = by_id
            elif handler is not None:
                chosen = [
                    h
                    for h in handlers
                    if h is handler
                    or (isinstance(handler, int) and not isinstance(handler, bool)
                        and h.id == handler)
                    or (isinstance(handler, str) and h.name == _normalize(handler))
                ]  # fmt: skip
                if not chosen and isinstance(handler, str):  # PySyft's handlers[tag]
                    chosen = [h for h in handlers if h.tags is not None and handler in h.tags]
                    if len(chosen) > 1:
                        raise UsageError(
                            f"{len(chosen)} handlers have the tag {handler!r} (handler ids "
                            f"{[h.id for h in chosen]}); remove one by its id, or by all its "
                            "tags: remove_handler(tags=[...])"
                        )
            else:
                wanted = None if tags is None else {str(t) for t in tags}
                chosen = [
                    h
                    for h in handlers
                    if (name is None or h.name == _normalize(name))
                    and (wanted is None or (h.tags is not None and set(h.tags) == wanted))
                ]
            if not chosen:
                what = repr(handler) if handler is not None else _described(name, tags)
                known = ", ".join(_shown(h) for h in handlers) or "none"
                raise UsageError(f"no handler matches {what}; the handlers are: {known}")
            self._handlers = [h for h in handlers if all(h is not c for c in chosen)]
            return len(chosen)

    def clear_handlers(self) -> None:
        with self._lock:
            self._handlers = []


class HandlerList(list[Handler]):
    @overload
    def __getitem__(self, key: SupportsIndex | str) -> Handler: ...

    @overload
    def __getitem__(self, key: slice) -> list[Handler]: ...

    def __getitem__(self, key: SupportsIndex | slice | str) -> Handler | list[Handler]:
        """A handler by position, or (PySyft's ``handlers[key]``) by its id's string or by the
        one tag it alone has. Raises KeyError naming the handlers otherwise."""
        if not isinstance(key, str):
            return super().__getitem__(key)
        chosen = [h for h in self if str(h.id) == key.strip()]
        if not chosen:
            chosen = [h for h in self if h.tags is not None and key in h.tags]
        if len(chosen) == 1:
            return chosen[0]
        known = ", ".join(_shown(h) for h in self) or "none"
        what = "no handler has" if not chosen else f"{len(chosen)} handlers have"
        raise KeyError(f"{what} the id or tag {key!r}; the handlers are: {known}")

    def rows(self) -> list[dict[str, object]]:
        """Every handler as a plain row (what ``.pandas`` shows)."""
        return [
            {
                "id": h.id, "name": h.name, "tags": h.tags, "scientist": h.scientist,
                "kind": h.kind, "max_elements": h.max_elements, "action": h.action,
                "timeout_secs": h.timeout_secs, "print_local": h.print_local,
                "element_quota": h.element_quota, "released": h.released, "matched": h.matched,
            }
            for h in self
        ]  # fmt: skip

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import handlers_frame

        return handlers_frame(self.rows())

    @property
    def handlers(self) -> list[Handler]:
        """The handlers as a plain list (PySyft's ``duet.requests.handlers.handlers``)."""
        return list(self)


def _described(name: str | None, tags: Iterable[str] | None) -> str:
    parts = ([] if name is None else [f"name={name!r}"]) + (
        [] if tags is None else [f"tags={list(tags)!r}"]
    )
    return ", ".join(parts)


def _shown(handler: Handler) -> str:
    return f"{handler.id} (name={handler.name!r}, tags={handler.tags!r}, {handler.action})"


def _short(grant: Grant) -> str:
    """The id the scientist's pointer shows for a granted object (its own are namespaced)."""
    return grant.object_id.removeprefix(grant.peer + ":")


def new_request_id() -> str:
    return os.urandom(6).hex()  # 12 hex digits, as uuid4().hex[:12] gave (at a fifth the cost)
