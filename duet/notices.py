"""Telling the owner what waits for it.

When a request arrives that no handler decides, the owner is told at once: a line on the
console in a script (and in ``duet serve``'s event log), a notice in a notebook. A request the
scientist gave a timeout is announced again shortly before it passes (``REMIND_SECS`` before,
or at 80% of a shorter timeout), unless it was decided meanwhile.

This is presentation only: a listener on the request queue (``add_waiting_listener``), never
part of how requests are decided. What a scientist chose (the request's name and reason, a
claimed name) is shown as data (``display.quoted``): it cannot pass for the owner's own lines.
"""

from __future__ import annotations

import heapq
import html
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .display import quoted, shown
from .protocol.messages import RequestStatus

if TYPE_CHECKING:
    from .owner.requests import Request, RequestQueue

log = logging.getLogger(__name__)
REMIND_SECS = 10.0  # a reminder this long before a request times out...
REMIND_SHARE = 0.2  # ...or this share of its timeout before, when that is sooner
MIN_REMIND_SECS = 0.5  # no reminder closer than this to the timeout (nothing could be done)
NOTICE_BURST = 5  # notices shown about one scientist's requests per window; the rest counted
NOTICE_WINDOW_SECS = 10.0
MAX_WINDOWS = 1000  # scientists whose windows are remembered
MAX_DUE = 10_000  # reminders kept before those of decided requests are dropped
#: ``say(kind, text)``: kind is "waiting" (a request arrived) or "expiring" (about to time out)
Say = Callable[[str, str], None]


def remind_at(request: Request) -> float | None:
    """When (``time.monotonic``) to remind the owner of ``request``; None: no reminder (it has
    no timeout, or one too short to act on)."""
    if request.deadline is None or request.timeout_secs is None:
        return None
    ahead = min(REMIND_SECS, REMIND_SHARE * request.timeout_secs)
    if ahead < MIN_REMIND_SECS:
        return None
    return request.deadline - ahead


def _who(request: Request) -> str:
    name = shown(request.scientist_name) if request.scientist_name else ""
    return f"{name} ({shown(request.peer)})" if name else shown(request.peer)


def _what(request: Request) -> str:
    tags = ", ".join(shown(t) for t in request.tags) or "untagged data"
    made = f" made by {shown(request.op)}" if request.op else ""
    count = request.elements
    size = f"{count} element{'' if count == 1 else 's'}"
    return f"a {shown(request.kind)} ({size}) from {tags}{made}"


def _named(request: Request) -> str:
    named = quoted(request.name) if request.name else "(no name)"
    return f"request {named} [{shown(request.id)}]"


def waiting_text(request: Request, *, hint: bool = True) -> str:
    """One line: a request no handler decided waits for the owner."""
    reason = f"; reason {quoted(request.reason)}" if request.reason else ""
    if request.timeout_secs is None:
        limit = "; it waits until you decide"
    else:
        limit = f"; it times out in {request.timeout_secs:g} s"
    how = f". Decide: {_decide(request)}" if hint else ""
    return (
        f"{_named(request)} from {_who(request)} waits for you: {_what(request)}{reason}"
        f"{limit}{how}"
    )


def expiring_text(request: Request, left_secs: float, *, hint: bool = True) -> str:
    """One line: a waiting request is about to time out."""
    how = f": {_decide(request)}" if hint else ""
    return (
        f"{_named(request)} from {_who(request)} times out in {max(0.0, left_secs):.0f} s "
        f"unless you decide it{how}"
    )


def _decide(request: Request) -> str:
    return f'duet.requests["{shown(request.id)}"].accept() or .deny()'


