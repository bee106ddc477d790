"""``launch_duet`` and ``join_duet``: two processes, peer to peer over a WebRTC data channel.

The owner makes its DTLS certificate first, so its ID is known at launch and printed in the line
the scientist runs. It registers an open session with a signaling server and gets a session ID;
the scientist joins with it, offers a WebRTC connection and shows a client ID derived from its
DTLS certificate; the owner confirms that ID (on loopback, the scientist instead proves it read
the owner's private loopback file), answers, and each side then checks that the certificate its
peer actually presented in the DTLS handshake is the one confirmed (the owner's ID, for a
scientist given ``owner_id``). So a signaling server that swapped or spliced the offer or the
answer is caught, whatever the SDP says. Both sides then run the protocol handshake over the
open data channel. Only then is "connected" printed.

The session stays open while the owner waits: an offer it refuses is declined through the
signaling server, a scientist it refuses is told why, and the owner waits on for the next one,
so no single attempt (a forged loopback proof, a mistyped ID) can end an owner's wait.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import tracebacks
from .display import Countdown, banner
from .errors import DuetError, DuetTimeout, HandshakeError, SignalingError, UsageError
from .identity import DEFAULT_KEYS, Identity, duet_home
from .owner.audit import AuditLog
from .owner.quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING
from .pairing import loopback as loopback_pairing
from .pairing.doorway import CONNECT_TIMEOUT_SECS, Doorway, ice_hosts_for
from .pairing.owner_proof import check_answer
from .pairing.signaling import (
    SignalingClient,
    SignalingServerError,
    SignalingUnreachable,
    websocket_url,
)
from .runtime import run
from .sessions.owner import OwnerSession, ScientistLink, default_audit_path
from .sessions.scientist import ScientistSession, connect_scientist
from .transport.channel import Channel
from .transport.identity import (
    client_id_from_fingerprint,
    normalize_id,
    parse_id,
)
from .transport.sdp import check_peer_sdp
from .transport.webrtc import WEBRTC

log = logging.getLogger(__name__)

#: how long a node waits for a stranger's confirmation (a person typing its client ID, the
#: owner's function) before refusing it
CONFIRM_SECS = 120.0
#: how long join_duet waits for an owner that has not launched yet (PySyft's loopback: 90 s)
JOIN_WAIT_SECS = 90.0
_FIRST_RETRY_SECS = 0.25
_MAX_RETRY_SECS = 2.0
#: refusals of a join that a later attempt may not get (a place frees up)
_TRANSIENT = ("session_busy", "server_full")


def _say(text: str) -> None:
    print(text, flush=True)


def loopback_file() -> Path:
    """Where an owner started with ``loopback=True`` leaves its address for a local scientist."""
    return loopback_pairing.loopback_file()


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
    confirm: bool | str | Callable[[str], bool] = True,
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
    ``DUET_SIGNALING_URL``), a signaling server is started on 127.0.0.1 for this session.

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
    place before the first scientist can join); its own settings replace the ones above.

    ``review``: start the owner's review page (a local web page showing who is connected,
    the store, the requests waiting with Accept / Deny buttons, handlers, access rules and the
    audit log) and print its address, which carries a secret token; ``duet.review()`` shows
    it in a notebook. ``request_timeout_secs``: the longest a request waits for a decision
    (None: as long as the scientist's ``timeout_secs`` says).

    PySyft's names: ``network_url`` is ``signaling_url``; ``logging`` (PySyft's live status
    line) is accepted and changes nothing, as duet prints no such line (``duet.requests``
    shows what waits for you); ``db_path`` (PySyft's database for the store) raises
    UsageError, as duet keeps the owner's objects in this process only.

    Raises SignalingError (the signaling session ended), DuetTimeout (no scientist accepted
    within ``timeout_secs``; it names the last refusal), UsageError (``signaling_url`` and
    ``network_url`` disagree; a ``db_path``; ``confirm=True`` with no one to type the ID).
    """
    tracebacks.install()  # an uncaught duet error is shown short (DUET_DEBUG=1: in full)
    signaling_url = _signaling_url(signaling_url, network_url, "launch_duet")
    if db_path is not None:
        raise UsageError(
            f"db_path={str(db_path)!r}: duet keeps the owner's objects in this process, in "
            "memory, never in a database; leave db_path out (the record of requests and "
            "releases is the audit log: launch_duet(audit=path))"
        )
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
        )
    owner.notify()  # a request no handler decides is told to the owner as it arrives
    started = review and owner.review_url is None
    if review:
        _say(f"♫♫♫ > review requests on this page (keep its address to yourself): "
             f"{owner.start_review().url}")  # fmt: skip
    common: dict[str, Any] = dict(
        loopback=loopback, confirm=confirm, ice_servers=ice_servers, ice_hosts=ice_hosts,
        timeout_secs=timeout_secs, on_ready=on_ready,
    )  # fmt: skip
    try:
        if owner.max_scientists > 1 or not wait:
            return _launch_node(owner, signaling_url, wait=wait, **common)
        return _launch_one(owner, signaling_url, **common)
    except BaseException:
        if started:  # no session: no page either
            owner.stop_review()
        raise


