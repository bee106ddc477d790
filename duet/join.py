"""``join_duet``: the scientist reaches the owner's session and connects, peer to peer.

The scientist joins the owner's session on the signaling server with the session ID (or, on
loopback, reads it from the owner's private file), offers a WebRTC connection and shows its
client ID, derived from its DTLS certificate, for the owner to confirm. Given the owner's ID,
it refuses an answer not signed by that owner's key and, after the DTLS handshake, a peer that
did not present the certificate the answer named: a signaling server that swapped or spliced
the offer or the answer is caught, whatever the SDP says. Then the protocol handshake runs over
the open data channel, and only then is "connected" printed. Started before the owner, it
waits for it, with a countdown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from . import tracebacks
from .display import Countdown
from .errors import DuetError, DuetTimeout, HandshakeError, SignalingError, UsageError
from .identity import Identity
from .pairing import loopback as loopback_pairing
from .pairing.arguments import pysyft_alias, signaling_url_argument
from .pairing.doorway import CONNECT_TIMEOUT_SECS, ice_hosts_for
from .pairing.owner_proof import check_answer
from .pairing.signaling import (
    SignalingClient,
    SignalingServerError,
    SignalingUnreachable,
)
from .runtime import run
from .sessions.scientist import ScientistSession, connect_scientist
from .transport.identity import client_id_from_fingerprint, normalize_id, parse_id
from .transport.sdp import check_peer_sdp
from .transport.webrtc import WEBRTC, OfferingPeer

#: how long join_duet waits for an owner that has not launched yet (PySyft's loopback: 90 s)
JOIN_WAIT_SECS = 90.0
_FIRST_RETRY_SECS = 0.25
_MAX_RETRY_SECS = 2.0
#: refusals of a join that a later attempt may not get (a place frees up)
_TRANSIENT = ("session_busy", "server_full")


#: where to join: (the owner's loopback record, session ID, owner ID, signaling URL)
_Found = tuple[loopback_pairing.LoopbackRecord | None, str, str | None, str]


def _say(text: str) -> None:
    print(text, flush=True)


class _NoOwnerYet(UsageError):
    """join_duet(loopback=True) found no owner's file (yet): worth waiting for."""


def _find_owner(
    session_id: str | None, url: str | None, owner_id: str | None, loopback: bool
) -> _Found:
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
    found: _Found | None = None
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


def _awaited(found: _Found | None, loopback: bool) -> str:
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
    found: _Found | None, loopback: bool, wait_secs: float, last: DuetError
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
    session_id = pysyft_alias("session_id", session_id, "target_id", target_id or None)
    signaling_url = signaling_url_argument(signaling_url, network_url, "join_duet")
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
    state = _Joining()

    async def make_offer() -> str:
        # made before joining: once joined, the offer follows at once (the server gives a
        # join that sends none only --join-timeout before it frees its place)
        state.peer, sdp = await WEBRTC.offer(ice_servers=ice_servers, ice_hosts=hosts)
        return sdp

    try:
        sdp = run(make_offer(), timeout_secs=CONNECT_TIMEOUT_SECS, what="making the offer")
        record, session_id, owner_id, _url, client = _reach_owner(
            session_id, signaling_url, owner_id=owner_id, loopback=loopback, wait_secs=wait_secs
        )
        state.signaling = client
        if record is not None:
            proof = loopback_pairing.loopback_proof(
                record.token, record.session_id, state.offering().fingerprint
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
            answer_sdp = await state.joined().wait_answer(timeout_secs=timeout_secs)
        except SignalingError as exc:
            raise SignalingError(f"the owner did not answer: {exc}") from exc
        peer = state.offering()
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
    run(state.joined().close(), timeout_secs=10, what="closing the signaling connection")
    checked = f" {owner_id} (it proved its identity)" if owner_id else ""
    _say(f"♫♫♫ > connected to the data owner{checked}")
    return scientist


@dataclass
class _Joining:
    """What a join has opened so far, to close if it fails."""

    peer: OfferingPeer | None = None
    signaling: SignalingClient | None = None

    def offering(self) -> OfferingPeer:
        assert self.peer is not None, "the offer is made first"
        return self.peer

    def joined(self) -> SignalingClient:
        assert self.signaling is not None, "the session is joined before the offer is sent"
        return self.signaling


def _close_all(state: _Joining) -> None:
    """Close the scientist's peer connection and signaling connection, whichever exist."""
    if state.peer is not None:
        run(state.peer.close(), timeout_secs=10, what="closing the WebRTC connection")
    if state.signaling is not None:
        run(state.signaling.close(), timeout_secs=10, what="closing the signaling connection")


__all__ = ["JOIN_WAIT_SECS", "join_duet"]
