"""The owner's request queue; the handlers that decide requests as they arrive are in
handlers.py, and the queue applies them.

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
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..protocol.messages import RequestStatus
from .grants import Grant, GrantState
from .handlers import (
    Handler,
    HandlerList,
    choose,
    new_handler,
    scientist_id,
)
from .labels import Label, tags_of
from .snapshot import Snapshot

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


BY_OWNER = "owner"  # ``decided_by`` of a decision by the owner's hand


def _by_owner(via: str) -> str:
    return f"{BY_OWNER} ({via})" if via else BY_OWNER


HISTORY_KEPT = 1000  # decided requests kept in memory (the audit log keeps them all)


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
        peer = None if scientist is None else scientist_id(scientist)
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
        handler = new_handler(
            next(self._handler_ids), self._data_tags(), name=name, tags=tags, action=action,
            timeout_secs=timeout_secs, print_local=print_local, log_local=log_local,
            element_quota=element_quota, kind=kind, max_elements=max_elements,
            scientist=scientist, derived_inputs=derived_inputs, architecture=architecture,
            name_pattern=name_pattern,
        )  # fmt: skip
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
        with self._lock:
            chosen = choose(self._handlers, handler, name=name, tags=tags)
            self._handlers = [h for h in self._handlers if all(h is not c for c in chosen)]
            return len(chosen)

    def clear_handlers(self) -> None:
        with self._lock:
            self._handlers = []


def _short(grant: Grant) -> str:
    """The id the scientist's pointer shows for a granted object (its own are namespaced)."""
    return grant.object_id.removeprefix(grant.peer + ":")


def new_request_id() -> str:
    return os.urandom(6).hex()  # 12 hex digits, as uuid4().hex[:12] gave (at a fifth the cost)
