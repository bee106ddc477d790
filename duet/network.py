"""``launch_duet`` and ``join_duet``: two processes, peer to peer over a WebRTC data channel.

The owner registers with a signaling server and gets a session ID; the scientist joins with it,
offers a WebRTC connection and shows a client ID derived from its DTLS certificate fingerprint;
the owner checks that ID against the offer it received (so a signaling server that swapped the
offer cannot pass), answers, and both sides run the protocol handshake over the open data
channel. Only then is "connected" printed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import HandshakeError, SignalingError, UsageError
from .owner.store import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS
from .runtime import run
from .session import OwnerSession, ScientistSession, connect_sessions
from .transport.signaling import SignalingClient
from .transport.webrtc import answer_offer, create_offer

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_SECS = 60.0
LOOPBACK_HOSTS = ["127.0.0.1"]


def _say(text: str) -> None:
    print(text, flush=True)


def loopback_file() -> Path:
    """Where an owner started with ``loopback=True`` leaves its address for a local scientist."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(
        os.environ.get("DUET_LOOPBACK_FILE")
        or Path(tempfile.gettempdir()) / f"duet-loopback-{uid}.json"
    )


def _write_loopback(record: dict[str, Any]) -> None:
    # written whole, then renamed into place: a scientist never reads half a file
    path = loopback_file()
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record))
    os.replace(partial, path)


def _read_loopback() -> dict[str, Any]:
    path = loopback_file()
    try:
        record = json.loads(path.read_text())
        pid = int(record["pid"])
        session_id, url = str(record["session_id"]), str(record["signaling_url"])
    except FileNotFoundError:
        raise UsageError(
            "no owner is waiting on this machine: run launch_duet(loopback=True) first"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"the loopback file {path} is unreadable ({exc}); relaunch the owner"
        ) from exc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        raise UsageError(
            "no owner is waiting on this machine (the last one has exited): run launch_duet(loopback=True)"
        ) from None
    except PermissionError:
        pass  # alive, another user's process
    return {"session_id": session_id, "signaling_url": url}


def _remove_loopback(session_id: str) -> None:
    path = loopback_file()
    try:
        if json.loads(path.read_text()).get("session_id") == session_id:
            path.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass  # gone already, or another owner's by now


def _ice_hosts(ice_hosts: Sequence[str] | None, loopback: bool) -> Sequence[str] | None:
    if ice_hosts is not None:
        return ice_hosts
    return LOOPBACK_HOSTS if loopback else None


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
    redact_errors: bool = False,
    data_root: str | Path | None = None,
    on_ready: Callable[[str, str], None] | None = None,
) -> OwnerSession:
    """Start a duet as the data owner and wait until a scientist has joined.

    Prints the session ID and the exact line the scientist runs. With ``confirm=True`` you are
    asked for the client ID the scientist was shown; a wrong ID refuses the connection
    (``confirm`` may also be the expected ID itself, or a function given the ID that returns
    True to accept). ``on_ready(session_id, signaling_url)`` is called once the session is
    registered, for handing the ID over another way. ``loopback=True``: owner and scientist on this machine find each other
    with no ID to copy and no prompt. With no ``signaling_url`` (and no ``DUET_SIGNALING_URL``),
    a signaling server is started on 127.0.0.1 for this session.

    Raises SignalingError, HandshakeError, DuetTimeout (no scientist within ``timeout_secs``).
    """
    owner = OwnerSession(
        max_bytes=max_bytes,
        max_objects=max_objects,
        redact_errors=redact_errors,
        data_root=data_root,
    )
    hosts = _ice_hosts(ice_hosts, loopback)
    url = signaling_url or os.environ.get("DUET_SIGNALING_URL")
    state: dict[str, Any] = {}

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
    if loopback:
        _write_loopback({"session_id": session_id, "signaling_url": url, "pid": os.getpid()})

        _say("♫♫♫ > on this machine, the scientist runs: duet = sy.join_duet(loopback=True)")
    else:
        _say(
            f'♫♫♫ > ask the scientist to run: duet = sy.join_duet("{session_id}", signaling_url="{url}")'
        )
    _say("♫♫♫ > waiting for the scientist to join...")
    if on_ready is not None:
        on_ready(session_id, str(url))

    try:
        offer = run(
            state["signaling"].wait_offer(timeout_secs=timeout_secs),
            timeout_secs=timeout_secs + 10,
            what="waiting for the scientist",
        )
        from .transport.ice import client_id_from_fingerprint, dtls_fingerprint

        client_id = client_id_from_fingerprint(dtls_fingerprint(offer))
        if not loopback and confirm is not False:
            _confirm(confirm, client_id)

        async def answer() -> None:
            peer, answer_sdp = await answer_offer(offer, ice_servers=ice_servers, ice_hosts=hosts)
            await state["signaling"].send_answer(answer_sdp)
            channel = await peer.channel(CONNECT_TIMEOUT_SECS)
            await connect_sessions(
                owner, channel, timeout_secs=CONNECT_TIMEOUT_SECS, client_id=client_id
            )

        run(answer(), timeout_secs=CONNECT_TIMEOUT_SECS * 2, what="connecting to the scientist")
    except BaseException:
        _cleanup(state, owner)
        raise
    finally:
        if loopback:
            _remove_loopback(session_id)
        run(state["signaling"].close(), timeout_secs=10, what="closing the signaling connection")
    _say(f"♫♫♫ > connected to scientist {client_id}")
    return owner


