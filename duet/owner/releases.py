"""One scientist's gets, and the requests they make: what leaves at once, what waits for the
owner, and what an accepted request leaves behind (a grant).

- a value that depends only on the scientist's own inputs is sent at once;
- anything else is released only through a request, decided on a snapshot taken when the
  request arrives (snapshot.py); without a request the answer is PermissionDenied, the same for
  a value and for a failure, so the answer does not tell which it is;
- what the owner reviews cannot change until it is decided (its state is frozen meanwhile), and
  what the owner accepted by hand may be got again while it is exactly what was reviewed
  (grants.py);
- ``record_request`` / ``submit_request`` / ``release_hold``: how any request reaches the
  owner's queue (the audit event, what it holds of the scientist's quota, its timeouts), used
  by gets here and by DP releases the owner reviews (private_releases.py).

Run on the scientist's worker thread (service.py), but ``on_decided`` runs on whichever thread
decided the request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from torch import nn

from ..errors import DuetError, PermissionDenied, QuotaExceeded, UsageError
from ..protocol.messages import ErrorInfo, Get, Notice, Reply
from ..protocol.serde import JSONValue
from . import derivation
from .grants import Grant, GrantBook, GrantState
from .labels import Label, Walk
from .requests import Request, RequestStatus, new_request_id
from .snapshot import Snapshot
from .store import StoredObject

if TYPE_CHECKING:
    from .service import PeerService


class Releases:
    """What leaves for one scientist (``service``: its PeerService) and how."""

    def __init__(self, service: PeerService):
        self.service = service
        # what accepted requests let this scientist get again (only this one: grants.py)
        self.grants = GrantBook()
        self._waiting: dict[str, tuple[int, bool]] = {}  # request id -> (reply id, delete_obj)
        # request id -> (the state under review, the entry reviewed: kept alive until decided)
        self._frozen: dict[str, tuple[list[object], StoredObject | None]] = {}
        # set while a get's request is submitted on this worker: a handler's decision made
        # there is returned as the get's reply rather than sent on its own
        self._inline: list[tuple[Reply, list[memoryview]]] | None = None

    # ---- gets
    def get(self, message: Get, out_buffers: list[memoryview]) -> Reply | Notice | None:
        try:
            entry = self.service.executor.visible(message.id)
        except UsageError as exc:
            return self.service.error_reply(message.rid, exc, "get")
        # one walk of what the value reaches, for its label and (for a request) for what is
        # frozen while it is decided: nothing runs in between that could change it
        walk = None if entry.failure is not None else Walk().add(entry.value)
        label = self.service.executor.label_of(entry, walk)
        if not label:  # the scientist's own: at once
            if entry.failure is not None:
                return built_reply(message.rid, "error", error=entry.failure)
            snapshot = Snapshot.of(entry.value, buffers=out_buffers)
            return self.value_reply(message.rid, entry, snapshot, "ok", message.delete_obj)
        if self.grants.find(entry.id) is not None:
            reply = self._granted(message, entry, label, out_buffers)
            if reply is not None:
                return reply
        if not message.request:
            return self.service.error_reply(
                message.rid,
                PermissionDenied(
                    f"object {entry.id} depends on the owner's private data; ask for it with "
                    f".get(request_block=True, name=..., reason=...) or .request(name=..., reason=...)"
                ),
                "get",
            )
        try:  # may this scientist ask for releases at all (before anything reaches the queue)
            self.service.policy.check_release(self.service.peer, entry)
        except DuetError as exc:
            if self.service.audit is not None:
                self.service.audit.record("refused", scientist=self.service.peer, name=self.service.peer_name,
                                  object_id=entry.id, reason=str(exc), request_name=message.name)  # fmt: skip
            return self.service.error_reply(message.rid, exc, "get")
        request = self._request(message, entry, label)
        self.record_request(request)
        quota = self.service.store.quota(self.service.peer)
        held = request.snapshot.nbytes
        # whether it would wait for a person matters only near a limit (matching costs)
        near = quota.pending >= quota.max_pending or quota.private_bytes + held > quota.max_bytes
        waits = near and self.service.requests.handler_for(request) is None
        if waits and quota.pending >= quota.max_pending:
            # it would wait for a person, and this scientist has enough waiting already
            return self.service.error_reply(
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
        frozen = [] if walk is None else walk.nodes.values()
        self._frozen[request.id] = (list(frozen), entry)
        self.service.store.labels.freeze(self._frozen[request.id][0])
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
        if self.service.audit is not None:
            self.service.audit.record(
                "request", scientist=self.service.peer, name=self.service.peer_name, request=request.id,
                object_id=request.object_id, request_name=request.name, reason=request.reason,
                tags=request.tags, op=request.op, value_kind=request.kind, elements=request.elements,
            )  # fmt: skip

    def submit_request(self, request: Request, timeout_secs: float | None) -> None:
        """Let ``request`` (recorded in the audit log) reach the owner's queue: its value held
        against this scientist's quota until it is decided (``release_hold`` gives it back),
        waiting at most ``timeout_secs`` (the scientist's) and the owner's limit."""
        quota = self.service.store.quota(self.service.peer)
        quota.pending += 1
        quota.add(request.snapshot.nbytes, True)
        timeout = timeout_secs
        if self.service.request_timeout_secs is not None and (
            timeout is None or timeout > self.service.request_timeout_secs
        ):
            timeout = self.service.request_timeout_secs  # the owner's limit on how long one waits
        if timeout is not None:  # when it times out, for the owner's page and notices
            timeout = max(0.0, timeout)
            request.timeout_secs = timeout
            request.deadline = time.monotonic() + timeout
        self.service.requests.submit(request)
        if timeout is not None and request.status is RequestStatus.PENDING:
            self.service.call_later(timeout, lambda: self.service.requests.expire(request))

    def release_hold(self, request: Request) -> None:
        """A request was decided: what ``submit_request`` held for it is given back."""
        quota = self.service.store.quotas.get(self.service.peer)
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
                    entry, self.service.store.labels, self.service.executor.poisoned
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
            peer=self.service.peer,
            label=label,
            op=entry.op,
            snapshot=snapshot,
            scientist_name=self.service.peer_name,
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
        entry = self.service.store.get(request.object_id)
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
        self.service.store.labels.freeze(frozen, -1)
        if request.status is RequestStatus.ACCEPTED:
            reply = self.value_reply(rid, entry, request.snapshot, "accepted", delete_obj)
            buffers = request.snapshot.buffers
            if self.service.audit is not None:
                self.service.audit.record(
                    "release", scientist=self.service.peer, name=self.service.peer_name, request=request.id,
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
        if self._inline is not None and self.service.on_worker():
            self._inline.append((reply, buffers))  # _get returns it
            return
        self.service.send_replies([reply], buffers)

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
            request_id=request.id, peer=self.service.peer, entry=entry, walk=walk, label=request.label,
            digest=digest,
        )  # fmt: skip
        why = grant.check(entry, walk, self.service.executor.label_of(entry), current.digest())
        request.grant = grant
        if why is not None:  # changed while it was reviewed (the owner's own write, say)
            grant.end(GrantState.STALE, why)
            return
        self.grants.add(grant)
        if self.service.audit is not None:
            self.service.audit.record(
                "grant", scientist=self.service.peer, name=self.service.peer_name, request=request.id,
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
            self.service.policy.check_release(self.service.peer, entry)
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
        if self.service.audit is not None:
            self.service.audit.record(
                "release", scientist=self.service.peer, name=self.service.peer_name, request=grant.request_id,
                object_id=entry.id, digest=grant.digest, nbytes=snapshot.nbytes,
                value_kind=snapshot.kind, decided_by=f"grant of request {grant.request_id}",
            )  # fmt: skip
        reply = self.value_reply(message.rid, entry, snapshot, "accepted", message.delete_obj)
        return reply.model_copy(
            update={"note": f"released under the grant of request {grant.request_id}"}
        )

    def value_reply(
        self,
        rid: int,
        entry: StoredObject | None,
        snapshot: Snapshot,
        status: Literal["ok", "accepted"],
        delete_obj: bool,
    ) -> Reply:
        """The reply releasing ``snapshot`` (its buffers are already where the frame's are)."""
        if delete_obj and entry is not None and entry.owner == self.service.peer:
            self.service.store.remove(entry.id)
        if snapshot.error is not None:
            return built_reply(rid, "error", error=snapshot.error)
        return built_reply(rid, status, value=snapshot.value)


def built_reply(
    rid: int, status: str = "ok", *, value: JSONValue = None, error: ErrorInfo | None = None
) -> Reply:
    """A reply the owner builds from values it made itself (a request id the scientist's
    message already passed validation with, a status of the literal set, an encoded value or
    a validated error): not validated again (a few microseconds on every get and sync)."""
    return Reply.model_construct(rid=rid, status=status, value=value, error=error)


__all__ = ["Releases", "built_reply"]