def _launch_one(
    owner: OwnerSession,
    signaling_url: str | None,
    *,
    loopback: bool,
    confirm: bool | str | Callable[[str], bool],
    ice_servers: Sequence[str] | None,
    ice_hosts: Sequence[str] | None,
    timeout_secs: float,
    on_ready: Callable[[str, str], None] | None,
) -> OwnerSession:
    """Register, wait until one scientist is accepted (its ID confirmed here, on the caller's
    thread: a person may type it), then stop taking offers.

    A refused attempt changes nothing: an offer duet would not send, or one without the
    loopback proof, is declined through the signaling server; a scientist refused (a wrong
    client ID, a rule) is told why; a failed handshake is dropped. The owner says so and waits
    on for the scientist, until ``timeout_secs``.
    """
    door = Doorway(
        owner,
        signaling_url,
        loopback=loopback,
        ice_servers=ice_servers,
        ice_hosts=ice_hosts,
        say=lambda text: _say(f"♫♫♫ > {text}; still waiting for the scientist"),
    )
    session_id = door.register()
    # scientists whose handshake is done, for the caller's thread to decide one at a time
    arrivals: queue.Queue[ScientistLink | DuetError] = queue.Queue()

    stopped: list[str] = []  # why the owner takes no one else (set on the loop, like arrive)

    async def arrive(channel: Channel, fingerprints: tuple[str, str]) -> None:
        link = await owner.handshake(channel, fingerprints, timeout_secs=CONNECT_TIMEOUT_SECS)
        if stopped:
            await owner.refuse(link, stopped[0])
        else:
            arrivals.put(link)

    async def turn_away(reason: str) -> None:
        """Take no one else: refuse those whose handshake is done but who were not decided."""
        stopped.append(reason)
        while not arrivals.empty():  # bounded: arrive adds no more once stopped
            other = arrivals.get_nowait()
            if isinstance(other, ScientistLink):
                await owner.refuse(other, reason)

    try:
        if loopback:
            door.write_loopback()
        _announce(door, owner, session_id, loopback, max_scientists=None)
        door.start(arrive, arrivals.put)
        if on_ready is not None:
            on_ready(session_id, str(door.url))
        link = _first_accepted(owner, arrivals, confirm=confirm, loopback=loopback,
                               timeout_secs=timeout_secs)  # fmt: skip
    except BaseException:
        door.close()
        run(turn_away("the owner stopped waiting"), timeout_secs=30, what="refusing scientists")
        door.stop_server()
        raise
    finally:
        if loopback:
            loopback_pairing.remove_loopback(session_id)
    door.close()
    run(turn_away("the owner accepted another scientist"), timeout_secs=30,
        what="refusing scientists")  # fmt: skip
    _say(banner.scientist_connected(link.id, owner.scientist_name(link.id)))
    return owner


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


