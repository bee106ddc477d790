"""Serving one scientist: run its actions in order, off the network loop, and route them.

Every action is checked here, whatever the scientist's side checked: the op must be on the
allowlist for the real type of its target, ids must be the scientist's own or published objects
it may see, and results must fit the scientist's quota. The executor (executor.py) runs calls
and keeps the labels; gets, the requests they make and grants are releases.py's; DP releases
are private_releases.py's, secure-aggregation rounds secure_rounds.py's; this module runs the
worker, handles puts, deletes and plans, and sends the replies.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import overload

from ..errors import (
    DuetError,
    NotAllowed,
    ProtocolError,
    RemoteError,
    UsageError,
)
from ..protocol.dp_messages import DpBudget, DpStatistic, DpTraining
from ..protocol.frames import FrameTooLarge
from ..protocol.messages import (
    Call,
    DefinePlan,
    Delete,
    ErrorInfo,
    Failure,
    Get,
    ListStore,
    Message,
    Put,
    Reply,
    RunPlan,
    Sync,
)
from ..protocol.secagg_messages import SecAggInput, SecAggKeys, SecAggShare, SecAggUnmask
from ..protocol.serde import Decoder, JSONValue
from ..protocol.smpc_messages import SmpcMessage
from . import derivation
from .audit import AuditLog
from .context import OwnerSettings, set_current
from .executor import Executor
from .grants import GrantState
from .labels import UNKNOWN, Walk, owner_containers
from .policy import PolicyChain
from .privacy_desk import PrivacyDesk
from .private_releases import PrivateReleases
from .quota import scalar_bytes
from .releases import Releases, built_reply
from .requests import RequestQueue
from .secure_rounds import SecureAggregationRules, SecureRounds
from .smpc_desk import SecureComputationRules, SmpcDesk
from .store import OWNER, ObjectStore, StoredObject, describe
from .tuning import settle_imports

log = logging.getLogger(__name__)

MAX_PLANS = 1000
MAX_ERROR_TEXT = 2000  # characters of an error kept and sent (failures are kept per object)
PLAN_CALL_BYTES = 1400  # a recorded call as the owner keeps it (measured), besides its arguments
MAX_BACKLOG = 50_000  # messages received but not yet run (the scientist's window is ~512)


@overload
def _rebind(value: list[JSONValue], names: dict[str, str]) -> list[JSONValue]: ...
@overload
def _rebind(value: dict[str, JSONValue], names: dict[str, str]) -> dict[str, JSONValue]: ...
@overload
def _rebind(value: JSONValue, names: dict[str, str]) -> JSONValue: ...
def _rebind(value: JSONValue, names: dict[str, str]) -> JSONValue:
    """Rename the object references inside encoded values (a plan's symbolic ids): a list
    stays a list, a dict a dict."""
    if isinstance(value, dict):
        ref = value.get("id")
        if value.get("$") == "ref" and isinstance(ref, str):
            return {"$": "ref", "id": names.get(ref, ref)}
        return {key: _rebind(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebind(item, names) for item in value]
    return value


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
        send: Callable[[list[Message], list[memoryview]], None],
        call_later: Callable[[float, Callable[[], None]], None],
        *,
        redact_errors: bool = False,
        settings: OwnerSettings | None = None,
        policy: PolicyChain | None = None,
        audit: AuditLog | None = None,
        peer_name: str = "",
        request_timeout_secs: float | None = None,
        privacy: PrivacyDesk | None = None,
        secure_aggregation: SecureAggregationRules | None = None,
        secure_computation: SecureComputationRules | None = None,
    ):
        """``request_timeout_secs``: the longest a request waits for the owner (None: as long
        as the scientist's ``timeout_secs`` says, and without one until it is decided).
        ``privacy``: the owner's budgets, for DP releases (None: every one is refused).
        ``secure_aggregation``: the owner's rules for secure-aggregation rounds (None: refused).
        ``secure_computation``: its rules for secret-shared computations (None: refused)."""
        self.settings = settings or OwnerSettings()
        self.request_timeout_secs = request_timeout_secs
        self.peer = peer
        self.peer_name = peer_name
        self.audit = audit
        self.store = store
        self.requests = requests
        self._send = send
        self.call_later = call_later
        self.redact_errors = redact_errors
        self.executor = Executor(peer, store, error_info=self._error_info, policy=policy)
        self.policy = self.executor.policy
        self.releases = Releases(self)  # gets, requests and grants
        self.executor.on_write = self.releases.grants.written
        self._queue: queue.SimpleQueue[tuple[list[Message], list[memoryview]] | None] = (
            queue.SimpleQueue()
        )
        self._plans: dict[str, DefinePlan] = {}
        self._plan_runs = 0
        self.max_backlog = MAX_BACKLOG
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        # called (from the worker thread) if the worker stops: the session closes with the reason
        self.on_dead: Callable[[str], None] | None = None
        self.running: tuple[str, float] | None = None  # the call running now, and since when
        self._idle = 0.0  # how long the worker waited for work, its current wait not counted
        self._waiting_since: float | None = None
        self.private_releases = None if privacy is None else PrivateReleases(self, privacy)
        self.secure_rounds = (
            None if secure_aggregation is None else SecureRounds(self, secure_aggregation)
        )
        self.smpc = None if secure_computation is None else SmpcDesk(self, secure_computation)
        self._thread = threading.Thread(target=self._work, name=f"duet-owner-{peer}", daemon=True)
        self._thread.start()

    @property
    def actions_run(self) -> int:
        return self.executor.actions_run

    @property
    def idle_secs(self) -> float:
        """How long the worker has waited for work so far (seconds; what it is waiting now
        included): beside its CPU, what tells a busy owner from one starved of actions."""
        since = self._waiting_since
        now = 0.0 if since is None else time.perf_counter() - since
        return self._idle + max(0.0, now)

    # ---- called from the network loop
    def submit(self, messages: list[Message], buffers: list[memoryview]) -> bool:
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

    def on_worker(self) -> bool:
        """Whether the calling thread is this scientist's worker."""
        return threading.current_thread() is self._thread

    # ---- the worker thread
    def _work(self) -> None:
        set_current(self.settings)
        try:
            while True:
                self._waiting_since = waiting = time.perf_counter()
                item = self._queue.get()
                self._waiting_since = None
                self._idle += time.perf_counter() - waiting
                if item is None:
                    return
                messages, buffers = item
                try:
                    self._run_frame(messages, buffers)
                finally:
                    with self._backlog_lock:
                        self._backlog -= len(messages)
                settle_imports()
        except BaseException as exc:  # never "connected but deaf": say so, and stop serving
            log.exception("the owner's worker for %s stopped", self.peer)
            if self.on_dead is not None:
                self.on_dead(f"the owner's worker stopped ({type(exc).__name__}: {exc})")

    def _run_frame(self, messages: list[Message], buffers: list[memoryview]) -> None:
        out: list[Message] = []
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
                # the owner's own bookkeeping failed part way: it can no longer tell what is
                # private, so from now on everything this scientist sees is (fail closed)
                self.executor.poisoned = self.executor.poisoned | UNKNOWN
                self.releases.grants.end_all(
                    GrantState.STALE, "the owner lost track of what changed"
                )
                out.append(Failure(result=None, error=self._error_info(exc, None)))
            if out_buffers:
                # a value goes out as soon as it is made: a frame of gets never piles up
                # replies in memory (the connection's outbox then bounds what waits)
                self.send_replies(out, out_buffers)
                out, out_buffers = [], []
        if out:
            self.send_replies(out, out_buffers)

    def send_replies(self, messages: list[Message], buffers: list[memoryview]) -> None:
        """Send replies; one too large to frame becomes an error reply for that request."""
        try:
            self._send(messages, buffers)
        except FrameTooLarge as exc:
            info = ErrorInfo(code=exc.code, message=str(exc)[:MAX_ERROR_TEXT], op="get")
            fallback = [
                Reply(rid=m.rid, status="error", error=info)
                if isinstance(m, Reply) and m.value is not None
                else m
                for m in messages
            ]
            try:
                self._send(fallback, [])
            except FrameTooLarge:  # even the replies' headers do not fit: one notice
                self._send([Failure(result=None, error=info)], [])

    def _handle(
        self,
        message: Message,
        buffers: list[memoryview],
        out: list[Message],
        out_buffers: list[memoryview],
    ) -> None:
        if isinstance(message, Call):
            self.running = (message.op, time.monotonic())
            try:
                failure = self.executor.call(message, buffers)
            finally:
                self.running = None
            if failure is not None:
                out.append(failure)
        elif isinstance(message, Put):
            failure = self._put(message, buffers)
            if failure is not None:
                out.append(failure)
        elif isinstance(message, Delete):
            self._delete(message, out)
        elif isinstance(message, Get):
            # what the get records is committed in one go, before its reply leaves (the
            # caller sends it after this returns)
            if message.request and self.audit is not None:
                with self.audit.batch():
                    reply = self.releases.get(message, out_buffers)
            else:
                reply = self.releases.get(message, out_buffers)
            if reply is not None:
                out.append(reply)
        elif isinstance(message, DefinePlan):
            if message.id in self._plans or len(self._plans) >= MAX_PLANS:
                raise UsageError(f"plan id {message.id!r} is in use, or {MAX_PLANS} plans exist")
            if len(message.inputs) != len(set(message.inputs)):
                raise ProtocolError("a plan's inputs must be distinct")
            size = sum(
                PLAN_CALL_BYTES + _json_bytes(c.args) + _json_bytes(c.kwargs) for c in message.calls
            )
            quota = self.store.quota(self.peer)
            quota.check(size, False, "this plan")
            quota.add(size, False)  # held until the scientist leaves
            self._plans[message.id] = message
        elif isinstance(message, RunPlan):
            self._run_plan(message, out)
        elif isinstance(message, Sync):
            out.append(built_reply(message.rid))
        elif isinstance(message, ListStore):
            rows = [
                {"id": e.id, "tags": e.tags, "description": e.description, "size": e.nbytes,
                 **describe(e.value)}
                for e in self.store.published()
                if e.pointable and self.policy.allows_name(self.peer, e)
            ]  # fmt: skip
            out.append(Reply(rid=message.rid, value=rows))
        elif isinstance(message, DpStatistic | DpTraining | DpBudget):  # rare: after the rest
            if self.private_releases is None:
                error = UsageError("this owner serves no differential privacy (no budgets)")
                out.append(self.error_reply(message.rid, error, "privacy"))
            else:  # a DP job runs here, on this worker: say what runs, like a long call
                self.running = (f"differential privacy ({message.k})", time.monotonic())
                try:
                    out.append(self.private_releases.handle(message, out_buffers))
                finally:
                    self.running = None
        elif isinstance(message, SecAggKeys | SecAggShare | SecAggInput | SecAggUnmask):
            if self.secure_rounds is None:
                refused = NotAllowed("this owner takes part in no secure aggregation")
                out.append(self.error_reply(message.rid, refused, "secure aggregation"))
            else:  # the round's cryptography runs here, on this worker, like a call
                self.running = ("secure aggregation", time.monotonic())
                try:
                    out.append(self.secure_rounds.handle(message, out_buffers))
                finally:
                    self.running = None
        elif isinstance(message, SmpcMessage):  # secret-shared computation: smpc_desk.py
            self._smpc(message, out, out_buffers)
        else:
            raise ProtocolError(f"a scientist may not send {type(message).__name__} messages")

    def _smpc(
        self, message: SmpcMessage, out: list[Message], out_buffers: list[memoryview]
    ) -> None:
        if self.smpc is None:
            refused = NotAllowed("this owner takes part in no secure computation")
            out.append(self.error_reply(message.rid, refused, "secure computation"))
            return
        self.running = ("secure computation", time.monotonic())
        try:
            reply = self.smpc.handle(message, out_buffers)
        finally:
            self.running = None
        if reply is not None:  # None: a reveal waits for the owner's decision
            out.append(reply)

    # ---- the scientist's own values
    def _put(self, message: Put, buffers: list[memoryview]) -> Failure | None:
        if self.executor.taken(message.id):
            raise UsageError(f"object id {message.id!r} is already in use; ids cannot be reused")
        quota = self.store.quota(self.peer)
        try:
            # the value's bytes are counted from its header, before it is decoded
            quota.check(_buffer_bytes(message.value, buffers), False, "this send")
            with self.executor.own_rng():  # rebuilding layers draws initial weights
                value = owner_containers(Decoder(buffers, None).decode(message.value))
        except (DuetError, ValueError) as exc:
            return self.executor._fail(message.id, self._error_info(exc, "send"), frozenset(), None)
        except Exception as exc:  # decoding only builds new objects: a refusal changes nothing
            error = ProtocolError(f"the value sent could not be rebuilt ({type(exc).__name__})")
            return self.executor._fail(
                message.id, self._error_info(error, "send"), frozenset(), None
            )
        quota.hold_all(Walk().add(value).nodes.values(), False)
        self.executor.register_leaves(value)
        entry = StoredObject(
            id=self.executor.key(message.id),
            value=value,
            owner=self.peer,
            tags=list(message.tags),
            description=message.description,
            nbytes=scalar_bytes(value),
            # a model's architecture as sent: its settings are the scientist's own (a handler
            # may ask a trained model to have exactly these: add_handler(architecture=AS_SENT))
            sent_architecture=derivation.architecture(value),
        )
        try:
            self.store.add_for_peer(self.peer, entry)
        except DuetError as exc:
            return self.executor._fail(message.id, self._error_info(exc, "send"), frozenset(), None)
        return None

    def _delete(self, message: Delete, out: list[Message]) -> None:
        for object_id in message.ids:
            entry = self.store.get(self.executor.key(object_id))
            if entry is not None:
                self.store.remove(entry.id)
                continue
            self.executor.forget(object_id)
            entry = self.store.get(object_id)
            if entry is not None and entry.owner == OWNER and entry.pointable:
                out.append(
                    Failure(
                        result=None,
                        error=ErrorInfo(
                            code=NotAllowed.code,
                            op="delete",
                            message=f"object {object_id} is the owner's; it is not yours to delete",
                        ),
                    )
                )
            # anything else reads as missing: deleting it does nothing

    def _run_plan(self, message: RunPlan, out: list[Message]) -> None:
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
            failure = self.executor.call(rebound, [])
            if failure is not None and failure.result not in temporaries:
                out.append(failure)
        for object_id in temporaries:  # what the step made along the way, nobody points at
            self.store.remove(self.executor.key(object_id))

    # ---- errors
    def error_reply(self, rid: int, exc: Exception, op: str) -> Reply:
        return Reply(rid=rid, status="error", error=self._error_info(exc, op))

    def _error_info(self, exc: BaseException, op: str | None) -> ErrorInfo:
        if isinstance(exc, DuetError) and not isinstance(exc, RemoteError):
            return ErrorInfo(code=exc.code, message=str(exc)[:MAX_ERROR_TEXT], op=op)
        if self.redact_errors:
            return ErrorInfo(
                code=RemoteError.code,
                message="the owner redacts error details",
                op=op,
                remote_type=None,
            )
        return ErrorInfo(
            code=RemoteError.code, message=str(exc)[:MAX_ERROR_TEXT] or type(exc).__name__, op=op,
            remote_type=type(exc).__name__,
        )  # fmt: skip


def _json_bytes(value: object) -> int:
    """About what a decoded JSON value takes in memory (Python objects, not text)."""
    total = 0
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            total += 232
            stack.extend(item.values())
        elif isinstance(item, list):
            total += 64 + 8 * len(item)
            stack.extend(item)
        else:
            total += 48
    return total


def _buffer_bytes(value: object, buffers: list[memoryview], depth: int = 0) -> int:
    """The bytes of the frame's buffers an encoded value refers to (each counted once)."""
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if level > 64:
            break
        if isinstance(item, dict):
            index = item.get("buf")
            if type(index) is int and 0 <= index < len(buffers):
                seen.add(index)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return sum(buffers[i].nbytes for i in seen)


__all__ = ["PeerService"]
