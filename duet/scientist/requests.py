"""``duet.requests`` on the scientist's side: the requests this scientist sent, and their fate.

Recorded here from what was sent (a get with ``request_block=True`` or ``ptr.request(...)``) and
the replies that came back; nothing is asked of the owner. Statuses: ``pending`` (no reply yet),
``accepted`` (the value came back: by the owner's hand, a handler, or the grant an earlier
accepted request left, see ``note``), ``denied``, ``timeout``, ``error`` (refused before the
queue, say PermissionDenied or a quota) and ``lost`` (the connection closed first).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ..protocol.messages import RequestStatus

if TYPE_CHECKING:
    import pandas

    from ..protocol.messages import Get, Reply

MAX_KEPT = 10_000  # the newest requests kept (a long training loop asks many times)


@dataclass(eq=False)
class SentRequest:
    """One request as this scientist knows it. ``id`` numbers requests in this session."""

    id: int
    name: str
    reason: str
    object_id: str
    status: RequestStatus = RequestStatus.PENDING
    note: str = ""
    sent: datetime = field(default_factory=datetime.now)
    answered: datetime | None = None

    def __repr__(self) -> str:
        return f"<request {self.id} {self.name!r} for {self.object_id}: {self.status}>"


class SentRequests:
    """The scientist's ``duet.requests``: list-like over its requests, oldest first, with
    ``.pandas`` and ``.pending``. Thread-safe (replies are recorded on the network's thread)."""

    def __init__(self, *, max_kept: int = MAX_KEPT):
        self._lock = threading.Lock()
        self._all: collections.deque[SentRequest] = collections.deque(maxlen=max_kept)
        self._waiting: dict[int, SentRequest] = {}  # by the id of the reply it waits for

    # ---- recorded by the client
    def sent(self, rid: int, message: Get) -> None:
        request = SentRequest(rid, message.name, message.reason, message.id)
        with self._lock:
            self._all.append(request)
            self._waiting[rid] = request

    def answered(self, rid: int, reply: Reply) -> None:
        with self._lock:
            request = self._waiting.pop(rid, None)
        if request is None:
            return
        if reply.status == "ok":  # the scientist's own value: no request was needed
            request.status = RequestStatus.ACCEPTED
            request.note = "yours: released without a request"
        else:
            request.status = RequestStatus(reply.status)
            note = reply.note or (reply.error.message if reply.error is not None else "")
            # what the owner said while it waited (why no handler decided it) stays
            request.note = f"{note} ({request.note})" if request.note else note
        request.answered = datetime.now()

    def noted(self, rid: int, text: str) -> None:
        """The owner said something about a request that still waits (why)."""
        with self._lock:
            request = self._waiting.get(rid)
        if request is not None:
            request.note = text

    def discard(self, rid: int) -> None:
        """The request was never sent (queueing it failed)."""
        with self._lock:
            request = self._waiting.pop(rid, None)
            if request is not None:
                self._all.remove(request)

    def lost(self, why: str) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for request in waiting.values():
            request.status, request.note = RequestStatus.LOST, why

    # ---- read by the scientist
    @property
    def pending(self) -> list[SentRequest]:
        with self._lock:
            return [r for r in self._all if r.status is RequestStatus.PENDING]

    @property
    def requests(self) -> list[SentRequest]:
        """Every request kept, oldest first (PySyft's ``duet.requests.requests``)."""
        with self._lock:
            return list(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[SentRequest]:
        with self._lock:
            return iter(list(self._all))

    def __getitem__(self, index: int) -> SentRequest:
        with self._lock:
            return list(self._all)[index]

    def rows(self) -> list[dict[str, object]]:
        """Every request kept as a plain row, oldest first (what ``.pandas`` shows)."""
        with self._lock:
            return [
                {"id": r.id, "name": r.name, "reason": r.reason, "object_id": r.object_id,
                 "status": r.status.value, "note": r.note, "sent": r.sent, "answered": r.answered}
                for r in self._all
            ]  # fmt: skip

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import sent_requests_frame

        return sent_requests_frame(self.rows())

    def __repr__(self) -> str:
        return f"<your requests: {len(self.pending)} pending, {len(self)} in all>"


__all__ = ["RequestStatus", "SentRequest", "SentRequests"]
