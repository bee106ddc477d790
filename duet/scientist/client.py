"""The scientist's side of a session: queues actions, coalesces them into frames, matches replies.

Calls on pointers never wait: each queues an action and returns a new pointer whose id was
chosen here. The queue is flushed as soon as the event loop gets to it (so actions issued in a
burst ride together), when it grows large, and before anything blocks. Replies are matched to
waiting calls by request id.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO, TypeVar

from ..errors import ConnectionLost, DuetTimeout, QuotaExceeded, UsageError, error_from_wire
from ..protocol import allowlist
from ..protocol.messages import (
    Call,
    Delete,
    ErrorInfo,
    Failure,
    Get,
    Message,
    Notice,
    Put,
    Reply,
    Sync,
)
from ..protocol.serde import Decoder, Encoder, JSONValue
from .pointer import Pointer, stand_in_pointer
from .requests import SentRequests

if TYPE_CHECKING:
    from ..connection import Connection

log = logging.getLogger(__name__)
FLUSH_AT = 512
WINDOW_ACTIONS = 256  # a barrier every this many actions
MAX_MARKS = 2  # unanswered barriers before the caller waits
# When dropped pointers are freed on the owner's side. None: one Delete at the end of each
# frame. A number: a Delete rides in the frame once this many were dropped, so the owner does
# not hold a frame's worth of results nobody points at (a training step's activations: on the
# tutorial CNN 1,370 -> 890 MiB owner RSS at 8). With glibc's default allocator thresholds,
# freeing mid-frame made the owner trim and fault its heap back in every step (44 -> 53 ms a
# step); owners fix those thresholds (duet/owner/tuning.py), so it is both smaller and faster.
DELETE_BATCH: int | None = 8
# Once the owner has answered everything (a get, a sync), it waits for actions. A caller
# computing in Python holds the interpreter's lock, and frames queued meanwhile leave only when
# it lets go (its switch interval, 5 ms) or waits: at the start of each tutorial epoch the owner
# sat idle ~10 ms for a frame of a dozen steps. So the first URGENT_FIRST actions after such a
# reply go in a frame at once, the next URGENT_FIRST * URGENT_GROWTH too (up to URGENT_MAX),
# the caller letting the network loop send each before going on; then batching as usual. A few
# actions before a request (an op, then a get) are handed on as before, nobody waiting.
URGENT_FIRST = 8
URGENT_GROWTH = 8
URGENT_MAX = 64
URGENT_WAIT_SECS = 0.05  # the longest the caller lets go for one frame
_T = TypeVar("_T")


class PointerClient:
    # what ``ptr.location`` answers (the session or worker that made this client), and whether
    # ``ptr.get()`` frees the object on the owner's side by default; set by their maker
    location: object = None
    moves_on_get = False
    # a tensor sent with requires_grad comes back from get() with its gradient (PySyft 0.2's
    # workers: x.get() after a remote backward() has x.grad); set by their maker
    gets_grads = False

    def __init__(self, connection: Connection, *, default_timeout_secs: float = 120.0):
        self.connection = connection
        self.default_timeout_secs = default_timeout_secs
        self._lock = threading.Lock()
        self._queue: list[Message] = []
        self._buffers: list[memoryview] = []
        self._deletes: collections.deque[str] = collections.deque()
        self._flush_scheduled = False
        self._urgent = 0  # > 0: the owner may be idle; a frame goes at once at this many
        self._prefix = "s" + secrets.token_hex(4) + "-"
        self._ids = itertools.count(1)
        self._rids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[tuple[Reply, list[memoryview]]]] = {}
        self._recording: list[Message] | None = None
        self._since_mark = 0
        self._in_pace = False
        self._marks: collections.deque[
            concurrent.futures.Future[tuple[Reply, list[memoryview]]]
        ] = collections.deque()
        self.failures: dict[str, ErrorInfo] = {}
        self.notices: collections.deque[ErrorInfo] = collections.deque(
            maxlen=1000
        )  # newest failures
        self.lost: ConnectionLost | None = None
        self.actions_sent = 0
        # what this scientist asked the owner to release, and the answers (duet.requests)
        self.requests = SentRequests()
        # where a blocking request shows that it waits for the owner (None: stderr)
        self.wait_stream: TextIO | None = None
        # request id -> who hears the owner's notices about it (a DP job's progress), until
        # its reply arrives
        self.notice_listeners: dict[int, Callable[[str], None]] = {}

    # ---- ids and pointers
    def new_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    # meta: the new pointer's, typed as Pointer.meta is (JSON facts read by key)
    def pointer(
        self, object_id: str, kind: str | None, meta: dict[str, object] | None, *, owned: bool
    ) -> Pointer:
        # results recorded into a plan are symbolic: nothing on the owner's side to free
        owned = owned and self._recording is None
        return Pointer(self, object_id, kind, meta or {}, owned=owned)

    def ref_of(self, value: object) -> str | None:
        # hot: every argument of every action passes here, so Pointer is imported at the top
        if isinstance(value, Pointer):
            if value._client is not self:
                raise UsageError(
                    f"{value!r} is on {_place(value._client)} and this call goes to "
                    f"{_place(self)}: values on different workers cannot be used together; "
                    "move one first (ptr.move(location))"
                )
            return value.id
        stand_in = stand_in_pointer(value)  # a sent model's parameter: its twin over there
        return None if stand_in is None else self.ref_of(stand_in)

    # ---- queueing
    @contextlib.contextmanager
    def recording(self) -> Iterator[list[Message]]:
        """Collect the calls made inside instead of sending them (for plans)."""
        if self._recording is not None:
            raise UsageError("plans cannot be recorded inside plans")
        calls: list[Message] = []
        self._recording = calls
        try:
            yield calls
        finally:
            self._recording = None

    def enqueue(self, build: Callable[[Encoder], Message], *, now: bool = False) -> None:
        """Queue one action; ``build`` encodes its values into this frame's buffers. ``now``:
        the frame goes at once (the caller is about to wait for its reply), so no flush is
        scheduled on the loop for it."""
        if self.lost is not None:
            raise ConnectionLost(str(self.lost))
        if self._recording is not None:
            scratch: list[memoryview] = []
            message = build(Encoder(scratch, self.ref_of))
            if scratch:
                raise UsageError(
                    "a plan cannot capture local tensors: send them first (x.send(duet))"
                )
            self._recording.append(message)
            return
        with self._lock:
            mark = len(self._buffers)
            try:
                message = build(Encoder(self._buffers, self.ref_of))
            except BaseException:
                del self._buffers[mark:]
                raise
            if DELETE_BATCH is not None and len(self._deletes) >= DELETE_BATCH:
                self._queue.append(Delete.model_construct(ids=self._take_deletes()))
            self._queue.append(message)
            size = len(self._queue)
            # tensors are encoded without a copy: send now, while they still hold the values
            # they had when sent (the frame is packed, so copied, before this call returns)
            copies_pending = len(self._buffers) > mark
            urgent = 0 < self._urgent <= size and not now
            if urgent:
                grown = self._urgent * URGENT_GROWTH
                self._urgent = grown if grown <= URGENT_MAX else 0
            schedule = not self._flush_scheduled and not now and not urgent
            self._flush_scheduled = self._flush_scheduled or schedule
        if urgent:
            self.flush(until_sent=True)
        elif size >= FLUSH_AT or copies_pending or now:
            self.flush()
        elif schedule:
            self.connection.loop.call_soon_threadsafe(self.flush)
        self._pace()

    def _pace(self) -> None:
        """Flow control for actions: at most ~WINDOW_ACTIONS * MAX_MARKS wait on the owner.

        Every WINDOW_ACTIONS actions a barrier rides along; once MAX_MARKS barriers are
        unanswered, the caller waits for the oldest. The owner's queue (its memory) stays
        bounded however fast the scientist issues actions.
        """
        self._since_mark += 1
        if self._since_mark < WINDOW_ACTIONS or self._in_pace:
            return
        self._since_mark = 0
        self._in_pace = True
        try:
            self._marks.append(self.request_async(lambda rid: Sync.model_construct(rid=rid)))
            while len(self._marks) > MAX_MARKS:
                self.wait(self._marks.popleft(), timeout_secs=None, what="pacing actions")
            while self._marks and self._marks[0].done():
                self._marks.popleft()
        finally:
            self._in_pace = False

    def call(
        self,
        op: allowlist.Op,
        target: Pointer | None,
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> Pointer:
        op.check_kwargs(kwargs)
        result_id = self.new_id()
        name = op.path if target is None else op.path.split(".", 1)[1]
        self.enqueue(
            # built by our own code from checked parts: skip re-validating on the hot path
            lambda enc: Call.model_construct(
                op=name,
                target=None if target is None else target.id,
                args=[enc.encode(a) for a in args],
                kwargs={k: enc.encode(v) for k, v in kwargs.items()},
                result=result_id,
            )
        )
        receiver_meta = {} if target is None else {"kind": target.kind, **target.meta}
        kind, meta = op.result_kind(receiver_meta, args, kwargs)
        tags = _result_tags(name, target, args, kwargs)
        if tags:
            meta = {**meta, "tags": tags}
        return self.pointer(result_id, kind, meta, owned=True)

    def put(self, value: object, *, tags: list[str] | None = None, description: str = "") -> str:
        object_id = self.new_id()

        def build(enc: Encoder) -> Put:
            mark = len(enc.buffers)
            encoded = enc.encode(value)
            self._check_put_size(sum(memoryview(b).nbytes for b in enc.buffers[mark:]))
            return Put(id=object_id, value=encoded, tags=tags or [], description=description)

        self.enqueue(build)
        return object_id

    def _check_put_size(self, size: int) -> None:
        """Refuse here, before sending, a value the owner said it could never take."""
        hello = getattr(self.connection, "peer_hello", None)
        if hello is None:
            return
        if hello.max_bytes is not None and size > hello.max_bytes:
            raise QuotaExceeded(
                f"this value is {size} bytes and the owner lets a scientist store "
                f"{hello.max_bytes} bytes; nothing was sent"
            )
        if hello.max_frame_bytes is not None and size > hello.max_frame_bytes:
            raise QuotaExceeded(
                f"this value is {size} bytes and the owner accepts at most "
                f"{hello.max_frame_bytes} bytes in one frame; nothing was sent"
            )

    def release(self, object_id: str) -> None:
        """A pointer was dropped: free its object on the owner's side (batched)."""
        self._deletes.append(object_id)  # deque.append is atomic: safe from __del__ anywhere

    def _take_deletes(self) -> list[str]:
        deletes = []
        while self._deletes:  # popleft is atomic too: drops from other threads may interleave
            deletes.append(self._deletes.popleft())
        return deletes

    def flush(self, *, until_sent: bool = False) -> None:
        """Send what is queued; ``until_sent``: let the network loop send it before going on
        (see URGENT_GROWTH)."""
        with self._lock:
            self._flush_scheduled = False
            messages, buffers = self._queue, self._buffers
            self._queue, self._buffers = [], []
            deletes = self._take_deletes()
        if deletes:
            messages.append(Delete.model_construct(ids=deletes))
        if not messages or self.lost is not None:
            return
        self.actions_sent += len(messages)
        try:
            wait = URGENT_WAIT_SECS if until_sent else None
            self.connection.send(messages, buffers, until_sent=wait)
        except ConnectionLost as exc:
            self.on_lost(exc)

    # ---- blocking calls
    def request(
        self, build: Callable[[int], Message], *, timeout_secs: float | None, what: str
    ) -> tuple[Reply, list[memoryview]]:
        future = self.request_async(build)
        return self.wait(future, timeout_secs=timeout_secs, what=what)

    def request_async(
        self, build: Callable[[int], Message]
    ) -> concurrent.futures.Future[tuple[Reply, list[memoryview]]]:
        if self._recording is not None:
            raise UsageError(
                "a plan cannot wait for values (no get, len or iteration inside a plan)"
            )
        rid = next(self._rids)
        future: concurrent.futures.Future[tuple[Reply, list[memoryview]]] = (
            concurrent.futures.Future()
        )
        self._pending[rid] = future
        # the blocking message rides in a frame of its own: if the owner refuses the frame
        # before it (too large, say), this one still gets its reply
        self.flush()

        def built(enc: Encoder) -> Message:
            message = build(rid)
            if type(message) is Get and message.request:
                self.requests.sent(rid, message)
            return message

        try:
            self.enqueue(built, now=True)
        except BaseException:
            self._pending.pop(rid, None)
            self.requests.discard(rid)
            raise
        return future

    def wait(
        self, future: concurrent.futures.Future[_T], *, timeout_secs: float | None, what: str
    ) -> _T:
        timeout = self.default_timeout_secs if timeout_secs is None else timeout_secs
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError as exc:
            raise DuetTimeout(f"{what}: no reply from the owner within {timeout} s") from exc

    def decode(self, value: JSONValue, buffers: list[memoryview]) -> object:
        return Decoder(buffers, None).decode(value)

    @staticmethod
    def raise_for(reply: Reply) -> None:
        if reply.status == "error" and reply.error is not None:
            e = reply.error
            raise error_from_wire(e.code, e.message, op=e.op, remote_type=e.remote_type)

    # ---- incoming (on the loop thread)
    def on_messages(self, messages: list[Message], buffers: list[memoryview]) -> None:
        for message in messages:
            if isinstance(message, Reply):
                self.notice_listeners.pop(message.rid, None)
                self.requests.answered(message.rid, message)
                future = self._pending.pop(message.rid, None)
                if not self._pending:  # all answered: the owner may wait for what comes next
                    self._urgent = URGENT_FIRST
                if future is not None and not future.done():
                    future.set_result((message, buffers))
            elif isinstance(message, Notice):
                listener = self.notice_listeners.get(message.rid)
                if listener is not None:
                    listener(message.text)
                    continue
                self.requests.noted(message.rid, message.text)
                log.warning("the owner: %s", message.text)
            elif isinstance(message, Failure):
                self.notices.append(message.error)
                if message.result is not None:
                    self.failures[message.result] = message.error
                    if len(self.failures) > 10_000:
                        self.failures.pop(next(iter(self.failures)))
                log.warning(
                    "remote %s failed: %s", message.error.op or "operation", message.error.message
                )
            else:
                log.warning(
                    "ignored an unexpected %s message from the owner", type(message).__name__
                )

    def on_lost(self, exc: ConnectionLost) -> None:
        self.lost = exc
        self.requests.lost(f"the connection closed before the owner answered ({exc})")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(str(exc)))


def _place(client: PointerClient) -> str:
    """How an error names where a client's objects are: the worker's id, or the session."""
    location = client.location
    return str(getattr(location, "id", None) or location or "another duet session")


def _result_tags(
    name: str, target: Pointer | None, args: tuple[object, ...], kwargs: dict[str, object]
) -> list[str]:
    """The tags a result's pointer shows, as PySyft named them: those of the pointers it was
    made from, then the op's name (``["ages", "mean"]``). The scientist's own bookkeeping: what
    the owner's handlers match is the owner's record, never these."""
    tags: dict[str, None] = {}
    for value in (target, *args, *kwargs.values()):
        if isinstance(value, Pointer):
            tags.update(dict.fromkeys(value.tags))
    if not tags:
        return []
    tags[name.rsplit(".", 1)[-1]] = None
    return list(tags)