def _cleanup(state: dict[str, Any], owner: OwnerSession) -> None:
    server = state.get("server")
    if server is not None:
        run(server.close(), timeout_secs=10, what="stopping the signaling server")
        owner._embedded_server = None


def _confirm(confirm: bool | str | Callable[[str], bool], client_id: str) -> None:
    if callable(confirm):
        ok = bool(confirm(client_id))
        given = "(checked by your function)"
    else:
        if confirm is True:
            if not sys.stdin or sys.stdin.closed:
                raise UsageError(
                    "confirm=True needs someone to type the client ID; pass confirm='<id>'"
                )
            given = input("♫♫♫ > enter the client ID the scientist was shown: ")
        else:
            given = str(confirm)
        ok = _normalize_id(given) == _normalize_id(client_id)
    if not ok:
        raise HandshakeError(
            f"client ID {given!r} does not match the scientist's connection offer; refusing the "
            "connection (someone may have swapped the offer, or the ID was mistyped)"
        )


def _normalize_id(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def join_duet(
    session_id: str | None = None,
    signaling_url: str | None = None,
    *,
    loopback: bool = False,
    ice_servers: Sequence[str] | None = None,
    ice_hosts: Sequence[str] | None = None,
    timeout_secs: float = 600.0,
) -> ScientistSession:
    """Join a duet as the data scientist; returns the connected session.

    Prints your client ID: tell it to the owner, who types it to confirm you. ``loopback=True``
    joins the owner started with ``launch_duet(loopback=True)`` on this machine.

    Raises SignalingError (unknown or expired ID, the owner refused), HandshakeError, DuetTimeout.
    """
    if loopback and session_id is None:
        found = _read_loopback()
        session_id, signaling_url = found["session_id"], signaling_url or found["signaling_url"]
    if session_id is None:
        raise UsageError("join_duet needs the session ID the owner was given")
    url = signaling_url or os.environ.get("DUET_SIGNALING_URL")
    if url is None:
        raise UsageError(
            "no signaling server given: pass the signaling_url the owner's launch_duet printed "
            "(or set DUET_SIGNALING_URL)"
        )
    hosts = _ice_hosts(ice_hosts, loopback)
    scientist = ScientistSession()
    state: dict[str, Any] = {}

    async def offer() -> str:
        state["peer"], sdp = await create_offer(ice_servers=ice_servers, ice_hosts=hosts)
        state["signaling"] = client = await SignalingClient.connect(url)
        await client.join(session_id)
        await client.send_offer(sdp)
        return str(state["peer"].client_id)

    client_id = run(
        offer(), timeout_secs=CONNECT_TIMEOUT_SECS, what="joining through the signaling server"
    )
    _say(f"♫♫♫ > duet client ID: {client_id}")
    if not loopback:
        _say("♫♫♫ > tell the data owner this client ID; waiting for them to confirm...")

    async def connect() -> None:
        try:
            answer_sdp = await state["signaling"].wait_answer(timeout_secs=timeout_secs)
        except SignalingError as exc:
            raise SignalingError(f"the owner did not answer: {exc}") from exc
        channel = await state["peer"].accept_answer(answer_sdp, timeout_secs=CONNECT_TIMEOUT_SECS)
        await connect_sessions(
            scientist, channel, timeout_secs=CONNECT_TIMEOUT_SECS, client_id=client_id
        )

    try:
        run(
            connect(),
            timeout_secs=timeout_secs + CONNECT_TIMEOUT_SECS,
            what="connecting to the owner",
        )
    except BaseException:
        run(state["peer"].close(), timeout_secs=10, what="closing the WebRTC connection")
        raise
    finally:
        run(state["signaling"].close(), timeout_secs=10, what="closing the signaling connection")
    _say("♫♫♫ > connected to the data owner")
    return scientist


__all__ = ["join_duet", "launch_duet"]
