"""``launch_duet`` and ``join_duet``: two processes, peer to peer over a WebRTC data channel.

The owner makes its DTLS certificate first, so its ID is known at launch and printed in the line
the scientist runs. It registers with a signaling server and gets a session ID; the scientist
joins with it, offers a WebRTC connection and shows a client ID derived from its DTLS
certificate; the owner confirms that ID (on loopback, the scientist instead proves it read the
owner's private loopback file), answers, and each side then checks that the certificate its peer
actually presented in the DTLS handshake is the one confirmed (the owner's ID, for a scientist
given ``owner_id``). So a signaling server that swapped or spliced the offer or the answer is
caught, whatever the SDP says. Both sides then run the protocol handshake over the open data
channel. Only then is "connected" printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .countdown import Countdown
from .errors import DuetError, DuetTimeout, HandshakeError, SignalingError, UsageError
from .identity import Identity
from .node import OwnerSession, ScientistLink, default_audit_path
from .owner.audit import AuditLog
from .owner.quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING
from .runtime import run
from .session import ScientistSession, connect_scientist
from .transport import loopback as local
from .transport.identity import (
    certificate_fingerprint,
    client_id_from_fingerprint,
    new_certificate,
    normalize_id,
    parse_id,
)
from .transport.owner_proof import check_answer, sign_answer
from .transport.sdp import check_peer_sdp
from .transport.signaling import SignalingClient, SignalingServerError, SignalingUnreachable
from .transport.webrtc import answer_offer, create_offer

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECS = 60.0
LOOPBACK_HOSTS = ["127.0.0.1"]
#: how long join_duet waits for an owner that has not launched yet (PySyft's loopback: 90 s)
JOIN_WAIT_SECS = 90.0
_FIRST_RETRY_SECS = 0.25
_MAX_RETRY_SECS = 2.0


def _say(text: str) -> None:
    print(text, flush=True)


def loopback_file() -> Path:
    """Where an owner started with ``loopback=True`` leaves its address for a local scientist."""
    return local.loopback_file()


def _ice_hosts(ice_hosts: Sequence[str] | None, loopback: bool) -> Sequence[str] | None:
    if ice_hosts is not None:
        return ice_hosts
    return LOOPBACK_HOSTS if loopback else None


def _owner_identity(identity: Identity | str | None) -> Identity:
    if isinstance(identity, Identity):
        return identity
    return Identity.load_or_create(identity or "default", name="owner")


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
) -> OwnerSession:
    """Start a duet as the data owner and wait until a scientist has joined.

    Prints the session ID and the exact line the scientist runs, which carries your owner ID
    (your identity's, the same every time: see ``duet.Identity``) so the scientist can check it
    is really you they reach. A scientist you accepted before joins without a prompt. For an
    unknown one, with ``confirm=True`` you are asked for the client ID the scientist was shown;
    a wrong ID refuses the connection (``confirm`` may also be the expected ID itself, or a
    function given the ID that returns True to accept; ``unknown="refuse"`` refuses unknown
    scientists). Either way the scientist must prove, on this very connection, that it holds
    the key of that ID. ``on_ready(session_id, signaling_url)`` is called once the session is
    registered, for handing the ID over another way.

    ``loopback=True``: owner and scientist on this machine find each other with no ID to copy
    and no prompt, through a file only your user can read (see ``loopback_file()``); a process
    that joins without having read it is refused. With no ``signaling_url`` (and no
    ``DUET_SIGNALING_URL``), a signaling server is started on 127.0.0.1 for this session.

    ``identity``: who you are (an Identity, or the name of a key in the duet home; "default").
    ``audit``: the log of requests, decisions and releases (True: ``audit.sqlite3`` in the duet
    home; a path; False: in memory only).

    ``max_scientists``: more than 1 makes the owner a node that keeps accepting scientists (each
    with its own connection, namespace and quotas) until it is closed, serving up to that many
    at once; ``wait=False`` returns as soon as the session is registered instead of after the
    first scientist joined (``duet serve`` runs a node from a config file). Unknown scientists
    joining a node are confirmed off the caller's thread: pass ``confirm`` as a function or an
    ID, let in only known ones (``unknown="refuse"``), or set access rules.
    ``owner``: an OwnerSession prepared beforehand (published data, handlers, access rules in
    place before the first scientist can join); its own settings replace the ones above.

    PySyft's names: ``network_url`` is ``signaling_url``; ``logging`` (PySyft's live status
    line) is accepted and changes nothing, as duet prints no such line (``duet.requests``
    shows what waits for you); ``db_path`` (PySyft's database for the store) raises
    UsageError, as duet keeps the owner's objects in this process only.

    Raises SignalingError, HandshakeError (the scientist was not confirmed or could not prove
    who it is), ProtocolError (an offer duet would not send), DuetTimeout (no scientist within
    ``timeout_secs``), UsageError (``signaling_url`` and ``network_url`` disagree; a
    ``db_path``).
    """
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
        )
    if owner.max_scientists > 1 or not wait:
        return _launch_node(
            owner,
            signaling_url,
            loopback=loopback,
            confirm=confirm,
            ice_servers=ice_servers,
            ice_hosts=ice_hosts,
            timeout_secs=timeout_secs,
            on_ready=on_ready,
            wait=wait,
        )
    hosts = _ice_hosts(ice_hosts, loopback)
    url = signaling_url or os.environ.get("DUET_SIGNALING_URL")
    state: dict[str, Any] = {}
    # the DTLS certificate, made before registering; the owner's ID is its identity's
    certificate = new_certificate()
    owner_id = owner.identity.id
    token = local.new_token() if loopback else ""

    async def register() -> str:
        nonlocal url
        if url is None:
            from signaling_server import start_embedded_server

            state["server"], url = await start_embedded_server("127.0.0.1", 0)
        state["signaling"] = client = await SignalingClient.connect(url)
        return await client.register()

    session_id = run(
        register(), timeout_secs=CONNECT_TIMEOUT_SECS, what="registering with the signaling server"
    )
    owner._embedded_server = state.get("server")
    if "server" in state:
        _say(f"♫♫♫ > started a signaling server for this session at {url}")
    _say(f"♫♫♫ > duet session ID: {session_id}")
    _say(f"♫♫♫ > your owner ID: {owner_id}")
    _say(f"♫♫♫ > datasets scientists open are read from {owner.settings.data_root}")
    try:
        if loopback:
            record = local.LoopbackRecord(session_id, str(url), os.getpid(), owner_id, token)
            local.write_loopback(record)
            _say("♫♫♫ > on this machine, the scientist runs: duet = sy.join_duet(loopback=True)")
        else:
            _say(
                f'♫♫♫ > ask the scientist to run: duet = sy.join_duet("{session_id}", '
                f'signaling_url="{url}", owner_id="{owner_id}")'
            )
        _say("♫♫♫ > waiting for the scientist to join...")
        if on_ready is not None:
            on_ready(session_id, str(url))
        offer = run(
            state["signaling"].wait_offer(timeout_secs=timeout_secs),
            timeout_secs=timeout_secs + 10,
            what="waiting for the scientist",
        )
        scientist_fingerprint = check_peer_sdp(offer, "the scientist's offer")
        if loopback:
            local.check_proof(offer, token, session_id, scientist_fingerprint)

        async def answer() -> ScientistLink:
            peer, answer_sdp = await answer_offer(
                offer, ice_servers=ice_servers, ice_hosts=hosts, certificate=certificate
            )
            answer_sdp = sign_answer(
                answer_sdp, owner.identity, session_id, certificate_fingerprint(certificate)
            )
            await state["signaling"].send_answer(answer_sdp)
            channel = await peer.channel(CONNECT_TIMEOUT_SECS)  # checks the presented certificate
            fingerprints = (certificate_fingerprint(certificate), scientist_fingerprint)
            return await owner.handshake(channel, fingerprints, timeout_secs=CONNECT_TIMEOUT_SECS)

        link = run(
            answer(), timeout_secs=CONNECT_TIMEOUT_SECS * 2, what="connecting to the scientist"
        )
        # decided here, on the caller's thread: a person may be asked for the client ID
        refusal = owner.decide(link, confirm=confirm, preapproved=loopback)
        if refusal is not None:
            run(owner.refuse(link, refusal), timeout_secs=10, what="refusing the scientist")
            raise HandshakeError(f"refused scientist {link.id}: {refusal}")
        run(owner.accept(link), timeout_secs=CONNECT_TIMEOUT_SECS, what="accepting the scientist")
    except BaseException:
        _cleanup(state, owner)
        raise
    finally:
        if loopback:
            local.remove_loopback(session_id)
        run(state["signaling"].close(), timeout_secs=10, what="closing the signaling connection")
    _say(f"♫♫♫ > connected to scientist {link.id}")
    return owner


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
    identity proved, then decided as ``OwnerSession.decide`` says, off the loop.
    """
    hosts = _ice_hosts(ice_hosts, loopback)
    url = signaling_url or os.environ.get("DUET_SIGNALING_URL")
    certificate = new_certificate()
    token = local.new_token() if loopback else ""
    state: dict[str, Any] = {}
    first = threading.Event()

    async def register() -> str:
        nonlocal url
        if url is None:
            from signaling_server import start_embedded_server

            state["server"], url = await start_embedded_server("127.0.0.1", 0)
        state["signaling"] = client = await SignalingClient.connect(url)
        return await client.register(max_peers=None, open_session=True)

    session_id = run(
        register(), timeout_secs=CONNECT_TIMEOUT_SECS, what="registering with the signaling server"
    )
    owner._embedded_server = state.get("server")
    signaling: SignalingClient = state["signaling"]

    async def admit(peer_id: str, offer: str) -> None:
        try:
            scientist_fingerprint = check_peer_sdp(offer, "the scientist's offer")
            if loopback:
                local.check_proof(offer, token, session_id, scientist_fingerprint)
        except DuetError as exc:
            log.warning("refused an offer: %s", exc)
            await signaling.decline(peer_id, str(exc))
            return
        try:
            peer, answer_sdp = await answer_offer(
                offer, ice_servers=ice_servers, ice_hosts=hosts, certificate=certificate
            )
            answer_sdp = sign_answer(
                answer_sdp, owner.identity, session_id, certificate_fingerprint(certificate)
            )
            await signaling.send_answer(answer_sdp, peer=peer_id)
            channel = await peer.channel(CONNECT_TIMEOUT_SECS)
            fingerprints = (certificate_fingerprint(certificate), scientist_fingerprint)
            link = await owner.admit(
                channel,
                fingerprints=fingerprints,
                confirm=confirm,
                preapproved=loopback,
                timeout_secs=CONNECT_TIMEOUT_SECS,
            )
        except DuetError as exc:
            log.warning("a scientist could not join: %s", exc)
            return
        _say(f"♫♫♫ > connected to scientist {link.id} {link.peer.name}".rstrip())
        first.set()

    async def accept() -> None:
        joining: set[asyncio.Task[None]] = set()
        try:
            async for peer_id, offer in signaling.offers(timeout_secs=None):
                task = asyncio.ensure_future(admit(peer_id, offer))
                joining.add(task)
                task.add_done_callback(joining.discard)
        except DuetError as exc:
            log.warning("the owner's signaling session ended: %s", exc)
        finally:
            for task in joining:
                task.cancel()
            with contextlib.suppress(Exception):
                await signaling.close()

    async def start() -> None:
        owner._accepting = asyncio.ensure_future(accept())

    _say(f"♫♫♫ > duet session ID: {session_id}")
    _say(f"♫♫♫ > your owner ID: {owner.identity.id}")
    _say(f"♫♫♫ > datasets scientists open are read from {owner.settings.data_root}")
    if "server" in state:
        _say(f"♫♫♫ > started a signaling server for this session at {url}")
    if loopback:
        record = local.LoopbackRecord(session_id, str(url), os.getpid(), owner.identity.id, token)
        local.write_loopback(record)
        _say("♫♫♫ > on this machine, scientists run: duet = sy.join_duet(loopback=True)")
    else:
        _say(
            f'♫♫♫ > scientists run: duet = sy.join_duet("{session_id}", signaling_url="{url}", '
            f'owner_id="{owner.identity.id}")'
        )
    _say(f"♫♫♫ > serving up to {owner.max_scientists} scientists at once until closed")
    run(start(), timeout_secs=10, what="starting to admit scientists")
    if on_ready is not None:
        on_ready(session_id, str(url))
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


def _cleanup(state: dict[str, Any], owner: OwnerSession) -> None:
    server = state.get("server")
    if server is not None:
        run(server.close(), timeout_secs=10, what="stopping the signaling server")
        owner._embedded_server = None


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
    return _alias("signaling_url", url, "network_url", network_url or None)  # type: ignore[no-any-return]


def _find_owner(
    session_id: str | None, url: str | None, owner_id: str | None, loopback: bool
) -> tuple[local.LoopbackRecord | None, str, str | None, str]:
    """Where to join: (loopback record, session ID, owner ID, signaling URL)."""
    record = None
    if loopback:
        path = local.loopback_file()
        if not os.path.lexists(path):
            raise _NoOwnerYet(
                "no owner is waiting on this machine: run launch_duet(loopback=True) first"
            )
        try:
            record = local.read_loopback()
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
        # an unknown session on loopback: that owner's session ended, a new one is on its way
        return exc.server_code == "server_full" or (
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
) -> tuple[local.LoopbackRecord | None, str, str | None, str, SignalingClient]:
    """Find the owner's session and join it on the signaling server, waiting up to
    ``wait_secs`` (with a countdown) while the owner or the server is not there yet."""
    countdown: Countdown | None = None
    delay = _FIRST_RETRY_SECS
    found: tuple[local.LoopbackRecord | None, str, str | None, str] | None = None
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
            f"(the loopback file {local.loopback_file()} never appeared); start the owner, "
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
    name of a key in the duet home ("default").

    Started before the owner, it waits up to ``wait_secs`` (90 s, as PySyft's loopback did)
    with a countdown on stderr: for the owner's loopback file with ``loopback=True``, for the
    signaling server to answer at its address otherwise (each attempt bounded, with a backoff
    between attempts of up to 2 s). An unknown session ID is not waited for: IDs are made by
    the signaling server when the owner registers, so a wait cannot make one known.
    ``wait_secs=0`` fails at once. PySyft's names: ``target_id`` is ``session_id``,
    ``network_url`` is ``signaling_url``.

    Raises SignalingError (unknown or expired ID, the owner refused), HandshakeError (the owner
    is not ``owner_id``, or refused you), UsageError (a malformed ``owner_id``, a loopback file
    someone else could have written, PySyft's and duet's names given different values),
    DuetTimeout (no owner within ``wait_secs``, naming the session and the signaling server;
    or no connection within ``timeout_secs``).
    """
    session_id = _alias("session_id", session_id, "target_id", target_id or None)
    signaling_url = _signaling_url(signaling_url, network_url, "join_duet")
    who = (
        identity
        if isinstance(identity, Identity)
        else Identity.load_or_create(identity or "default", name=name)
    )
    if name:
        who.name = name
    record, session_id, owner_id, _url, client = _reach_owner(
        session_id, signaling_url, owner_id=owner_id, loopback=loopback, wait_secs=wait_secs
    )
    hosts = _ice_hosts(ice_hosts, loopback)
    scientist = ScientistSession()
    state: dict[str, Any] = {"signaling": client}

    async def offer() -> None:
        peer, sdp = await create_offer(ice_servers=ice_servers, ice_hosts=hosts)
        state["peer"] = peer
        if record is not None:
            proof = local.loopback_proof(record.token, record.session_id, peer.fingerprint)
            sdp = local.with_proof(sdp, proof)
        await client.send_offer(sdp)

    try:
        run(offer(), timeout_secs=CONNECT_TIMEOUT_SECS, what="sending the offer to the owner")
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
