"""Telling the open review pages that the owner's state changed.

The owner's threads (a scientist's worker submitting a request, the thread that decides one,
the audit log recording a connect) call ``notify()``; each page's event stream waits on an
``asyncio.Event`` of its own on the page server's loop and is woken through
``call_soon_threadsafe``: nothing polls. Many changes in a row (a training loop's handled
requests) wake each stream once; the page then reads the state as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class Changes:
    """The page server's subscribers, woken from any thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # the page server's, once serving
        self.closed = False
        self._subscribers: set[asyncio.Event] = set()
        self._lock = threading.Lock()
        self._scheduled = False

    # ---- on the page server's loop
    def subscribe(self) -> asyncio.Event:
        changed = asyncio.Event()
        self._subscribers.add(changed)
        return changed

    def unsubscribe(self, changed: asyncio.Event) -> None:
        self._subscribers.discard(changed)

    def _wake(self) -> None:
        with self._lock:
            self._scheduled = False
        for changed in list(self._subscribers):
            changed.set()

    # ---- from any thread
    def notify(self, *_: object) -> None:
        """Something the page shows changed (the arguments, a request or an event, are not
        needed: the page reads the state again). Cheap when no page is open."""
        loop = self.loop
        if loop is None or not self._subscribers:
            return
        with self._lock:
            if self._scheduled:  # a wake-up is on its way: it covers this change too
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the page server's loop has stopped
            loop.call_soon_threadsafe(self._wake)

    def close(self) -> None:
        """Every stream ends (it tells its page the session closed)."""
        self.closed = True
        loop = self.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)