def _first_accepted(
    owner: OwnerSession,
    arrivals: queue.Queue[ScientistLink | DuetError],
    *,
    confirm: bool | str | Callable[[str], bool],
    loopback: bool,
    timeout_secs: float,
) -> ScientistLink:
    """(The caller's thread) decide each scientist that arrives, one at a time, until one is
    accepted. Raises DuetTimeout (none within ``timeout_secs``, naming the last refusal), what
    ended the signaling session, or UsageError (``confirm=True`` and no one to type)."""
    deadline = time.monotonic() + timeout_secs
    last = ""
    while True:  # bounded by the deadline: each turn waits for the next arrival
        try:
            arrival = arrivals.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            refused = f" (the last attempt: {last})" if last else ""
            raise DuetTimeout(f"no scientist joined within {timeout_secs:g} s{refused}") from None
        if isinstance(arrival, DuetError):
            raise arrival
        link = arrival
        try:
            refusal = owner.decide(link, confirm=confirm, preapproved=loopback)
        except BaseException:  # no one to type the ID, or the owner interrupted the prompt
            run(owner.refuse(link, "the owner stopped waiting"), timeout_secs=10,
                what="refusing the scientist")  # fmt: skip
            raise
        if refusal is None:
            try:
                run(owner.accept(link), timeout_secs=CONNECT_TIMEOUT_SECS,
                    what="accepting the scientist")  # fmt: skip
                return link
            except HandshakeError as exc:  # it left meanwhile, or a rule changed: says which
                last = str(exc)
        else:
            run(owner.refuse(link, refusal), timeout_secs=10, what="refusing the scientist")
            last = f"refused scientist {link.id}: {refusal}"
        _say(f"♫♫♫ > {last}; still waiting for the scientist")


def _launch_node(
    owner: OwnerSession,
    signaling_url: str | None,
    *,
    loopback: bool,
    confirm: bool | str | Callable[[str], bool],
    ice_servers: Sequence[str] | None,
    ice_hosts: Sequence[str] | None,
    timeout_secs: float,
    on_ready: Callable[[str, str], None] | None,
    wait: bool,
) -> OwnerSession:
    """Register an open session and admit scientists in the background until ``owner`` closes.

    Each offer is handled on its own (one that fails, or is refused, changes nothing for the
    others): its SDP checked, answered with the owner's signature, its DTLS certificate and
    identity proved, then decided as ``OwnerSession.admit`` says, on the loop: a stranger's
    confirmation runs on a thread of its own, for at most ``CONFIRM_SECS``.
    """
    door = Doorway(
        owner,
        signaling_url,
        loopback=loopback,
        ice_servers=ice_servers,
        ice_hosts=ice_hosts,
        say=lambda text: log.warning("%s", text),
    )
    session_id = door.register()
    first = threading.Event()

    async def arrive(channel: Channel, fingerprints: tuple[str, str]) -> None:
        link = await owner.admit(
            channel,
            fingerprints=fingerprints,
            confirm=confirm,
            preapproved=loopback,
            timeout_secs=CONNECT_TIMEOUT_SECS,
            confirm_timeout_secs=CONFIRM_SECS,
        )
        _say(banner.scientist_connected(link.id, owner.scientist_name(link.id)))
        first.set()

    if loopback:
        door.write_loopback()
    _announce(door, owner, session_id, loopback, max_scientists=owner.max_scientists)
    owner._accepting = door.start(arrive, lambda exc: None)  # owner.close() cancels it
    if on_ready is not None:
        on_ready(session_id, str(door.url))
    if wait and not first.wait(timeout_secs):
        owner.close()
        raise DuetTimeout(f"no scientist joined within {timeout_secs:g} s")
    return owner


def _audit(audit: AuditLog | str | Path | bool) -> AuditLog:
    if isinstance(audit, AuditLog):
        return audit
    if audit is True:
        return AuditLog(default_audit_path())
    if audit is False:
        return AuditLog(None)
    return AuditLog(audit)


class _NoOwnerYet(UsageError):
    """join_duet(loopback=True) found no owner's file (yet): worth waiting for."""


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """``value``, or the same thing under PySyft's name; UsageError if both disagree."""
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise UsageError(
            f"{name}={value!r} and {alias}={alias_value!r} disagree ({alias} is PySyft's name "
            f"for {name}); pass one of them"
        )
    return alias_value


def _signaling_url(url: Any, network_url: str | None, call: str) -> str | None:
    if url is not None and not isinstance(url, str):
        raise UsageError(
            f"{call}'s second argument is the signaling server's URL, not {url!r}; pass "
            "PySyft's other arguments by name"
            if call == "join_duet"
            else f"{call}'s first argument is the signaling server's URL, not {url!r}; pass "
            "PySyft's logging= by name"
        )
    # PySyft's network_url was http://host:port: read as ws://, as signaling_url is
    url, network_url = (None if u is None else websocket_url(u) for u in (url, network_url or None))
    return _alias("signaling_url", url, "network_url", network_url)  # type: ignore[no-any-return]