def in_kernel() -> bool:
    """True when running in a Jupyter (IPython) kernel, where notices are displayed."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def print_line(kind: str, text: str) -> None:
    """A notice as a console line (scripts), written at once, whole (one write: the owner's
    own printing, on another thread, cannot cut into it)."""
    sys.stdout.write(f"♫♫♫ > {text}\n")
    sys.stdout.flush()


def notebook_notice(kind: str, text: str) -> None:
    """A notice displayed in the notebook (the text escaped as HTML)."""
    from IPython.display import HTML, display

    color = "#b26b00" if kind == "expiring" else "#1f5fa8"
    display(
        HTML(
            f'<div style="border-left: 4px solid {color}; padding: 2px 8px">'
            f"<b>duet</b> {html.escape(text)}</div>"
        )
    )


def default_say() -> Say:
    return notebook_notice if in_kernel() else print_line


class RequestNotices:
    """Tells the owner about requests that wait for it, through ``say(kind, text)``.

    ``attach(queue)`` listens to a request queue; ``close()`` stops the reminders. Reminders
    run on one thread of their own (started with the first), which sleeps until the next is
    due or a new one comes, never polling.

    A scientist cannot flood the owner's screen: at most ``burst`` notices about one
    scientist's requests are shown per ``window_secs``; the rest are counted and told in one
    line when the window ends ("and 37 more requests ... wait for you").
    """

    def __init__(
        self,
        say: Say | None = None,
        *,
        hint: bool = True,
        burst: int = NOTICE_BURST,
        window_secs: float = NOTICE_WINDOW_SECS,
    ):
        self.say = say or default_say()
        self.hint = hint  # show how to decide (``duet.requests[...]``): not where one cannot
        self.burst = burst
        self.window_secs = window_secs
        self._due: list[tuple[float, int, Callable[[], None], Request | None]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._windows: dict[str, _Window] = {}  # per scientist: what was shown lately

    def attach(self, queue: RequestQueue) -> None:
        queue.add_waiting_listener(self.waiting)

    def waiting(self, request: Request) -> None:
        """(The queue's listener) a request arrived that waits for the owner."""
        self._tell(request, "waiting", lambda: waiting_text(request, hint=self.hint))
        when = remind_at(request)
        if when is not None:
            self._at(when, lambda: self._remind(request), request)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._due.clear()
            self._changed.notify()

    def _remind(self, request: Request) -> None:
        if request.status is RequestStatus.PENDING and request.deadline is not None:
            left = request.deadline - time.monotonic()
            self._tell(request, "expiring", lambda: expiring_text(request, left, hint=self.hint))

    def _tell(self, request: Request, kind: str, text: Callable[[], str]) -> None:
        """Say ``text()`` unless this scientist had its ``burst`` of notices in this window."""
        now = time.monotonic()
        with self._changed:
            window = self._windows.get(request.peer)
            if window is None or now >= window.start + self.window_secs:
                window = self._windows[request.peer] = _Window(now)
                if len(self._windows) > MAX_WINDOWS:  # forget the oldest scientists' windows
                    for peer in list(self._windows)[: len(self._windows) - MAX_WINDOWS]:
                        del self._windows[peer]
            held = first = False
            if window.shown < self.burst:
                window.shown += 1
            else:
                window.held += 1
                held, first = True, window.held == 1
        if not held:
            self._say(kind, text())
        elif first:  # said once, when this window ends
            self._at(window.start + self.window_secs, lambda: self._held(request, window))

    def _held(self, request: Request, window: _Window) -> None:
        with self._changed:
            count, window.held = window.held, 0
        if count:
            self._say(
                "waiting",
                f"and {count} more notices about requests from {_who(request)} in the last "
                f"{self.window_secs:g} s (not shown one by one): duet.requests.pandas lists "
                "those that wait for you",
            )

    def _at(self, when: float, action: Callable[[], None], about: Request | None = None) -> None:
        """Run ``action`` at ``when`` (monotonic) on the reminders' thread; ``about``: the
        request it reminds of (dropped early once decided, when many are due)."""
        with self._changed:
            if self._closed:
                return
            if len(self._due) >= MAX_DUE:  # decided requests' reminders go first
                self._due = [
                    e for e in self._due if e[3] is None or e[3].status is RequestStatus.PENDING
                ]
                heapq.heapify(self._due)
            heapq.heappush(self._due, (when, next(self._order), action, about))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="duet-request-reminders", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._due or self._due[0][0] > time.monotonic()):
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(timeout)
                if self._closed:
                    return
                _, _, action, _ = heapq.heappop(self._due)
            try:
                action()
            except Exception:  # telling must never stop the owner serving
                log.exception("a request reminder failed")

    def _say(self, kind: str, text: str) -> None:
        try:
            self.say(kind, text)
        except Exception:  # telling must never stop the owner serving
            log.exception("could not show a request notice")


class _Window:
    """One scientist's notices in one window: shown, and held back (told in one line)."""

    def __init__(self, start: float):
        self.start = start
        self.shown = 0
        self.held = 0


__all__ = ["RequestNotices", "expiring_text", "in_kernel", "remind_at", "waiting_text"]
