"""Serving one scientist: run its actions in order, off the network loop, and answer its gets.

Every action is checked here, whatever the scientist's side checked: the op must be on the
allowlist for the real type of its target, ids must be the scientist's own or published
objects it may see, and results must fit the scientist's quota. A failing action stores its error
under the result id (raised on the scientist's side when something depends on it) and the
service keeps serving.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..errors import DuetError, NotAllowed, PermissionDenied, ProtocolError, RemoteError, UsageError
from ..protocol import allowlist
from ..protocol.messages import (
    Call,
    DefinePlan,
    Delete,
    ErrorInfo,
    Failure,
    Get,
    ListStore,
    Put,
    Reply,
    RunPlan,
    Sync,
)
from ..protocol.serde import Decoder, Encoder
from .context import OwnerSettings, set_current
from .requests import Request, RequestQueue, RequestStatus, new_request_id
from .store import OWNER, ObjectStore, StoredObject, describe, value_elements, value_nbytes

log = logging.getLogger(__name__)

MAX_FAILURES = 100_000
MAX_PLANS = 1000
MAX_BACKLOG = 50_000  # messages received but not yet run (the scientist's window is ~512)


def _rebind(value: Any, names: dict[str, str]) -> Any:
    """Rename the object references inside encoded values (a plan's symbolic ids)."""
    if isinstance(value, dict):
        if value.get("$") == "ref" and isinstance(value.get("id"), str):
            return {"$": "ref", "id": names.get(value["id"], value["id"])}
        return {key: _rebind(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebind(item, names) for item in value]
    return value


class _Propagated(Exception):
    """An input of this action had failed: carry the original error."""

    def __init__(self, info: ErrorInfo):
        self.info = info


class PeerService:
    """Runs one scientist's actions on a dedicated worker thread.

    ``send(messages, buffers)`` is called from the worker thread (or the thread that decides a
    request) and must be thread-safe. ``call_later(delay, fn)`` schedules request expiry.
    """

    def __init__(
        self,
        peer: str,
        store: ObjectStore,
        requests: RequestQueue,
        send: Callable[[list[Any], list[memoryview]], None],
        call_later: Callable[[float, Callable[[], None]], None],
        *,
        redact_errors: bool = False,
        settings: OwnerSettings | None = None,
    ):
        self.settings = settings or OwnerSettings()
        self.peer = peer
        self.store = store
        self.requests = requests
        self._send = send
        self._call_later = call_later
        self.redact_errors = redact_errors
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting: dict[str, tuple[int, bool]] = {}  # request id -> (reply id, delete_obj)
        self._failed: collections.OrderedDict[str, ErrorInfo] = collections.OrderedDict()
        self._plans: dict[str, DefinePlan] = {}
        self._plan_runs = 0
        self.actions_run = 0
        self.max_backlog = MAX_BACKLOG
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=f"duet-owner-{peer}", daemon=True)
        self._thread.start()

    # ---- called from the network loop
    def submit(self, messages: list[Any], buffers: list[memoryview]) -> bool:
        """Queue messages to run; False when the backlog would pass ``max_backlog``.

        A scientist that keeps to the action window never comes near the limit; one that
        ignores it is stopped here instead of growing the owner's memory without bound.
        """
        with self._backlog_lock:
            if self._backlog + len(messages) > self.max_backlog:
                return False
            self._backlog += len(messages)
        self._queue.put((messages, buffers))
        return True

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout_secs: float) -> None:
        self._thread.join(timeout_secs)

    # ---- the worker thread
    def _work(self) -> None:
        set_current(self.settings)
        while True:
            item = self._queue.get()
            if item is None:
                return
            messages, buffers = item
            out: list[Any] = []
            out_buffers: list[memoryview] = []
            for message in messages:
                try:
                    self._handle(message, buffers, out, out_buffers)
                except DuetError as exc:
                    out.append(
                        Failure(result=None, error=self._error_info(exc, type(message).__name__))
                    )
                except Exception as exc:  # the owner keeps serving whatever one message does
                    log.exception("unexpected failure handling %s", type(message).__name__)
                    out.append(Failure(result=None, error=self._error_info(exc, None)))
            with self._backlog_lock:
                self._backlog -= len(messages)
            if out:
                self._send(out, out_buffers)

    def _handle(
        self, message: Any, buffers: list[memoryview], out: list[Any], out_buffers: list[memoryview]
    ) -> None:
        if isinstance(message, Call):
            failure = self._call(message, buffers)
            if failure is not None:
                out.append(failure)
        elif isinstance(message, Put):
            try:
                self._put(message, buffers)
            except Exception as exc:
                if message.id in self.store or message.id in self._failed:
                    out.append(Failure(result=None, error=self._error_info(exc, "send")))
                else:
                    out.append(self._store_failure(message.id, self._error_info(exc, "send")))
        elif isinstance(message, Delete):
            for object_id in message.ids:
                if self._failed.pop(object_id, None) is not None:
                    continue
                entry = self.store.get(object_id)
                if entry is None:
                    continue
                if entry.owner != self.peer:
                    out.append(
                        Failure(
                            result=None,
                            error=ErrorInfo(
                                code=NotAllowed.code,
                                op="delete",
                                message=f"object {object_id} is not yours to delete",
                            ),
                        )
                    )
                    continue
                self.store.remove(object_id)
        elif isinstance(message, Get):
            reply = self._get(message, out_buffers)
            if reply is not None:
                out.append(reply)
        elif isinstance(message, DefinePlan):
            if message.id in self._plans or len(self._plans) >= MAX_PLANS:
                raise UsageError(f"plan id {message.id!r} is in use, or {MAX_PLANS} plans exist")
            if len(message.inputs) != len(set(message.inputs)):
                raise ProtocolError("a plan's inputs must be distinct")
            self._plans[message.id] = message
        elif isinstance(message, RunPlan):
            self._run_plan(message, out)
        elif isinstance(message, Sync):
            out.append(Reply(rid=message.rid))
        elif isinstance(message, ListStore):
            rows = [
                {"id": e.id, "tags": e.tags, "description": e.description, "size": e.nbytes,
                 **describe(e.value)}
                for e in self.store.published()
                if e.pointable
            ]  # fmt: skip
            out.append(Reply(rid=message.rid, value=rows))
        else:
            raise ProtocolError(f"a scientist may not send {type(message).__name__} messages")

    # ---- actions
    def _visible(self, object_id: str) -> StoredObject:
        """The entry this scientist may name: its own, or the owner's listed objects.

        Anything else reads as missing, so the scientist learns nothing about it."""
        entry = self.store.get(object_id)
        if (
            entry is None
            or (entry.owner == OWNER and not entry.pointable)
            or (entry.owner not in (OWNER, self.peer))
        ):
            raise UsageError(
                f"object {object_id} does not exist on the owner's side (deleted or never created)"
            )
        return entry

    def _use(self, object_id: str, used: list[StoredObject]) -> Any:
        failed = self._failed.get(object_id)
        if failed is not None:
            raise _Propagated(failed)
        entry = self._visible(object_id)
        used.append(entry)
        return entry.value

    def _call(self, message: Call, buffers: list[memoryview]) -> Failure | None:
        path = message.op
        if message.result in self.store or message.result in self._failed:
            return Failure(
                result=None,
                error=ErrorInfo(
                    code=UsageError.code,
                    op=path,
                    message=f"object id {message.result!r} is already in use; ids cannot be reused",
                ),
            )
        used: list[StoredObject] = []
        try:
            if message.target is None:
                op = allowlist.function(path)
                call_args: list[Any] = []
            else:
                target = self._use(message.target, used)
                kind = allowlist.type_key(target)
                if kind is None:  # the owner knows the real type: no guessing across tables
                    raise NotAllowed(f"{type(target).__name__} objects have no remote methods")
                op = allowlist.member(kind, path)
                call_args = [target]
            path = op.path
            decoder = Decoder(buffers, lambda ref: self._use(ref, used))
            args = [decoder.decode(a) for a in message.args]
            op.check_kwargs(message.kwargs)
            kwargs = {key: decoder.decode(value) for key, value in message.kwargs.items()}
            if op.kind == "attribute" and (args or kwargs):
                raise ProtocolError(f"{op.path} is an attribute and takes no arguments")
            assert op.impl is not None
            result = op.impl(*call_args, *args, **kwargs)
        except _Propagated as failed:
            return self._store_failure(message.result, failed.info, notify=False)
        except Exception as exc:
            return self._store_failure(message.result, self._error_info(exc, path))
        self.actions_run += 1
        private = op.owner_data or any(self.store.is_private(e) for e in used)
        tags: frozenset[str] = frozenset()
        if private:
            taint = self.store.taint
            tags = tags.union(*(e.source_tags | taint.tags_of(e.value) for e in used))
            if op.mutates and call_args:
                taint.mark_mutated(op.path, call_args[0], tags)
            if result is not None:
                taint.mark(result, tags)
        entry = StoredObject(
            id=message.result,
            value=result,
            owner=self.peer,
            private=private,
            nbytes=value_nbytes(result),
            source_tags=tags,
        )
        try:
            self.store.add_for_peer(self.peer, entry)
        except DuetError as exc:
            return self._store_failure(message.result, self._error_info(exc, op.path))
        return None

    def _store_failure(
        self, result_id: str, info: ErrorInfo, *, notify: bool = True
    ) -> Failure | None:
        # kept apart from the store (and its quota) so a quota error can be reported too;
        # bounded, oldest forgotten first
        self._failed[result_id] = info
        if len(self._failed) > MAX_FAILURES:
            self._failed.popitem(last=False)
        return Failure(result=result_id, error=info) if notify else None

    def _put(self, message: Put, buffers: list[memoryview]) -> None:
        if message.id in self.store or message.id in self._failed:
            raise UsageError(f"object id {message.id!r} is already in use; ids cannot be reused")
        value = Decoder(buffers, None).decode(message.value)
        entry = StoredObject(
            id=message.id,
            value=value,
            owner=self.peer,
            tags=list(message.tags),
            description=message.description,
            nbytes=value_nbytes(value),
        )
        self.store.add_for_peer(self.peer, entry)

    def _run_plan(self, message: RunPlan, out: list[Any]) -> None:
        plan = self._plans.get(message.plan)
        if plan is None:
            raise UsageError(f"no plan {message.plan!r}; define it first")
        if len(message.inputs) != len(plan.inputs) or len(message.outputs) != len(plan.outputs):
            raise UsageError(
                f"plan {plan.id} takes {len(plan.inputs)} inputs and {len(plan.outputs)} outputs"
            )
        self._plan_runs += 1
        names = dict(zip(plan.inputs, message.inputs, strict=True))
        names.update(zip(plan.outputs, message.outputs, strict=True))
        temporaries = []
        for call in plan.calls:
            if call.result not in names:
                names[call.result] = f"{call.result}.{self._plan_runs}"
                temporaries.append(names[call.result])
        for call in plan.calls:
            rebound = Call(
                op=call.op,
                target=None if call.target is None else names.get(call.target, call.target),
                args=_rebind(call.args, names),
                kwargs=_rebind(call.kwargs, names),
                result=names[call.result],
            )
            failure = self._call(rebound, [])
            if failure is not None and failure.result not in temporaries:
                out.append(failure)
        for object_id in temporaries:  # what the step made along the way, nobody points at
            self.store.remove(object_id)
            self._failed.pop(object_id, None)

    # ---- gets and requests
    def _get(self, message: Get, out_buffers: list[memoryview]) -> Reply | None:
        failed = self._failed.get(message.id)
        if failed is not None:
            return Reply(rid=message.rid, status="error", error=failed)
        try:
            entry = self._visible(message.id)
        except UsageError as exc:
            return self._error_reply(message.rid, exc, "get")
        if not self.store.is_private(entry):
            return self._value_reply(message.rid, entry, "ok", out_buffers, message.delete_obj)
        if not message.request:
            return self._error_reply(
                message.rid,
                PermissionDenied(
                    f"object {entry.id} holds the owner's private data; ask for it with "
                    f".get(request_block=True, name=..., reason=...) or .request(name=..., reason=...)"
                ),
                "get",
            )
        request = Request(
            id=new_request_id(),
            name=message.name,
            reason=message.reason,
            object_id=entry.id,
            object_type=entry.type_name,
            tags=self._tags_of(entry),
            peer=self.peer,
            elements=value_elements(entry.value),
        )
        self._waiting[request.id] = (message.rid, message.delete_obj)
        self.requests.submit(request, entry.value)
        if request.status is RequestStatus.PENDING and message.timeout_secs is not None:
            self._call_later(max(0.0, message.timeout_secs), lambda: self.requests.expire(request))
        return None  # the reply is sent when the request is decided

    def _tags_of(self, entry: StoredObject) -> list[str]:
        # the owner's tags of what the value was computed from, or what changed it (a model
        # trained on tagged data); never the scientist's own tags
        return sorted(entry.source_tags | self.store.taint.tags_of(entry.value))

    def on_decided(self, request: Request) -> None:
        """Called by the request queue from whichever thread decided the request."""
        waiting = self._waiting.pop(request.id, None)
        if waiting is None:
            return
        rid, delete_obj = waiting
        buffers: list[memoryview] = []
        if request.status is RequestStatus.ACCEPTED:
            entry = self.store.get(request.object_id)
            if entry is None:
                reply = self._error_reply(
                    rid, UsageError(f"object {request.object_id} was deleted"), "get"
                )
            else:
                reply = self._value_reply(rid, entry, "accepted", buffers, delete_obj)
        else:
            note = "denied by the owner" if request.status is RequestStatus.DENIED else "timed out"
            status: Any = request.status.value
            reply = Reply(rid=rid, status=status, note=f"request {request.name!r} {note}")
        self._send([reply], buffers)

    def _value_reply(
        self,
        rid: int,
        entry: StoredObject,
        status: Any,
        buffers: list[memoryview],
        delete_obj: bool,
    ) -> Reply:
        try:
            value = Encoder(buffers).encode(entry.value)
        except DuetError as exc:
            return self._error_reply(rid, exc, "get")
        if delete_obj and entry.owner == self.peer:
            self.store.remove(entry.id)
        return Reply(rid=rid, status=status, value=value)

    def _error_reply(self, rid: int, exc: Exception, op: str) -> Reply:
        return Reply(rid=rid, status="error", error=self._error_info(exc, op))

    def _error_info(self, exc: BaseException, op: str | None) -> ErrorInfo:
        if isinstance(exc, DuetError) and not isinstance(exc, RemoteError):
            return ErrorInfo(code=exc.code, message=str(exc)[:20_000], op=op)
        if self.redact_errors:
            return ErrorInfo(
                code=RemoteError.code,
                message="the owner redacts error details",
                op=op,
                remote_type=None,
            )
        return ErrorInfo(
            code=RemoteError.code, message=str(exc)[:20_000] or type(exc).__name__, op=op,
            remote_type=type(exc).__name__,
        )  # fmt: skip
