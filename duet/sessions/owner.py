"""The owner's session, as a node: one store, many identified scientists, each under its own
rules. The owner's role lives here: whom it admits, how it serves each scientist, what it
answers for what it could not take (owner/ holds what it serves with: the store, requests,
the executor, policies).

An ``OwnerSession`` holds what is the owner's (the store of published data, the request queue,
its handlers, the access rules, the audit log and the scientists it knows) and serves each
connected scientist through a ``ScientistLink``: the scientist's connection, its identity as
proved in the handshake, and the worker that runs its actions (owner/service.py). Everything
per scientist (its objects, requests, quotas, flow-control window, random generator) is keyed
by its identity's ID; a scientist can neither see nor touch another's objects, and one that
leaves frees only its own.

Admitting a scientist (``admit``), after the handshake proved who it is:
1. the access rules may refuse it at the door (``duet.access.deny(id)``);
2. a scientist a rule names (``duet.access.allow(id)``), or one this owner's identity confirmed
   before (remembered in the audit database, per owner identity), is let in without a prompt;
   a loopback scientist that proved it read the owner's private file, or any scientist when
   ``confirm=False``, is let in too, but not remembered: only a real confirmation makes a
   scientist known. Any other one is confirmed as the owner chooses (its ID typed, a function,
   a given ID) or refused (``unknown="refuse"``);
3. it is welcomed (``Welcome``), and its actions start.

Steps 1 and 2 are decided on the loop, never waiting for anyone: a confirmation (a person
typing, the owner's function) runs on a thread of its own, at most ``max_confirmations`` at
once, and a stranger not confirmed within its join's time is refused. So strangers waiting,
however many and however long, never delay a scientist the owner knows or has a rule for.

Names: a scientist's handshake carries a name it chose, which proves nothing. Wherever the
owner sees a scientist (``scientists.pandas``, requests, the audit log, the console), it sees
``scientist_name(id)``: the name the owner gave it (``access.allow(id, name=...)``, a config's
``[[access]] name``), or else the claimed one, quoted and marked: ``"Mallory" (claimed)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..connection import Connection, PeerIdentity, State, frame_limit_for
from ..display import shown
from ..errors import ConnectionLost, HandshakeError, UsageError
from ..identity import Identity, duet_home
from ..notices import RequestNotices, Say
from ..owner.access import AccessRules
from ..owner.audit import AuditLog
from ..owner.context import OwnerSettings
from ..owner.policy import AccessPolicy, PolicyChain, QuotaPolicy
from ..owner.privacy_desk import PrivacyDesk
from ..owner.requests import RequestQueue
from ..owner.secure_rounds import SecureAggregationRules
from ..owner.service import PeerService
from ..owner.smpc_desk import SecureComputationRule, SecureComputationRules
from ..owner.store import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_OBJECTS,
    DEFAULT_MAX_PENDING,
    ObjectStore,
    OwnerStoreView,
    StoredObject,
)
from ..owner.tuning import give_back_memory, tune_owner_process
from ..protocol.dp_messages import DpBudget, DpStatistic, DpTraining
from ..protocol.messages import (
    Call,
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
from ..protocol.secagg_messages import SecAggMessage
from ..protocol.smpc_messages import SmpcMessage
from ..runtime import run
from ..transport.channel import Channel
from .admission import (
    MAX_CONFIRMATIONS,
    Ask,
    Confirm,
    Confirmations,
    Verdict,
    confirm_id,
    mismatch,
)
from .base import LIVE, Session
from .scientists import ScientistsView, claimed

if TYPE_CHECKING:
    from ..registry.node import NodeListing
    from ..review import ReviewServer

log = logging.getLogger(__name__)
WATCH_SECS = 5.0
BUSY_NOTICE_SECS = 30.0


def answer_refused(held: list[Message], info: ErrorInfo) -> list[Message]:
    """What the owner answers for messages it could not take (a frame over its limit, or
    malformed): each message the frame's head shows gets the error (a Put or a call's result id
    a Failure, a get or sync an error Reply), else one Failure stands for them all. The
    scientist's connection's ``refusals`` (connection.py)."""
    answers: list[Message] = []
    for message in held:
        if isinstance(message, Put):
            answers.append(Failure(result=message.id, error=info.model_copy(update={"op": "send"})))  # fmt: skip
        elif isinstance(message, Call):
            answers.append(Failure(result=message.result, error=info.model_copy(update={"op": message.op})))  # fmt: skip
        elif isinstance(message, RunPlan):
            answers.extend(Failure(result=out, error=info) for out in message.outputs)
        elif isinstance(
            message, Get | Sync | ListStore | DpStatistic | DpTraining | DpBudget | SecAggMessage
        ):
            answers.append(Reply(rid=message.rid, status="error", error=info))
        elif isinstance(message, SmpcMessage):
            answers.append(Reply(rid=message.rid, status="error", error=info))
    return answers or [Failure(result=None, error=info)]


class ScientistLink:
    """One scientist at the owner's node. Made before the handshake (its connection needs
    somewhere to deliver frames); it runs actions only once the owner has admitted it."""

    def __init__(
        self,
        node: OwnerSession,
        channel: Channel,
        fingerprints: tuple[str, str],
        *,
        client_id: str = "",
    ):
        self.node = node
        max_bytes = node.objects.default_quota[0]
        self.connection = Connection(
            channel,
            "owner",
            on_messages=self.on_messages,
            on_lost=self.on_lost,
            refusals=answer_refused,
            identity=node.identity,
            fingerprints=fingerprints,
            max_bytes=max_bytes,  # announced: the scientist refuses locally what cannot fit
            client_id=client_id,
            **node.connection_options,
        )
        reason = f"the owner lets a scientist store {max_bytes} bytes"
        self.connection.set_max_frame_bytes(frame_limit_for(max_bytes), reason=reason)
        self.service: PeerService | None = None
        self.since = time.time()
        self.confirmed = False  # let in on the owner's word: its identity knows it from now on
        self.shown_name = ""  # the owner's name for it, or its claimed one (set when admitted)

    @property
    def peer(self) -> PeerIdentity:
        peer = self.connection.peer_identity
        if peer is None:
            raise UsageError("this scientist has not proved who it is yet")
        return peer

    @property
    def id(self) -> str:
        return self.peer.id

    # ---- frames from the scientist (on the loop)
    def on_messages(self, messages: list[Message], buffers: list[memoryview]) -> None:
        service = self.service
        if service is None:  # not admitted (yet): nothing of it runs
            info = ErrorInfo(
                code="not_allowed", message="the owner has not accepted you (yet)", op="frame"
            )
            self.connection.send_if_open([Failure(result=None, error=info)])
            return
        if not service.submit(messages, buffers):
            reason = (
                f"the scientist sent more than {service.max_backlog} actions the owner had not "
                "run yet (flooding); the owner closed the session"
            )
            log.warning(reason)
            self._closing = asyncio.ensure_future(self.connection.close(reason))

    def on_lost(self, exc: ConnectionLost) -> None:
        self.node._forget(self, str(exc))

    def __repr__(self) -> str:
        who = self.connection.peer_identity
        return f"<scientist {who.id if who else '(handshake)'} at the owner>"


class OwnerSession(Session):
    """The data owner's side: ``store``, ``requests``, ``access``, ``scientists``, ``audit``,
    ``x.send(duet, ...)`` to publish, and ``review()``: the owner's review page."""

    role = "owner"

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_pending_requests: int = DEFAULT_MAX_PENDING,
        redact_errors: bool = False,
        data_root: str | Path | None = None,
        identity: Identity | None = None,
        audit: AuditLog | str | Path | None = None,
        max_scientists: int = 1,
        unknown: str = "confirm",
        request_timeout_secs: float | None = None,
        privacy_ledger: str | Path | None = None,
        secure_history: str | Path | None = None,
    ):
        """``audit``: where the log lives (an AuditLog, a path, or None for one in memory).
        ``privacy_ledger``: the SQLite file of the privacy budgets (``owner.privacy``; by
        default ``privacy.sqlite3`` in the duet home, opened when first used).
        ``secure_history``: the SQLite file where this owner remembers its secure-aggregation
        rounds across restarts (round ids, digests of what it gave; by default
        ``secure_history.sqlite3`` in the duet home, opened when the first rule is allowed).
        ``max_scientists``: how many may be connected at once. ``unknown``: what happens to a
        scientist this owner does not know: "confirm" (its ID is checked as ``launch_duet``'s
        ``confirm`` says) or "refuse". ``request_timeout_secs``: the longest a request waits
        for a decision (None: as long as the scientist's ``timeout_secs`` says; without one,
        until decided)."""
        if request_timeout_secs is not None and not request_timeout_secs > 0:
            raise UsageError(
                f"request_timeout_secs must be a positive number of seconds or None, not "
                f"{request_timeout_secs!r}"
            )
        if unknown not in ("confirm", "refuse"):
            raise UsageError(f"unknown must be 'confirm' or 'refuse', not {unknown!r}")
        if max_scientists < 1:
            raise UsageError("max_scientists must be at least 1")
        tune_owner_process()
        # where datasets a scientist opens are read from: given, $DUET_DATA_ROOT, or a folder
        # in the duet home (the tutorials' owners just call launch_duet())
        root = Path(data_root or os.environ.get("DUET_DATA_ROOT") or duet_home() / "data")
        root.mkdir(parents=True, exist_ok=True)
        self.settings = OwnerSettings(data_root=root.resolve())
        self.objects = ObjectStore(
            max_bytes=max_bytes, max_objects=max_objects, max_pending=max_pending_requests
        )
        self.store = OwnerStoreView(self.objects, names=self.scientist_name)
        self.audit = audit if isinstance(audit, AuditLog) else AuditLog(audit)
        self.requests = RequestQueue(audit=self.audit, data_tags=self._data_tags)
        self.requests.page = self._requests_page
        self.redact_errors = redact_errors
        self.identity = identity or Identity.ephemeral("owner")
        self.access = AccessRules()
        self.policy = PolicyChain([QuotaPolicy(self.objects.quota), AccessPolicy(self.access)])
        self.max_scientists = max_scientists
        self.unknown = unknown
        self.links: dict[str, ScientistLink] = {}
        self._last: ScientistLink | None = None  # the last scientist that left
        self.admitted = 0  # scientists admitted since the session began (wait_served)
        self._arrivals: list[asyncio.Future[None]] = []  # wait_served's, woken by the next
        # options for each scientist's Connection (heartbeat, stall timeout...: tests, tuning)
        self.connection_options: dict[str, Any] = {}
        self.scientists = ScientistsView(self)
        #: how many strangers' confirmations may be under way at once
        self.max_confirmations = MAX_CONFIRMATIONS
        self._confirmations = Confirmations(self)
        self._closed = False
        self._accepting: asyncio.Task[None] | None = None  # the node's accept loop, if any
        self.request_timeout_secs = request_timeout_secs
        self._review: ReviewServer | None = None  # the review page, once started
        self.notices: RequestNotices | None = None  # who tells the owner what waits for it
        #: the privacy budgets per scientist and dataset (issue 19), kept in the ledger
        self.privacy = PrivacyDesk(privacy_ledger or default_privacy_path())
        #: federations this owner takes part in with secure aggregation (issue 20), by name
        self.secure_aggregation = SecureAggregationRules(
            self.identity, secure_history or default_secure_history_path()
        )
        #: the node's registration of what it listed (issue 21), once it is open on a network
        self.listing: NodeListing | None = None
        #: secret-shared computations this owner takes part in (issue 20), and their results
        self.secure_computation = SecureComputationRules(self.identity)

    def allow_secure_computation(
        self, data: str | None, *, parties: list[str], provider: str, scientist: str | None = None
    ) -> SecureComputationRule:
        """Take part in secret-shared computations among ``parties`` (the three owners'
        identity IDs, this one's included) with ``provider`` dealing: as a holder, the published
        object tagged ``data`` may be split into shares; as the provider (``data=None``), this
        owner deals triples. Reveals still come to ``requests`` (see duet.smpc.remote)."""
        return self.secure_computation.allow(
            data, parties=parties, provider=provider, scientist=scientist
        )

    def notify(self, say: Say | None = None, *, hint: bool = True) -> RequestNotices:
        """Tell the owner about each request no handler decides, as it arrives, and again
        shortly before it times out: ``say(kind, text)`` (default: a console line, or a notice
        in a notebook). ``launch_duet`` and ``duet serve`` do this; once is enough (a second
        call returns the notices already attached)."""
        if self.notices is None:
            self.notices = RequestNotices(say, hint=hint)
            self.notices.attach(self.requests)
        return self.notices

    # ---- names
    def scientist_name(self, scientist: str, *, claims: str | None = None) -> str:
        """The name to show for scientist ``scientist`` (an ID), wherever the owner sees it:
        the owner's own name for it (``access.allow(id, name=...)``, or one a rule gave it
        before), else the name it claims, quoted and marked ``"Mallory" (claimed)``; "" if it
        has none. ``claims``: the name it claims now (by default: as connected, or last seen).
        """
        rule = self.access.naming(scientist)
        if rule is not None and rule.name:
            return rule.name
        link = self.links.get(scientist)
        if claims is None and link is not None:
            return link.shown_name
        return self._stored_or_claimed(scientist, claims)

    def _stored_or_claimed(self, scientist: str, claims: str | None) -> str:
        known = self.audit.known(scientist, owner_id=self.identity.id)
        if known is not None and known["named_by_owner"] and known["name"]:
            return str(known["name"])
        if claims is None:
            claims = str(known["name"]) if known is not None else ""
        return claimed(claims)

    # ---- the owner's own objects

    def publish(
        self,
        value: object,
        *,
        pointable: bool = True,
        tags: list[str] | None = None,
        description: str = "",
        listed: bool = False,
    ) -> StoredObject:
        """Put one of the owner's values in the store; it stays private (gets are requests).
        ``listed=True``: a node (``launch_duet(max_scientists=N, wait=False)``, ``duet serve``)
        registers its metadata, never its values, on the signaling server it launched on, for
        scientists to find with ``duet.search``. Nothing is listed unless the owner says so."""
        entry = self.objects.publish(
            value, pointable=pointable, tags=tags, description=description, listed=listed
        )
        if listed and self.listing is not None:
            self.listing.changed()
        return entry

    def listed(self) -> list[StoredObject]:
        """The published objects the owner listed on the network."""
        return [e for e in self.objects.published() if e.listed and e.pointable]

    def _data_tags(self) -> set[str]:
        return {tag for entry in self.objects.published() for tag in entry.tags}

    # ---- who is connected
    @property
    def connection(self) -> Connection | None:  # type: ignore[override]
        """The first connected scientist's connection (a node may have several), else the last
        one's that left."""
        for link in self.links.values():
            return link.connection
        return self._last.connection if self._last is not None else None

    @property
    def connected(self) -> bool:
        """True while a scientist is connected."""
        return any(link.connection.state is State.OPEN for link in self.links.values())

    @property
    def client_id(self) -> str:
        """The ID of the (first) connected scientist."""
        for scientist in self.links:
            return scientist
        return ""

    def link(self, scientist: str | None = None) -> ScientistLink:
        """The connected scientist with this ID (or the only one)."""
        if scientist is None:
            if len(self.links) != 1:
                raise UsageError(f"{len(self.links)} scientists are connected; name one")
            return next(iter(self.links.values()))
        try:
            return self.links[scientist]
        except KeyError:
            raise UsageError(f"no scientist {scientist!r} is connected") from None

    def held(self, object_id: str, scientist: str | None = None) -> StoredObject | None:
        """The object a scientist holds under ``object_id`` (the id its pointer shows; each
        scientist names objects in a namespace of its own), or None."""
        link = self.link(scientist)
        if link.service is None:
            return None
        return self.objects.get(link.service.executor.key(object_id))

    # ---- admitting scientists
    async def admit(
        self,
        channel: Channel,
        *,
        fingerprints: tuple[str, str] = ("", ""),
        confirm: Confirm = True,
        preapproved: bool = False,
        timeout_secs: float = 60.0,
        confirm_timeout_secs: float | None = None,
        ask: Ask | None = None,
    ) -> ScientistLink:
        """(On the loop) run the handshake with a scientist on ``channel``, decide whether to
        serve it, and start serving it. Known and ruled scientists are decided here at once; a
        stranger's confirmation is asked through ``ask`` (default: on a thread of its own), for
        at most ``confirm_timeout_secs`` (default: ``timeout_secs``). Raises HandshakeError
        (refused: the reason says which rule, or that it was not confirmed in time) or what the
        handshake raises. Cancelled (the owner stopped admitting), it closes the connection."""
        link = await self.handshake(channel, fingerprints, timeout_secs=timeout_secs)
        try:
            verdict = self.screen(link, confirm=confirm, preapproved=preapproved)
            if verdict.ask:
                wait = timeout_secs if confirm_timeout_secs is None else confirm_timeout_secs
                verdict = await (ask or self._confirmations.ask)(confirm, link.id, wait)
            if verdict.refusal is not None:
                await self.refuse(link, verdict.refusal)
                raise HandshakeError(f"refused scientist {link.id}: {verdict.refusal}")
            link.confirmed = verdict.confirmed
            await self.accept(link)
        except asyncio.CancelledError:
            if link.id not in self.links or self.links[link.id] is not link:
                _close_soon(link, "the owner stopped admitting scientists")
            raise
        return link

    async def handshake(
        self, channel: Channel, fingerprints: tuple[str, str], *, timeout_secs: float
    ) -> ScientistLink:
        """(On the loop) the protocol handshake: afterwards the scientist has proved its ID.
        Cancelling it closes the connection."""
        link = ScientistLink(self, channel, fingerprints)
        try:
            await link.connection.open(timeout_secs=timeout_secs)
        except asyncio.CancelledError:
            _close_soon(link, "the owner stopped admitting scientists")
            raise
        return link

    def screen(self, link: ScientistLink, *, confirm: Confirm, preapproved: bool) -> Verdict:
        """(Any thread; never waits for anyone) what the door says about this scientist before
        anyone is asked: refused, let in, or ``ask`` (only a confirmation can decide)."""
        peer = link.peer
        rule = self.access.rule_for(peer.id)
        if not rule.connect:
            return Verdict(refusal=f"{rule} refuses it")
        if self._closed:
            return Verdict(refusal="the owner is closing")
        if peer.id in self.links:
            return Verdict(refusal="a scientist with this ID is connected already")
        if len(self.links) >= self.max_scientists:
            return Verdict(
                refusal=f"the owner serves at most {self.max_scientists} scientists at once"
            )
        if self.access.naming(peer.id) is not None:  # the owner's word, in a rule
            return Verdict(confirmed=True)
        if self.audit.known(peer.id, owner_id=self.identity.id) is not None:
            return Verdict(confirmed=True)
        if preapproved:  # proved it read the loopback file: let in, not known
            return Verdict()
        if self.unknown == "refuse":
            return Verdict(
                refusal="it is not a scientist this owner knows (unknown scientists are refused)"
            )
        if confirm is False:  # everyone is let in: no one becomes known by it
            return Verdict()
        if isinstance(confirm, str):  # the expected ID, given
            given, ok = confirm_id(confirm, peer.id)
            return Verdict(confirmed=True) if ok else mismatch(given)
        return Verdict(ask=True)

    async def refuse(self, link: ScientistLink, reason: str) -> None:
        peer = link.peer
        name = self.scientist_name(peer.id, claims=peer.name)
        self.audit.record("refused", scientist=peer.id, name=name, reason=reason)
        await link.connection.close(reason)

    async def accept(self, link: ScientistLink) -> None:
        """(On the loop) start serving an admitted scientist; one this owner's identity
        confirmed (``link.confirmed``) is known from now on."""
        peer = link.peer
        rule = self.access.rule_for(peer.id)
        reason = None
        if not rule.connect:  # denied while it was being confirmed
            reason = f"{rule} refuses it"
        elif link.connection.state is not State.OPEN:
            reason = "it left before it was accepted"
        elif peer.id in self.links or len(self.links) >= self.max_scientists:
            reason = "another scientist took its place meanwhile"
        if reason is not None:
            await self.refuse(link, reason)
            raise HandshakeError(f"refused scientist {peer.id}: {reason}")
        if link.confirmed:
            naming = self.access.naming(peer.id)
            given = naming.name if naming is not None else ""
            self.audit.remember(
                peer.id, given or peer.name, owner_id=self.identity.id, named_by_owner=bool(given)
            )
        link.shown_name = self._stored_or_claimed(peer.id, peer.name)
        shown = self.scientist_name(peer.id, claims=peer.name)
        loop = link.connection.loop

        def call_later(delay: float, fn: Callable[[], object]) -> None:
            loop.call_soon_threadsafe(loop.call_later, delay, fn)

        service = link.service = PeerService(
            peer.id,
            self.objects,
            self.requests,
            link.connection.send_if_open,
            call_later,
            redact_errors=self.redact_errors,
            settings=self.settings,
            policy=self.policy,
            audit=self.audit,
            peer_name=shown,
            request_timeout_secs=self.request_timeout_secs,
            privacy=self.privacy,
            secure_aggregation=self.secure_aggregation,
            secure_computation=self.secure_computation,
        )

        def worker_died(reason: str) -> None:  # tell the scientist, rather than go deaf
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(link.connection.close(reason)))

        service.on_dead = worker_died
        self.links[peer.id] = link
        self.admitted += 1
        arrivals, self._arrivals = self._arrivals, []
        for arrival in arrivals:
            if not arrival.done():
                arrival.set_result(None)
        self.audit.record("connect", scientist=peer.id, name=shown)
        link.connection.welcome()
        loop.call_soon(self._watch, link, None)
        LIVE.add(self)

    def _forget(self, link: ScientistLink, reason: str) -> None:
        """A scientist left: free what was its, only."""
        peer = link.connection.peer_identity
        if peer is None or self.links.get(peer.id) is not link:
            return
        del self.links[peer.id]
        self._last = link
        self.requests.cancel_peer(peer.id)
        if link.service is not None:
            link.service.stop()
        freed = self.objects.drop_peer(peer.id)
        name = self.scientist_name(peer.id, claims=peer.name)
        self.audit.record("leave", scientist=peer.id, name=name, reason=reason)
        # what its thread's allocator arena holds free goes back to the system: the next
        # scientist's thread may be given another arena (tuning.py)
        give_back_memory()
        log.info("scientist %s left (%s); freed %d of its objects", peer.id, shown(reason), freed)

    def _watch(self, link: ScientistLink, told: tuple[str, float] | None) -> None:
        """Every few seconds, on the loop: tell both sides when one call has run for long (the
        owner's worker is busy, not gone)."""
        connection, service = link.connection, link.service
        if connection.state in (State.CLOSING, State.CLOSED) or service is None:
            return
        running = service.running
        if running is not None and running is not told:
            op, since = running
            busy = time.monotonic() - since
            if busy >= BUSY_NOTICE_SECS:
                text = f"the owner has been running {op} for {busy:.0f} s; later actions wait"
                log.warning(text)
                info = ErrorInfo(code="owner_busy", message=text, op=op)
                connection.send_if_open([Failure(result=None, error=info)])
                told = running
        connection.loop.call_later(WATCH_SECS, self._watch, link, told)

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called: nothing more is admitted or decided."""
        return self._closed

    # ---- the review page
    def start_review(self) -> ReviewServer:
        """Start the owner's review page (if it is not running yet) and return it; its
        ``url`` (with its secret token) opens it. It stops when this session closes."""
        from ..review import ReviewServer

        if self._closed:
            raise UsageError("this owner session is closed; it has no review page")
        if self._review is None:
            self._review = ReviewServer(self)
        return self._review

    @property
    def review_url(self) -> str | None:
        """The review page's address (with its secret token), or None when it is not running."""
        return None if self._review is None else self._review.url

    def review(self, *, height: int = 720) -> str:
        """Show the review page: in a notebook, the page itself (its Accept / Deny buttons
        work there); in a script, its address is printed. Starts it if ``launch_duet`` did not
        (``review=False``). Returns its address, which carries the page's secret token: keep
        it to yourself."""
        from ..review import show

        return show(self.start_review(), height=height)

    def _requests_page(self) -> str | None:
        """The review page at its requests, for a notebook's output (None: it is not running)."""
        if self._review is None:
            return None
        from ..review import frame

        return frame(self._review, anchor="pending")

    def stop_review(self) -> None:
        """Stop the review page (open pages say the session closed); ``review()`` starts a
        new one, at a new address."""
        review, self._review = self._review, None
        if review is not None:
            review.stop()

    # ---- closing
    def close(self, *, timeout_secs: float = 10.0) -> None:
        """Stop admitting, and leave every scientist's session (each sees it closed)."""
        self._closed = True
        listing, self.listing = self.listing, None
        if listing is not None:  # before the signaling server (if started here) stops
            listing.close()
        self.stop_review()
        if self.notices is not None:
            self.notices.close()
        accepting, self._accepting = self._accepting, None
        if accepting is not None:
            accepting.get_loop().call_soon_threadsafe(accepting.cancel)
        for link in list(self.links.values()):
            connection = link.connection
            if connection.state not in (State.CLOSING, State.CLOSED):
                run(connection.close("closed by the owner"), timeout_secs=timeout_secs,
                    what="closing")  # fmt: skip
        super().close(timeout_secs=timeout_secs)
        self.privacy.close()
        self.secure_aggregation.close()

    def wait_closed(self, timeout_secs: float | None = None) -> None:
        """Block until every connected scientist has left (and, for a node still admitting
        scientists, until it is closed). Raises DuetTimeout."""

        async def wait() -> None:
            while True:
                links = list(self.links.values())
                accepting = self._accepting
                if not links and (accepting is None or accepting.done()):
                    return
                waits = [asyncio.ensure_future(link.connection.wait_closed()) for link in links]
                if accepting is not None and not accepting.done():
                    waits.append(accepting)  # type: ignore[arg-type]
                _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    if task is not accepting:
                        task.cancel()
                await asyncio.sleep(0)  # let the links that closed be forgotten

        run(wait(), timeout_secs=timeout_secs, what="waiting for the scientists to leave")

    def wait_served(self, count: int = 1, timeout_secs: float | None = None) -> None:
        """Block until ``count`` scientists have been admitted since this session began and
        none is connected any more: a node in a notebook serves the researchers it expects,
        then goes on (it still admits others until it is closed; ``wait_closed`` waits for
        that). Raises DuetTimeout, UsageError for a count below 1."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"count is a number of scientists, at least 1, not {count!r}")

        async def wait() -> None:
            loop = asyncio.get_running_loop()
            while True:
                links = list(self.links.values())
                if self.admitted >= count and not links:
                    return
                arrival: asyncio.Future[None] = loop.create_future()
                self._arrivals.append(arrival)
                waits: list[asyncio.Future[Any]] = [
                    asyncio.ensure_future(link.connection.wait_closed()) for link in links
                ]
                try:
                    await asyncio.wait([*waits, arrival], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in (*waits, arrival):
                        waiting.cancel()
                    if arrival in self._arrivals:
                        self._arrivals.remove(arrival)
                await asyncio.sleep(0)  # let the links that closed be forgotten

        run(wait(), timeout_secs=timeout_secs, what=f"waiting for {count} scientists to be served")

    def __repr__(self) -> str:
        state = f"{len(self.links)} scientists connected" if self.links else "no scientist"
        return (
            f"<duet owner session, {state}: {len(self.store)} published, "
            f"{len(self.requests)} pending requests>"
        )


def _close_soon(link: ScientistLink, reason: str) -> None:
    """Close a link whose admission was cancelled (the closing outlives the cancelled task)."""
    closing = asyncio.ensure_future(link.connection.close(reason))
    closing.add_done_callback(lambda done: done.cancelled() or done.exception())


def default_audit_path() -> Path:
    return duet_home() / "audit.sqlite3"


def default_privacy_path() -> Path:
    return duet_home() / "privacy.sqlite3"


def default_secure_history_path() -> Path:
    return duet_home() / "secure_history.sqlite3"


__all__ = ["OwnerSession", "ScientistLink", "answer_refused", "claimed"]