def _find_owner(
    session_id: str | None, url: str | None, owner_id: str | None, loopback: bool
) -> tuple[loopback_pairing.LoopbackRecord | None, str, str | None, str]:
    """Where to join: (loopback record, session ID, owner ID, signaling URL)."""
    record = None
    if loopback:
        path = loopback_pairing.loopback_file()
        if not os.path.lexists(path):
            raise _NoOwnerYet(
                "no owner is waiting on this machine: run launch_duet(loopback=True) first"
            )
        try:
            record = loopback_pairing.read_loopback()
        except UsageError as exc:
            if not os.path.lexists(path):  # a stale file, removed: that owner has exited
                raise _NoOwnerYet(str(exc)) from None
            raise
        if session_id is not None and session_id.strip() != record.session_id:
            raise UsageError(
                f"the owner waiting on this machine runs session {record.session_id[:8]}…, not "
                f"{session_id.strip()[:8]}…; join with join_duet(loopback=True) alone"
            )
        if owner_id is not None and normalize_id(owner_id) != normalize_id(record.owner_id):
            raise UsageError(
                f"the owner waiting on this machine is {record.owner_id}, not {owner_id}"
            )
        session_id, owner_id = record.session_id, record.owner_id
        url = url or record.signaling_url
    if session_id is None:
        raise UsageError("join_duet needs the session ID the owner was given")
    if owner_id is not None:
        owner_id = parse_id(owner_id, "owner_id")
    url = url or os.environ.get("DUET_SIGNALING_URL")
    if url is None:
        raise UsageError(
            "no signaling server given: pass the signaling_url the owner's launch_duet printed "
            "(or set DUET_SIGNALING_URL)"
        )
    return record, session_id, owner_id, url


def _worth_waiting(exc: BaseException, loopback: bool) -> bool:
    """Whether a failed attempt to join may succeed later, as the server's reply says."""
    if isinstance(exc, _NoOwnerYet | SignalingUnreachable | DuetTimeout):
        return True
    if isinstance(exc, SignalingServerError):
        # the session or the server is full for now: places free up as joins finish or expire.
        # An unknown session on loopback: that owner's session ended, a new one is on its way
        return exc.server_code in _TRANSIENT or (
            loopback and exc.server_code in ("unknown_session", "expired")
        )
    return False


async def _join_signaling(url: str, session_id: str) -> SignalingClient:
    client = await SignalingClient.connect(url)
    try:
        await client.join(session_id)
    except BaseException:
        await client.close()
        raise
    return client


def _reach_owner(
    session_id: str | None,
    url: str | None,
    *,
    owner_id: str | None,
    loopback: bool,
    wait_secs: float,
) -> tuple[loopback_pairing.LoopbackRecord | None, str, str | None, str, SignalingClient]:
    """Find the owner's session and join it on the signaling server, waiting up to
    ``wait_secs`` (with a countdown) while the owner or the server is not there yet, or the
    session has no place free yet."""
    countdown: Countdown | None = None
    delay = _FIRST_RETRY_SECS
    found: tuple[loopback_pairing.LoopbackRecord | None, str, str | None, str] | None = None
    try:
        while True:  # bounded by the countdown's deadline
            try:
                found = _find_owner(session_id, url, owner_id, loopback)
                client = run(
                    _join_signaling(found[3], found[1]),
                    timeout_secs=CONNECT_TIMEOUT_SECS,
                    what="joining through the signaling server",
                )
                return (*found, client)
            except DuetError as exc:
                if wait_secs <= 0 or not _worth_waiting(exc, loopback):
                    raise
                if countdown is None:
                    countdown = Countdown(_awaited(found, loopback), wait_secs)
                if countdown.left() <= 0:
                    raise _owner_never_came(found, loopback, wait_secs, exc) from exc
                countdown.what = _awaited(found, loopback)
                countdown.pause(delay, note=_short(exc))
                delay = min(delay * 2, _MAX_RETRY_SECS)
    finally:
        if countdown is not None:
            countdown.done()


