"""Serving one scientist: run its actions in order, off the network loop, and answer its gets.

Every action is checked here, whatever the scientist's side checked: the op must be on the
allowlist for the real type of its target, ids must be the scientist's own or published objects
it may see, and results must fit the scientist's quota. The executor (executor.py) runs calls
and keeps the labels; this module handles the other messages and the release of values:

- a value that depends only on the scientist's own inputs is sent at once;
- anything else is released only through a request, decided on a snapshot taken when the
  request arrives (snapshot.py); without a request the answer is PermissionDenied, the same for
  a value and for a failure, so the answer does not tell which it is.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Literal, overload

from torch import nn

from ..errors import (
    DuetError,
    NotAllowed,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    RemoteError,
    UsageError,
)
from ..protocol.frames import FrameTooLarge
from ..protocol.messages import (
    Call,
    DefinePlan,
    Delete,
    DpBudget,
    DpStatistic,
    DpTraining,
    ErrorInfo,
    Failure,
    Get,
    ListStore,
    Message,
    Notice,
    Put,
    Reply,
    RunPlan,
    SecAggInput,
    SecAggKeys,
    SecAggShare,
    SecAggUnmask,
    Sync,
)
from ..protocol.serde import Decoder, JSONValue
from . import derivation
from .audit import AuditLog
from .context import OwnerSettings, set_current
from .executor import Executor
from .grants import Grant, GrantBook, GrantState
from .labels import UNKNOWN, Label, Walk, owner_containers
from .policy import PolicyChain
from .privacy_desk import PrivacyDesk
from .private_releases import PrivateReleases
from .quota import scalar_bytes
from .requests import Request, RequestQueue, RequestStatus, new_request_id
from .secure_rounds import SecureAggregationRules, SecureRounds
from .snapshot import Snapshot
from .store import OWNER, ObjectStore, StoredObject, describe

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
    ):
        """``request_timeout_secs``: the longest a request waits for the owner (None: as long
        as the scientist's ``timeout_secs`` says, and without one until it is decided).
        ``privacy``: the owner's budgets, for DP releases (None: every one is refused).
        ``secure_aggregation``: the owner's rules for secure-aggregation rounds (None: refused)."""
        self.settings = settings or OwnerSettings()
        self.request_timeout_secs = request_timeout_secs
        self.peer = peer
        self.peer_name = peer_name
        self.audit = audit
        self.store = store
        self.requests = requests
        self._send = send
        self._call_later = call_later
        self.redact_errors = redact_errors
        self.executor = Executor(peer, store, error_info=self._error_info, policy=policy)
        self.policy = self.executor.policy
        # what accepted requests let this scientist get again (only this one: grants.py)
        self.grants = GrantBook()
        self.executor.on_write = self.grants.written
        self._queue: queue.SimpleQueue[tuple[list[Message], list[memoryview]] | None] = (
            queue.SimpleQueue()
        )
        self._waiting: dict[str, tuple[int, bool]] = {}  # request id -> (reply id, delete_obj)
        # request id -> (the state under review, the entry reviewed: kept alive until decided)
        self._frozen: dict[str, tuple[list[object], StoredObject | None]] = {}
        # set while a get's request is submitted on this worker: a handler's decision made
        # there is returned as the get's reply rather than sent on its own
        self._inline: list[tuple[Reply, list[memoryview]]] | None = None
        self._plans: dict[str, DefinePlan] = {}
        self._plan_runs = 0
        self.max_backlog = MAX_BACKLOG
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        # called (from the worker thread) if the worker stops: the session closes with the reason
        self.on_dead: Callable[[str], None] | None = None
        self.running: tuple[str, float] | None = None  # the call running now, and since when
        self.private_releases = None if privacy is None else PrivateReleases(self, privacy)
        self.secure_rounds = (
            None if secure_aggregation is None else SecureRounds(self, secure_aggregation)
        )
        self._thread = threading.Thread(target=self._work, name=f"duet-owner-{peer}", daemon=True)
        self._thread.start()

    @property
    def actions_run(self) -> int:
        return self.executor.actions_run

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

    # ---- the worker thread
    def _work(self) -> None:
        set_current(self.settings)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                messages, buffers = item
                try:
                    self._run_frame(messages, buffers)
                finally:
                    with self._backlog_lock:
                        self._backlog -= len(messages)
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
                self.grants.end_all(GrantState.STALE, "the owner lost track of what changed")
                out.append(Failure(result=None, error=self._error_info(exc, None)))
            if out_buffers:
                # a value goes out as soon as it is made: a frame of gets never piles up
                # replies in memory (the connection's outbox then bounds what waits)
                self._reply(out, out_buffers)
                out, out_buffers = [], []
        if out:
            self._reply(out, out_buffers)

    def _reply(self, messages: list[Message], buffers: list[memoryview]) -> None:
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
                    reply = self._get(message, out_buffers)
            else:
                reply = self._get(message, out_buffers)
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
            out.append(_reply(message.rid))
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
                out.append(self._error_reply(message.rid, error, "privacy"))
            else:  # a DP job runs here, on this worker: say what runs, like a long call
                self.running = (f"differential privacy ({message.k})", time.monotonic())
                try:
                    out.append(self.private_releases.handle(message, out_buffers))
                finally:
                    self.running = None
        elif isinstance(message, SecAggKeys | SecAggShare | SecAggInput | SecAggUnmask):
            if self.secure_rounds is None:
                refused = NotAllowed("this owner takes part in no secure aggregation")
                out.append(self._error_reply(message.rid, refused, "secure aggregation"))
            else:  # the round's cryptography runs here, on this worker, like a call
                self.running = ("secure aggregation", time.monotonic())
                try:
                    out.append(self.secure_rounds.handle(message, out_buffers))
                finally:
                    self.running = None
        else:
            raise ProtocolError(f"a scientist may not send {type(message).__name__} messages")

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

    # ---- gets and requests
    def _get(self, message: Get, out_buffers: list[memoryview]) -> Reply | Notice | None:
        try:
            entry = self.executor.visible(message.id)
        except UsageError as exc:
            return self._error_reply(message.rid, exc, "get")
        label = self.executor.label_of(entry)
        if not label:  # the scientist's own: at once
            if entry.failure is not None:
                return _reply(message.rid, "error", error=entry.failure)
            snapshot = Snapshot.of(entry.value, buffers=out_buffers)
            return self._value_reply(message.rid, entry, snapshot, "ok", message.delete_obj)
        if self.grants.find(entry.id) is not None:
            reply = self._granted(message, entry, label, out_buffers)
            if reply is not None:
                return reply
        if not message.request:
            return self._error_reply(
                message.rid,
                PermissionDenied(
                    f"object {entry.id} depends on the owner's private data; ask for it with "
                    f".get(request_block=True, name=..., reason=...) or .request(name=..., reason=...)"
                ),
                "get",
            )
        try:  # may this scientist ask for releases at all (before anything reaches the queue)
            self.policy.check_release(self.peer, entry)
        except DuetError as exc:
            if self.audit is not None:
                self.audit.record("refused", scientist=self.peer, name=self.peer_name,
                                  object_id=entry.id, reason=str(exc), request_name=message.name)  # fmt: skip
            return self._error_reply(message.rid, exc, "get")
        request = self._request(message, entry, label)
        self.record_request(request)
        quota = self.store.quota(self.peer)
        held = request.snapshot.nbytes
        # whether it would wait for a person matters only near a limit (matching costs)
        near = quota.pending >= quota.max_pending or quota.private_bytes + held > quota.max_bytes
        waits = near and self.requests.handler_for(request) is None
        if waits and quota.pending >= quota.max_pending:
            # it would wait for a person, and this scientist has enough waiting already
            return self._error_reply(
                message.rid,
                QuotaExceeded(
                    f"you have {quota.pending} requests waiting for the owner (the limit is "
                    f"{quota.max_pending}); wait for their decisions"
                ),
                "get",
            )
        if waits and quota.private_bytes + held > quota.max_bytes:
            # what waits for a person is held for it, counted with the values that depend on
            # the owner's data; one that would pass that account is refused like a denial
            return Reply(
                rid=message.rid,
                status="denied",
                note=(
                    f"request {request.name!r}: the value under review ({held:,} bytes) would "
                    f"pass what the owner holds for you ({quota.max_bytes:,} bytes) while it "
                    "waits; delete pointers you no longer need"
                ),
            )
        self._waiting[request.id] = (message.rid, message.delete_obj)
        # what the owner decides on cannot change until it is decided: the scientist's writes
        # to it are refused meanwhile (the snapshot views its memory, no copy is made)
        frozen = [] if entry.failure is not None else Walk().add(entry.value).nodes.values()
        self._frozen[request.id] = (list(frozen), entry)
        self.store.labels.freeze(self._frozen[request.id][0])
        self._inline = []
        try:
            self.submit_request(request, message.timeout_secs)
        finally:
            inline, self._inline = self._inline, None
        if inline:  # decided by a handler as it arrived: the reply goes out with the frame
            reply, buffers = inline[0]
            out_buffers.extend(buffers)
            return reply
        if request.status is RequestStatus.PENDING and request.note:
            # a handler would have decided it: say why it waits instead
            return Notice(rid=message.rid, text=f"{request.note}; it waits for the owner")
        return None  # the reply is sent when the request is decided

    def record_request(self, request: Request) -> None:
        """The audit log's ``request`` event for a request about to reach the queue."""
        if self.audit is not None:
            self.audit.record(
                "request", scientist=self.peer, name=self.peer_name, request=request.id,
                object_id=request.object_id, request_name=request.name, reason=request.reason,
                tags=request.tags, op=request.op, value_kind=request.kind, elements=request.elements,
            )  # fmt: skip

    def submit_request(self, request: Request, timeout_secs: float | None) -> None:
        """Let ``request`` (recorded in the audit log) reach the owner's queue: its value held
        against this scientist's quota until it is decided (``release_hold`` gives it back),
        waiting at most ``timeout_secs`` (the scientist's) and the owner's limit."""
        quota = self.store.quota(self.peer)
        quota.pending += 1
        quota.add(request.snapshot.nbytes, True)
        timeout = timeout_secs
        if self.request_timeout_secs is not None and (
            timeout is None or timeout > self.request_timeout_secs
        ):
            timeout = self.request_timeout_secs  # the owner's limit on how long one waits
        if timeout is not None:  # when it times out, for the owner's page and notices
            timeout = max(0.0, timeout)
            request.timeout_secs = timeout
            request.deadline = time.monotonic() + timeout
        self.requests.submit(request)
        if timeout is not None and request.status is RequestStatus.PENDING:
            self._call_later(timeout, lambda: self.requests.expire(request))

    def release_hold(self, request: Request) -> None:
        """A request was decided: what ``submit_request`` held for it is given back."""
        quota = self.store.quotas.get(self.peer)
        if quota is not None:
            quota.pending -= 1
            quota.add(-request.snapshot.nbytes, True)

    def _request(self, message: Get, entry: StoredObject, label: Label) -> Request:
        """A request for ``entry``: its snapshot, and what automatic decisions rely on."""
        whole = derivation.whole_now(entry)
        settings_private, architecture, sent = False, None, None
        if entry.failure is not None:
            snapshot = Snapshot.failed(entry.failure)
        else:
            if isinstance(entry.value, nn.Module):
                settings = derivation.settings_label(
                    entry, self.store.labels, self.executor.poisoned
                )
                settings_private = bool(settings)
                architecture = derivation.architecture(entry.value)
                sent = entry.sent_architecture
            snapshot = Snapshot.of(entry.value, settings=settings_private)
        return Request(
            reply=self.on_decided,  # the decision comes back here, whoever makes it
            id=new_request_id(),
            name=message.name,
            reason=message.reason,
            object_id=entry.id,
            peer=self.peer,
            label=label,
            op=entry.op,
            snapshot=snapshot,
            scientist_name=self.peer_name,
            whole=None if whole is None else whole.op,
            architecture=architecture,
            sent_architecture=sent,
            settings_private=settings_private,
        )

    def on_decided(self, request: Request) -> None:
        """Called by the request queue from whichever thread decided the request."""
        waiting = self._waiting.pop(request.id, None)
        if waiting is None:
            return
        self.release_hold(request)
        rid, delete_obj = waiting
        buffers: list[memoryview] = []
        entry = self.store.get(request.object_id)
        frozen, reviewed = self._frozen.get(request.id, ([], None))
        if (
            request.status is RequestStatus.ACCEPTED
            and request.by_hand
            and entry is not None
            and entry is reviewed
        ):
            # what the owner accepted by hand leaves a grant (a handler decides every request
            # afresh: its quota counts, and removing it stops it), made before the value is
            # unfrozen, so no write comes between review and grant, and only for the object
            # reviewed, not one made since under the same id
            self._grant(request, entry)
        self._frozen.pop(request.id, None)
        self.store.labels.freeze(frozen, -1)
        if request.status is RequestStatus.ACCEPTED:
            reply = self._value_reply(rid, entry, request.snapshot, "accepted", delete_obj)
            buffers = request.snapshot.buffers
            if self.audit is not None:
                self.audit.record(
                    "release", scientist=self.peer, name=self.peer_name, request=request.id,
                    object_id=request.object_id, digest=request.snapshot.digest(),
                    nbytes=request.snapshot.nbytes, value_kind=request.kind,
                )  # fmt: skip
        else:
            note = "denied by the owner" if request.status is RequestStatus.DENIED else "timed out"
            if request.denial:
                note += f": {request.denial}"
            # validated as Reply(...) would be: the status is one of the reply's literals
            reply = Reply.model_validate(
                {
                    "rid": rid,
                    "status": request.status.value,
                    "note": f"request {request.name!r} {note}",
                }
            )
        if self._inline is not None and threading.current_thread() is self._thread:
            self._inline.append((reply, buffers))  # _get returns it
            return
        self._reply([reply], buffers)

    # ---- grants
    def _grant(self, request: Request, entry: StoredObject) -> None:
        """Leave a grant for an accepted request, naming exactly what was reviewed. None is
        left (fail closed) when that cannot be told or no longer holds."""
        if entry.failure is not None:
            current = Snapshot.failed(entry.failure)
            walk = Walk()
        else:
            walk = Walk().add(entry.value)
            current = Snapshot.of(entry.value)
        if walk.unknown or (current.error is not None and entry.failure is None):
            return
        digest = request.snapshot.digest()
        grant = Grant(
            request_id=request.id, peer=self.peer, entry=entry, walk=walk, label=request.label,
            digest=digest,
        )  # fmt: skip
        why = grant.check(entry, walk, self.executor.label_of(entry), current.digest())
        request.grant = grant
        if why is not None:  # changed while it was reviewed (the owner's own write, say)
            grant.end(GrantState.STALE, why)
            return
        self.grants.add(grant)
        if self.audit is not None:
            self.audit.record(
                "grant", scientist=self.peer, name=self.peer_name, request=request.id,
                object_id=entry.id, digest=digest, state=grant.state.value,
            )  # fmt: skip

    def _granted(
        self, message: Get, entry: StoredObject, label: Label, out_buffers: list[memoryview]
    ) -> Reply | None:
        """The reply releasing ``entry`` through this scientist's grant on it, or None (and
        the grant ends) when the object is not exactly what the owner reviewed."""
        grant = self.grants.find(entry.id)
        if grant is None:
            return None
        try:  # the owner may have changed its rules for this scientist since
            self.policy.check_release(self.peer, entry)
        except DuetError:
            return None
        if entry.failure is not None:
            walk, snapshot = Walk(), Snapshot.failed(entry.failure)
        else:
            walk, snapshot = Walk().add(entry.value), Snapshot.of(entry.value)
        why = grant.check(entry, walk, label, snapshot.digest())
        if why is not None:
            self.grants.end(grant, GrantState.STALE, why)
            return None
        grant.uses += 1
        if snapshot.buffers:  # into the frame's buffers (empty: replies with values go alone)
            if out_buffers:
                snapshot = Snapshot.of(entry.value, buffers=out_buffers)
            else:
                out_buffers.extend(snapshot.buffers)
        if self.audit is not None:
            self.audit.record(
                "release", scientist=self.peer, name=self.peer_name, request=grant.request_id,
                object_id=entry.id, digest=grant.digest, nbytes=snapshot.nbytes,
                value_kind=snapshot.kind, decided_by=f"grant of request {grant.request_id}",
            )  # fmt: skip
        reply = self._value_reply(message.rid, entry, snapshot, "accepted", message.delete_obj)
        return reply.model_copy(
            update={"note": f"released under the grant of request {grant.request_id}"}
        )

    def _value_reply(
        self,
        rid: int,
        entry: StoredObject | None,
        snapshot: Snapshot,
        status: Literal["ok", "accepted"],
        delete_obj: bool,
    ) -> Reply:
        """The reply releasing ``snapshot`` (its buffers are already where the frame's are)."""
        if delete_obj and entry is not None and entry.owner == self.peer:
            self.store.remove(entry.id)
        if snapshot.error is not None:
            return _reply(rid, "error", error=snapshot.error)
        return _reply(rid, status, value=snapshot.value)

    def _error_reply(self, rid: int, exc: Exception, op: str) -> Reply:
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


def _reply(
    rid: int, status: str = "ok", *, value: JSONValue = None, error: ErrorInfo | None = None
) -> Reply:
    """A reply the owner builds from values it made itself (a request id the scientist's
    message already passed validation with, a status of the literal set, an encoded value or
    a validated error): not validated again (a few microseconds on every get and sync)."""
    return Reply.model_construct(rid=rid, status=status, value=value, error=error)


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
