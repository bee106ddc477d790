"""The owner's request queue and the handlers that decide requests as they arrive.

A request asks the owner to release a private value. Handlers are checked in the order they
were added the moment a request arrives (first match wins); a request no handler decides waits
for the owner (``duet.requests[0].accept()``) until it is decided or its timeout passes.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)


class RequestStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DENIED = "denied"
    TIMEOUT = "timeout"


@dataclass(eq=False)
class Request:
    """One request from a scientist. ``accept()`` or ``deny()`` decides it."""

    id: str
    name: str
    reason: str
    object_id: str
    object_type: str
    tags: list[str]
    peer: str
    elements: int
    arrival: datetime = field(default_factory=datetime.now)
    status: RequestStatus = RequestStatus.PENDING
    decided_by: str = ""
    _queue: RequestQueue | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False)  # what accepting releases (for print_local)

    def accept(self) -> None:
        """Release the value to the scientist."""
        self._decide(RequestStatus.ACCEPTED, "owner")

    def deny(self) -> None:
        """Refuse; the scientist's get returns None with a warning."""
        self._decide(RequestStatus.DENIED, "owner")

    def _decide(self, status: RequestStatus, by: str) -> None:
        if self._queue is None:
            raise UsageError("this request is not attached to a queue")
        self._queue._decide(self, status, by)

    def __repr__(self) -> str:
        return (
            f"<Request {self.id} {self.name!r} for {self.object_type} {self.object_id} "
            f"({self.status.value})>"
        )


@dataclass(eq=False)
class Handler:
    """Decides matching requests at once. Create with ``requests.add_handler(...)``."""

    id: int
    name: str | None
    tags: list[str] | None
    action: str
    timeout_secs: float
    print_local: bool
    element_quota: int | None
    created: float = field(default_factory=time.monotonic)
    released: int = 0
    matched: int = 0

    def expired(self, now: float) -> bool:
        return self.timeout_secs >= 0 and now - self.created > self.timeout_secs

    def matches(self, request: Request) -> bool:
        if self.name is not None and self.name != _normalize(request.name):
            return False
        if self.tags is not None and not set(self.tags) & set(request.tags):
            return False
        return True


def _normalize(name: str | None) -> str:
    return (name or "").strip().lower()