def _awaited(found: tuple[Any, str, Any, str] | None, loopback: bool) -> str:
    if found is None:
        return "waiting for an owner to run launch_duet(loopback=True) on this machine"
    return f"waiting to join session {found[1][:8]}… at the signaling server {found[3]}"


def _short(exc: BaseException) -> str:
    if isinstance(exc, SignalingServerError):
        return exc.server_code
    if isinstance(exc, SignalingUnreachable):
        return "not answering"
    if isinstance(exc, _NoOwnerYet):
        return "no owner yet"
    return type(exc).__name__


def _owner_never_came(
    found: tuple[Any, str, Any, str] | None, loopback: bool, wait_secs: float, last: DuetError
) -> DuetTimeout:
    if found is None:
        return DuetTimeout(
            f"no owner ran launch_duet(loopback=True) on this machine within {wait_secs:g} s "
            f"(the loopback file {loopback_pairing.loopback_file()} never appeared); start the owner, "
            "then join again (wait_secs=... waits longer)"
        )
    return DuetTimeout(
        f"could not join session {found[1][:8]}… through the signaling server at {found[3]} "
        f"within {wait_secs:g} s: {last}"
    )


def join_duet(
    session_id: str | None = None,
    signaling_url: str | None = None,
    *,
    owner_id: str | None = None,
    loopback: bool = False,
    ice_servers: Sequence[str] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = 600.0,
    identity: Identity | str | None = None,
    name: str = "",
    wait_secs: float = JOIN_WAIT_SECS,
    network_url: str | None = None,
    target_id: str | None = None,
) -> ScientistSession:
    """Join a duet as the data scientist; returns the connected session.

    Prints your client ID (your identity's: the same every time, see ``duet.Identity``): tell it
    to the owner, who confirms it the first time. ``owner_id`` is the ID in the line the
    owner's ``launch_duet`` printed: given, the connection is refused unless the other side
    proves, on this very connection, that it holds that owner's key, so no one else (not even
    the signaling server) can stand in for the owner and receive what you send.
    ``loopback=True`` joins the owner started with ``launch_duet(loopback=True)`` on this
    machine, reading the owner's ID and a token from its private loopback file. ``name`` is
    shown to the owner beside your ID (it proves nothing). ``identity``: an Identity, or the
    name of a key in the duet home (by default "default"; an owner on this machine uses
    another, "owner").

    Started before the owner, it waits up to ``wait_secs`` (90 s, as PySyft's loopback did)
    with a countdown on stderr: for the owner's loopback file with ``loopback=True``, for the
    signaling server to answer at its address otherwise, and while the owner's session or the
    server is full (``session_busy``: as many scientists as the server allows are mid-exchange
    with that owner; ``server_full``); each attempt bounded, with a backoff between attempts of
    up to 2 s. An unknown session ID is not waited for: IDs are made by the signaling server
    when the owner registers, so a wait cannot make one known.
    ``wait_secs=0`` fails at once. PySyft's names: ``target_id`` is ``session_id``,
    ``network_url`` is ``signaling_url``.

    Raises SignalingError (unknown or expired ID, the owner refused), HandshakeError (the owner
    is not ``owner_id``, or refused you), UsageError (a malformed ``owner_id``, a loopback file
    someone else could have written, PySyft's and duet's names given different values),
    DuetTimeout (no owner within ``wait_secs``, naming the session and the signaling server;
    or no connection within ``timeout_secs``).
    """
    tracebacks.install()  # an uncaught duet error is shown short (DUET_DEBUG=1: in full)
    session_id = _alias("session_id", session_id, "target_id", target_id or None)
    signaling_url = _signaling_url(signaling_url, network_url, "join_duet")
    who = (
        identity
        if isinstance(identity, Identity)
        else Identity.for_role("scientist", name=name)
        if identity is None
        else Identity.load_or_create(identity, name=name)
    )
    if name:
        who.name = name
    hosts = ice_hosts_for(ice_hosts, loopback)
    scientist = ScientistSession()
    state: dict[str, Any] = {}

    async def make_offer() -> str:
        # made before joining: once joined, the offer follows at once (the server gives a
        # join that sends none only --join-timeout before it frees its place)
        state["peer"], sdp = await WEBRTC.offer(ice_servers=ice_servers, ice_hosts=hosts)
        return sdp

    try:
        sdp = run(make_offer(), timeout_secs=CONNECT_TIMEOUT_SECS, what="making the offer")
        record, session_id, owner_id, _url, client = _reach_owner(
            session_id, signaling_url, owner_id=owner_id, loopback=loopback, wait_secs=wait_secs
        )
        state["signaling"] = client
        if record is not None:
            proof = loopback_pairing.loopback_proof(
                record.token, record.session_id, state["peer"].fingerprint
            )
            sdp = loopback_pairing.with_proof(sdp, proof)
        run(client.send_offer(sdp), timeout_secs=CONNECT_TIMEOUT_SECS,
            what="sending the offer to the owner")  # fmt: skip
    except BaseException:
        _close_all(state)
        raise
    _say(f"♫♫♫ > duet client ID: {who.id}")
    if not loopback:
        _say("♫♫♫ > tell the data owner this client ID; waiting for them to confirm...")
        if owner_id is None:
            _say(
                "♫♫♫ > not checking who answers: pass the owner_id from the owner's join line "
                "to make sure it is the owner"
            )

    async def connect() -> None:
        try:
            answer_sdp = await state["signaling"].wait_answer(timeout_secs=timeout_secs)
        except SignalingError as exc:
            raise SignalingError(f"the owner did not answer: {exc}") from exc
        peer = state["peer"]
        expected = None
        if owner_id is not None:  # refuse an impostor before connecting to it at all
            owner_fingerprint = check_peer_sdp(answer_sdp, "the owner's answer")
            try:
                check_answer(answer_sdp, owner_id, session_id, owner_fingerprint)
            except HandshakeError:
                await peer.close()
                raise
            expected = client_id_from_fingerprint(owner_fingerprint)
        channel = await peer.accept_answer(
            answer_sdp, timeout_secs=CONNECT_TIMEOUT_SECS, expected_peer_id=expected
        )
        await connect_scientist(
            scientist,
            channel,
            identity=who,
            fingerprints=(peer.fingerprint, peer.peer_fingerprint or ""),
            timeout_secs=CONNECT_TIMEOUT_SECS,
            welcome_timeout_secs=timeout_secs,  # the owner may be typing our ID
            expected_owner=owner_id,
        )

    try:
        run(
            connect(),
            timeout_secs=timeout_secs + CONNECT_TIMEOUT_SECS,
            what="connecting to the owner",
        )
    except BaseException:
        _close_all(state)
        raise
    run(state["signaling"].close(), timeout_secs=10, what="closing the signaling connection")
    checked = f" {owner_id} (it proved its identity)" if owner_id else ""
    _say(f"♫♫♫ > connected to the data owner{checked}")
    return scientist


