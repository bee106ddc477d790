"""``launch_duet``: the owner opens its door, and scientists are admitted through it.

The owner makes its DTLS certificate first, so its ID is known at launch and printed in the line
the scientist runs. It registers an open session with a signaling server and gets a session ID;
each scientist joins with it and offers a WebRTC connection; the owner's doorway
(pairing/doorway.py) checks and answers each offer, and once the data channel is open and the
scientist's certificate checked, ``OwnerSession.admit`` runs the protocol handshake and decides:
known and ruled scientists at once, a stranger by a confirmation (its client ID typed, the
owner's function, a given ID). Only then is "connected" printed.

One accept loop serves both shapes of owner. A duet (``max_scientists=1``, the default) is a
node that returns once its first scientist is admitted and then takes no one else; a stranger's
confirmation is asked on the caller's thread, so the prompt is the notebook's own. A node
(``max_scientists > 1``, or ``wait=False``) goes on admitting in the background, each stranger
confirmed on a thread of its own. Either way a refused attempt changes nothing: the owner says
why and waits on, until ``timeout_secs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import tracebacks
from .display import banner
from .errors import DuetError, DuetTimeout, HandshakeError, UsageError
from .identity import DEFAULT_KEYS, Identity, duet_home
from .owner.access import DEFAULT as DEFAULT_RULE
from .owner.audit import AuditLog
from .owner.quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING
from .pairing import loopback as loopback_pairing
from .pairing.arguments import signaling_url_argument
from .pairing.doorway import CONNECT_TIMEOUT_SECS, Doorway
from .sessions.admission import Confirm, Verdict, confirm_id, mismatch
from .sessions.owner import OwnerSession, ScientistLink, default_audit_path
from .transport.channel import Channel

log = logging.getLogger(__name__)

#: how long a node waits for a stranger's confirmation (a person typing its client ID, the
#: owner's function) before refusing it
CONFIRM_SECS = 120.0


def _say(text: str) -> None:
    print(text, flush=True)


def _owner_identity(identity: Identity | str | None) -> Identity:
    if isinstance(identity, Identity):
        return identity
    if identity is None:  # not the scientist's key: both may run on one machine
        keys = duet_home() / "identities"
        before = (
            not (keys / f"{DEFAULT_KEYS['owner']}.key").exists()
            and (keys / f"{DEFAULT_KEYS['scientist']}.key").exists()
        )
        who = Identity.for_role("owner", name="owner")
        if before:  # this home's owner had the scientist's ID until now: say where it went
            _say(
                f"♫♫♫ > the owner's ID in this duet home is {who.id} (identities/owner.key), not "
                "the scientist's; an owner that ran here before had the scientist's ID: to "
                'keep it, launch_duet(identity="default")'
            )
        return who
    return Identity.load_or_create(identity, name="owner")


def launch_duet(
    signaling_url: str | None = None,
    *,
    loopback: bool = False,
    confirm: Confirm = True,
    ice_servers: Sequence[str] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = 600.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_pending_requests: int = DEFAULT_MAX_PENDING,
    redact_errors: bool = False,
    data_root: str | Path | None = None,
    on_ready: Callable[[str, str], None] | None = None,
    identity: Identity | str | None = None,
    audit: AuditLog | str | Path | bool = True,
    unknown: str = "confirm",
    max_scientists: int = 1,
    wait: bool = True,
    owner: OwnerSession | None = None,
    network_url: str | None = None,
    logging: bool = True,
    db_path: str | Path | None = None,
    review: bool = True,
    request_timeout_secs: float | None = None,
    signaling_host: str = "127.0.0.1",
    signaling_port: int = 0,
    privacy_ledger: str | Path | None = None,
    secure_history: str | Path | None = None,
) -> OwnerSession:
    """Start a duet as the data owner and wait until a scientist has joined.

    Prints the session ID and the exact line the scientist runs, which carries your owner ID
    (your identity's, the same every time: see ``duet.Identity``) so the scientist can check it
    is really you they reach. A scientist this identity confirmed before, or one an access rule
    names (``owner.access.allow(id)``), joins without a prompt. For an unknown one, with
    ``confirm=True`` you are asked for the client ID the scientist was shown (``confirm`` may
    also be the expected ID itself, or a function given the ID that returns True to accept;
    ``unknown="refuse"`` refuses unknown scientists); once confirmed, it is known to this
    identity from now on. ``confirm=False`` lets anyone in and makes no one known. Either way
    the scientist must prove, on this very connection, that it holds the key of that ID. A
    refused attempt (a wrong ID, an offer duet would not send, a loopback join without the
    proof) is told why, and you wait on for the scientist, until ``timeout_secs``.
    ``on_ready(session_id, signaling_url)`` is called once the session is registered, for
    handing the ID over another way.

    ``loopback=True``: owner and scientist on this machine find each other with no ID to copy
    and no prompt, through a file only your user can read (see ``loopback_file()``); a process
    that joins without having read it is refused. With no ``signaling_url`` (and no
    ``DUET_SIGNALING_URL``), a signaling server is started for this session, as a child
    process listening on ``signaling_host``:``signaling_port`` (127.0.0.1, a free port); it
    stops when the owner closes.

    ``identity``: who you are (an Identity, or the name of a key in the duet home; by default
    "owner", which is not the key a scientist on this machine uses; the key owners used before,
    and the scientist's, is "default").
    ``audit``: the log of requests, decisions and releases (True: ``audit.sqlite3`` in the duet
    home; a path; False: in memory only).

    ``max_scientists``: more than 1 makes the owner a node that keeps accepting scientists (each
    with its own connection, namespace and quotas) until it is closed, serving up to that many
    at once; ``wait=False`` returns as soon as the session is registered instead of after the
    first scientist joined (``duet serve`` runs a node from a config file). Unknown scientists
    joining a node are confirmed off the caller's thread, each on a thread of its own, and
    refused if not confirmed within ``CONFIRM_SECS`` (120 s): pass ``confirm`` as a function or
    an ID, let in only known ones (``unknown="refuse"``), or set access rules. Known and ruled
    scientists are let in at once, however many strangers are waiting.
    ``owner``: an OwnerSession prepared beforehand (published data, handlers, access rules in
    place before the first scientist can join); its own settings replace the ones above, and
    one of them given here too is a UsageError (it would be ignored).

    ``review``: start the owner's review page (a local web page showing who is connected,
    the store, the requests waiting with Accept / Deny buttons, handlers, access rules and the
    audit log) and print its address, which carries a secret token; ``duet.review()`` shows
    it in a notebook. ``request_timeout_secs``: the longest a request waits for a decision
    (None: as long as the scientist's ``timeout_secs`` says).
    ``privacy_ledger``: the SQLite file of the privacy budgets (``owner.privacy``; default
    ``privacy.sqlite3`` in the duet home). ``secure_history``: the SQLite file where the owner
    remembers its secure-aggregation rounds across restarts (default
    ``secure_history.sqlite3`` in the duet home).

    PySyft's names: ``network_url`` is ``signaling_url``; ``logging`` (PySyft's live status
    line) is accepted and changes nothing, as duet prints no such line (``duet.requests``
    shows what waits for you); ``db_path`` (PySyft's database for the store) raises
    UsageError, as duet keeps the owner's objects in this process only.

    Raises SignalingError (the signaling session ended), DuetTimeout (no scientist accepted
    within ``timeout_secs``; it names the last refusal), UsageError (``signaling_url`` and
    ``network_url`` disagree; a ``db_path``; ``confirm=True`` with no one to type the ID).
    """
    tracebacks.install()  # an uncaught duet error is shown short (DUET_DEBUG=1: in full)
    signaling_url = signaling_url_argument(signaling_url, network_url, "launch_duet")
    if db_path is not None:
        raise UsageError(
            f"db_path={str(db_path)!r}: duet keeps the owner's objects in this process, in "
            "memory, never in a database; leave db_path out (the record of requests and "
            "releases is the audit log: launch_duet(audit=path))"
        )
    if owner is not None:
        _owner_settings_unused(
            max_bytes=(max_bytes, DEFAULT_MAX_BYTES), max_objects=(max_objects, DEFAULT_MAX_OBJECTS),
            max_pending_requests=(max_pending_requests, DEFAULT_MAX_PENDING),
            redact_errors=(redact_errors, False), data_root=(data_root, None),
            identity=(identity, None), audit=(audit, True), unknown=(unknown, "confirm"),
            max_scientists=(max_scientists, 1), request_timeout_secs=(request_timeout_secs, None),
            privacy_ledger=(privacy_ledger, None), secure_history=(secure_history, None),
        )  # fmt: skip
    if owner is None:
        owner = OwnerSession(
            max_bytes=max_bytes,
            max_objects=max_objects,
            max_pending_requests=max_pending_requests,
            redact_errors=redact_errors,
            data_root=data_root,
            identity=_owner_identity(identity),
            audit=_audit(audit),
            unknown=unknown,
            max_scientists=max_scientists,
            request_timeout_secs=request_timeout_secs,
            privacy_ledger=privacy_ledger,
            secure_history=secure_history,
        )
    owner.notify()  # a request no handler decides is told to the owner as it arrives
    started = review and owner.review_url is None
    if review:
        _say(f"♫♫♫ > review requests on this page (keep its address to yourself): "
             f"{owner.start_review().url}")  # fmt: skip
    try:
        return _open(owner, signaling_url, loopback=loopback, confirm=confirm,
                     ice_servers=ice_servers, ice_hosts=ice_hosts, timeout_secs=timeout_secs,
                     on_ready=on_ready, wait=wait,
                     server_at=(signaling_host, signaling_port))  # fmt: skip
    except BaseException:
        if started:  # no session: no page either
            owner.stop_review()
        raise


def _owner_settings_unused(**given: tuple[object, object]) -> None:
    """UsageError naming the OwnerSession settings given beside ``owner=``: they are the
    session's own, so a value given here would be silently ignored."""
    changed = [name for name, (value, default) in given.items() if value != default]
    if changed:
        named = ", ".join(f"{name}={given[name][0]!r}" for name in changed)
        raise UsageError(
            f"launch_duet(owner=...) runs the OwnerSession as it was made, so {named} would be "
            f"ignored: pass {'it' if len(changed) == 1 else 'them'} to OwnerSession(...) instead"
        )


def _open(
    owner: OwnerSession,
    signaling_url: str | None,
    *,
    loopback: bool,
    confirm: Confirm,
    ice_servers: Sequence[str] | None,
    ice_hosts: Sequence[str] | None,
    timeout_secs: float,
    on_ready: Callable[[str, str], None] | None,
    wait: bool,
    server_at: tuple[str, int],
) -> OwnerSession:
    """Register an open session and admit scientists through it: the one accept loop.

    A duet (``max_scientists=1`` and ``wait``) returns once one scientist is admitted, its
    confirmation asked on this, the caller's, thread, and then takes no one else (joins under
    way are refused). A node admits in the background until ``owner`` closes, strangers
    confirmed each on a thread of its own for at most ``CONFIRM_SECS``; with ``wait`` it
    returns once the first is admitted.
    """
    one = owner.max_scientists == 1 and wait
    lobby = _Lobby(one=one, waiting=wait)
    door = Doorway(owner, signaling_url, loopback=loopback, ice_servers=ice_servers,
                   ice_hosts=ice_hosts, say=lobby.refused, server_at=server_at)  # fmt: skip
    session_id = door.register()

    async def arrive(channel: Channel, fingerprints: tuple[str, str]) -> None:
        try:
            link = await owner.admit(
                channel,
                fingerprints=fingerprints,
                confirm=confirm,
                preapproved=loopback,
                timeout_secs=CONNECT_TIMEOUT_SECS,
                confirm_timeout_secs=timeout_secs if one else CONFIRM_SECS,
                ask=lobby.ask if one else None,
            )
        except HandshakeError as exc:
            lobby.refused(str(exc))
            return
        if not lobby.arrived(link):  # the owner stopped waiting meanwhile: it serves no one
            await link.connection.close("the owner stopped waiting")
            return
        _say(banner.scientist_connected(link.id, owner.scientist_name(link.id)))

    try:
        if loopback:
            door.write_loopback()
        _announce(door, owner, session_id, loopback,
                  max_scientists=None if one else owner.max_scientists)  # fmt: skip
        accepting = door.start(arrive, lobby.ended)
        if not one:
            owner._accepting = accepting  # owner.close() cancels it
            _list_on_network(owner, door, session_id, confirm)
        if on_ready is not None:
            on_ready(session_id, str(door.url))
        if wait:
            lobby.first(timeout_secs)
    except BaseException:
        lobby.stop()
        door.close()  # joins under way are cancelled: each closes its connection
        if one:
            door.stop_server()
        else:
            owner.close()
        raise
    finally:
        if one and loopback:
            loopback_pairing.remove_loopback(session_id)
    if one:
        door.close()  # take no one else: joins under way are refused
    return owner


@dataclass
class _Question:
    """A stranger's confirmation, for the caller's thread to ask."""

    confirm: Confirm
    client_id: str
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future[Verdict]

    def settle(self, verdict: Verdict) -> None:
        def set_result() -> None:
            if not self.answer.done():  # given up on: the join was refused already
                self.answer.set_result(verdict)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            self.loop.call_soon_threadsafe(set_result)


class _Lobby:
    """Where the accept loop (on duet's loop) meets the caller's thread while it waits for the
    first scientist: admissions, the session's end, and (a duet's) strangers' confirmations,
    one at a time, in the order they came. Refusals are said on the console while a duet waits
    (the last one is named if none is admitted in time) and logged otherwise."""

    def __init__(self, *, one: bool, waiting: bool):
        self.one = one
        self.waiting = waiting  # the caller's thread takes the first admission
        self.last = ""
        self._events: queue.Queue[ScientistLink | DuetError | _Question] = queue.Queue()
        self._lock = threading.Lock()

    # ---- the loop's side
    async def ask(self, confirm: Confirm, client_id: str, timeout_secs: float) -> Verdict:
        loop = asyncio.get_running_loop()
        question = _Question(confirm, client_id, loop, loop.create_future())
        self._events.put(question)
        try:
            return await asyncio.wait_for(question.answer, timeout_secs)
        except TimeoutError:
            return Verdict(refusal=f"it was not confirmed within {timeout_secs:g} s")

    def arrived(self, link: ScientistLink) -> bool:
        """Whether the owner serves ``link``: a node does; a duet, only its first scientist."""
        with self._lock:
            if self.waiting:
                self.waiting = False
                self._events.put(link)
                return True
            return not self.one

    def refused(self, text: str) -> None:
        with self._lock:
            if self.one and self.waiting:
                self.last = text
                _say(f"♫♫♫ > {text}; still waiting for the scientist")
                return
        log.warning("%s", text)

    def ended(self, error: DuetError) -> None:
        with self._lock:
            if self.waiting:
                self._events.put(error)

    # ---- the caller's side
    def first(self, timeout_secs: float) -> ScientistLink:
        """(The caller's thread) wait for the first admission, asking strangers' confirmations
        here meanwhile. Raises DuetTimeout (naming the last refusal), what ended the signaling
        session, or what the prompt raised (UsageError: no one to type the ID)."""
        deadline = time.monotonic() + timeout_secs
        while True:  # bounded by the deadline: each turn waits for the next event
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                refused = f" (the last attempt: {self.last})" if self.last else ""
                raise DuetTimeout(
                    f"no scientist joined within {timeout_secs:g} s{refused}"
                ) from None
            if isinstance(event, ScientistLink):
                return event
            if isinstance(event, DuetError):
                raise event
            self._confirm(event)

    def _confirm(self, question: _Question) -> None:
        if question.answer.done():  # it timed out, or its join was cancelled: ask no one
            return
        try:
            given, ok = confirm_id(question.confirm, question.client_id)
        except BaseException:  # no one to type the ID, or the owner interrupted the prompt
            question.settle(Verdict(refusal="the owner stopped waiting"))
            raise
        question.settle(Verdict(confirmed=True) if ok else mismatch(given))

    def stop(self) -> None:
        with self._lock:
            self.waiting = False


def _announce(
    door: Doorway, owner: OwnerSession, session_id: str, loopback: bool,
    *, max_scientists: int | None,
) -> None:  # fmt: skip
    for line in banner.owner_opened(
        session_id=session_id, owner_id=owner.identity.id,
        data_root=str(owner.settings.data_root), url=str(door.url),
        started_server=door.server is not None, loopback=loopback, max_scientists=max_scientists,
    ):  # fmt: skip
        _say(line)


def _list_on_network(owner: OwnerSession, door: Doorway, session_id: str, confirm: Confirm) -> None:
    """A node registers what its owner listed (``publish(..., listed=True)``, now or later) on
    the signaling server it launched on (duet/registry/node.py); nothing, if nothing is. Only
    the scientists it would admit are shown the listing (``_audience``)."""
    from .registry.node import NodeListing

    owner.listing = NodeListing(
        owner.identity, str(door.url), session_id, owner.listed, owner_name=owner.identity.name,
        audience=lambda: _audience(owner, confirm),
    )  # fmt: skip
    owner.listing.start()


def _audience(owner: OwnerSession, confirm: Confirm) -> list[str] | None:
    """The scientists ``owner`` admits (``OwnerSession.verdict``'s rules, read the other way
    round), or None while a stranger may be admitted (asked, or let in by ``confirm=False``):
    those an access rule lets in; unless strangers are denied by the default rule, those this
    identity knows and no rule refuses; and the one ``confirm`` names, if it names one."""
    rules = [rule for rule in owner.access if rule.scientist != DEFAULT_RULE]
    allowed = {rule.scientist for rule in rules if rule.connect}
    if not owner.access.rule_for(DEFAULT_RULE).connect:
        return sorted(allowed)
    expected = _scientist_id(confirm) if isinstance(confirm, str) else None
    if owner.unknown != "refuse" and isinstance(confirm, str) and expected is None:
        return None  # a confirmation we cannot read the other way round: anyone may find it
    if owner.unknown != "refuse" and not isinstance(confirm, str):
        return None
    denied = {rule.scientist for rule in rules if not rule.connect}
    known = {k["id"] for k in owner.audit.known_scientists(owner_id=owner.identity.id)}
    admitted = allowed | (known - denied)
    if expected is not None and owner.unknown != "refuse":
        admitted.add(expected)
    return sorted(admitted)


def _scientist_id(text: str) -> str | None:
    from .registry.client import canonical_owner_id

    try:
        return canonical_owner_id(text)
    except UsageError:
        return None


def _audit(audit: AuditLog | str | Path | bool) -> AuditLog:
    if isinstance(audit, AuditLog):
        return audit
    if audit is True:
        return AuditLog(default_audit_path())
    if audit is False:
        return AuditLog(None)
    return AuditLog(audit)


__all__ = ["CONFIRM_SECS", "launch_duet"]