class RequestQueue:
    """``duet.requests``: indexable over the pending requests, ``.pandas`` shows them all.

    ``on_decided(request)`` is called (from whichever thread decided) once per request.
    """

    def __init__(self, on_decided: Callable[[Request], None] | None = None):
        self._lock = threading.RLock()
        self._requests: list[Request] = []
        self._handlers: list[Handler] = []
        self._handler_ids = itertools.count(1)
        self.on_decided = on_decided
        self.printer: Callable[[str], None] = print
        self._changed = threading.Condition(self._lock)
        self._listeners: list[Callable[[Request], None]] = []

    # ---- requests
    def submit(self, request: Request, value: Any) -> Request:
        """Record a request and let the handlers decide it; returns it (maybe still pending)."""
        request._queue = self
        request._value = value
        with self._lock:
            self._requests.append(request)
            handler = self._match(request)
            self._changed.notify_all()
        if handler is not None:
            self._apply(handler, request)
        return request

    def _apply(self, handler: Handler, request: Request) -> None:
        handler.matched += 1
        action = handler.action
        if action == "accept" and handler.element_quota is not None:
            if handler.released + request.elements > handler.element_quota:
                action = "deny"
                log.info(
                    "handler %s quota of %s elements reached", handler.id, handler.element_quota
                )
            else:
                handler.released += request.elements
        if handler.print_local:
            verdict = "accepted" if action == "accept" else "denied"
            self.printer(
                f"[duet] request {request.name!r} ({verdict} by a handler): {request._value!r}"
            )
        status = RequestStatus.ACCEPTED if action == "accept" else RequestStatus.DENIED
        try:
            self._decide(request, status, f"handler {handler.id}")
        except UsageError:  # decided meanwhile by the owner's hand: the hand wins
            pass

    def expire(self, request: Request) -> None:
        if request.status is RequestStatus.PENDING:
            self._decide(request, RequestStatus.TIMEOUT, "timeout")

    def _decide(self, request: Request, status: RequestStatus, by: str) -> None:
        with self._lock:
            if request.status is not RequestStatus.PENDING:
                raise UsageError(f"request {request.id} was already {request.status.value}")
            request.status = status
            request.decided_by = by
            request._value = None  # the owner's value is no longer needed here
            self._changed.notify_all()
        log.info("request %s %r %s by %s", request.id, request.name, status.value, by)
        if self.on_decided is not None:
            self.on_decided(request)
        for listener in list(self._listeners):
            try:
                listener(request)
            except Exception:  # a listener's bug must not stop the owner serving
                log.exception("a request listener failed")

    def _match(self, request: Request) -> Handler | None:
        now = time.monotonic()
        self._handlers = [h for h in self._handlers if not h.expired(now)]
        for handler in self._handlers:
            if handler.matches(request):
                return handler
        return None

    def add_listener(self, listener: Callable[[Request], None]) -> None:
        """Call ``listener(request)`` after each decision (to show or log decisions live)."""
        self._listeners.append(listener)

    @property
    def pending(self) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if r.status is RequestStatus.PENDING]

    @property
    def history(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

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

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import requests_frame

        ordered = self.pending + [r for r in self.history if r.status is not RequestStatus.PENDING]
        return requests_frame(ordered)

    def __repr__(self) -> str:
        return f"<requests: {len(self)} pending, {len(self.history)} in all>"

    # ---- handlers
    def add_handler(
        self,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        action: str = "accept",
        timeout_secs: float = -1,
        print_local: bool = False,
        element_quota: int | None = None,
    ) -> Handler:
        """Decide matching requests automatically, first match wins.

        ``name`` matches the request's name (trimmed, case-insensitive); ``tags`` match the
        stored object's tags (the owner's, not the scientist's claim); neither matches all.
        ``timeout_secs`` makes the handler expire (-1: never). ``print_local`` prints the value
        here. ``element_quota`` caps the tensor elements it may release, then it denies.
        """
        if action not in ("accept", "deny"):
            raise UsageError(f"action must be 'accept' or 'deny', not {action!r}")
        if element_quota is not None and element_quota < 0:
            raise UsageError("element_quota must be a non-negative number of elements")
        handler = Handler(
            id=next(self._handler_ids),
            name=None if name is None else _normalize(name),
            tags=None if tags is None else [str(t) for t in tags],
            action=action,
            timeout_secs=float(timeout_secs),
            print_local=print_local,
            element_quota=element_quota,
        )
        with self._lock:
            self._handlers.append(handler)
            # requests already waiting are decided now too, as if they had just arrived
            waiting = [r for r in self.pending if self._match(r) is handler]
        for request in waiting:
            self._apply(handler, request)
        return handler

    @property
    def handlers(self) -> HandlerList:
        with self._lock:
            now = time.monotonic()
            self._handlers = [h for h in self._handlers if not h.expired(now)]
            return HandlerList(self._handlers)

    def remove_handler(self, handler: Handler | int | str) -> None:
        """Remove a handler by object, id, or name."""
        with self._lock:
            before = len(self._handlers)
            self._handlers = [
                h
                for h in self._handlers
                if not (
                    h is handler
                    or h.id == handler
                    or (isinstance(handler, str) and h.name == _normalize(handler))
                )
            ]
            if len(self._handlers) == before:
                raise UsageError(f"no handler {handler!r}")

    def clear_handlers(self) -> None:
        with self._lock:
            self._handlers = []


class HandlerList(list[Handler]):
    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import handlers_frame

        return handlers_frame(self)


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]