def _close_all(state: dict[str, Any]) -> None:
    """Close the scientist's peer connection and signaling connection, whichever exist."""
    if "peer" in state:
        run(state["peer"].close(), timeout_secs=10, what="closing the WebRTC connection")
    if "signaling" in state:
        run(state["signaling"].close(), timeout_secs=10, what="closing the signaling connection")


def duet(
    target_id: str | None = None,
    logging: bool = True,
    network_url: str | None = None,
    loopback: bool = False,
    db_path: str | Path | None = None,
    **options: Any,
) -> OwnerSession | ScientistSession:
    """PySyft's one call: with no ID, launch a duet as the owner; with one, join it.

    ``sy.duet()`` is ``launch_duet()``, ``sy.duet(loopback=True)`` is
    ``launch_duet(loopback=True)``, ``sy.duet("<session id>")`` is ``join_duet("<session id>")``
    (the scientist on this machine joins a loopback owner with ``sy.join_duet(loopback=True)``,
    as in PySyft). ``network_url`` is the signaling server's URL; ``logging`` and ``db_path``
    mean what they mean to ``launch_duet``; other keyword arguments go to the call made.

    Raises what ``launch_duet`` or ``join_duet`` raise; UsageError for ``db_path`` when
    joining (it is the owner's).
    """
    if target_id is None:
        return launch_duet(
            network_url=network_url, loopback=loopback, logging=logging, db_path=db_path, **options
        )
    if db_path is not None:
        raise UsageError("db_path is for launching a duet (the owner's); joining takes none")
    return join_duet(target_id, network_url=network_url, loopback=loopback, **options)


__all__ = ["duet", "join_duet", "launch_duet"]
