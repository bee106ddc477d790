"""Pairing: each side is sure who is at the other end, whatever the signaling server does.

The attacks come from the issue: an offer spliced so that duet and aiortc read different
fingerprints from it, a signaling server answering in the owner's place, and another local
process joining a loopback session. The process tests run the attacker as a real hostile
signaling server (``peers/hostile_signaling.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import duet as sy
from duet.errors import HandshakeError, ProtocolError, UsageError
from duet.pairing import loopback as loopback_pairing
from duet.transport import webrtc
from duet.transport.channel import ChannelClosed
from duet.transport.identity import certificate_fingerprint, new_certificate
from duet.transport.webrtc import answer_offer, client_id_from_fingerprint, create_offer

from .peers.hostile_signaling import last_section_only, splice
from .processes import PEER, Process

HOSTS = ["127.0.0.1"]
WAIT = 30.0
HOSTILE = Path(__file__).parent / "peers" / "hostile_signaling.py"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 4 * WAIT))


def reader_fooled_by_other_line_breaks(sdp: str, what: str) -> str:
    """How duet used to read a fingerprint: only lines that follow a ``\\n`` count."""
    found = re.findall(r"^a=fingerprint:sha-256\s+([0-9A-Fa-f:]+)\s*$", sdp, re.MULTILINE)
    assert len(set(found)) == 1, found
    return str(found[0]).upper()


# --------------------------------------------------------------------------- spliced offer


def test_owner_refuses_a_spliced_offer_before_connecting() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        attacker, attacker_offer = await create_offer(ice_hosts=HOSTS)
        try:
            with pytest.raises(ProtocolError, match=r"scientist's offer has a '\\r' line break"):
                await answer_offer(splice(offer, attacker_offer), ice_hosts=HOSTS)
        finally:
            await scientist.close()
            await attacker.close()

    run(main())


def test_owner_refuses_a_peer_presenting_another_certificate_than_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even an SDP reader the splice fools (the old one) cannot make the owner talk to the
    attacker: the certificate presented in the DTLS handshake decides."""
    monkeypatch.setattr(webrtc, "check_peer_sdp", reader_fooled_by_other_line_breaks)

    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        attacker, attacker_offer = await create_offer(ice_hosts=HOSTS)
        spliced = splice(offer, attacker_offer)
        owner, answer = await answer_offer(
            spliced, ice_hosts=HOSTS, expected_peer_id=scientist.client_id
        )
        assert owner.peer_client_id == scientist.client_id  # the reader was fooled
        attacker_channel, refused = await asyncio.gather(
            attacker.accept_answer(last_section_only(answer), timeout_secs=WAIT),
            owner.channel(WAIT),
            return_exceptions=True,
        )
        try:
            assert isinstance(refused, HandshakeError), refused
            assert (
                f"presented the certificate of {attacker.client_id}, not of "
                f"{scientist.client_id} (the client ID that was confirmed)" in str(refused)
            )
            if isinstance(attacker_channel, webrtc.WebRTCChannel):
                with pytest.raises(ChannelClosed):  # the owner sent it nothing at all
                    await asyncio.wait_for(attacker_channel.recv(), WAIT)
        finally:
            await scientist.close()
            await attacker.close()
            await owner.close()

    run(main())


LINE_BREAKS = ["\r", "\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=[repr(c) for c in LINE_BREAKS])
def test_an_sdp_line_break_other_than_crlf_is_refused(line_break: str) -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        await scientist.close()
        altered = offer.replace("\r\na=setup:", f"\r\na=x-note:1{line_break}a=setup:")
        with pytest.raises(ProtocolError, match="CRLF only"):
            await answer_offer(altered, ice_hosts=HOSTS)

    run(main())


def test_an_offer_with_two_data_channel_sections_is_refused() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        attacker, attacker_offer = await create_offer(ice_hosts=HOSTS)
        await scientist.close()
        await attacker.close()
        two = offer + "m=" + attacker_offer.partition("m=")[2]
        with pytest.raises(ProtocolError, match="has 2 media sections"):
            await answer_offer(two, ice_hosts=HOSTS)

    run(main())


def test_fingerprints_are_read_at_every_level_and_in_any_case() -> None:
    """aiortc checks session-level and SHA-256 (upper-case) fingerprints too: so do we."""

    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        await scientist.close()
        other = ":".join(["AB"] * 32)
        session_level = offer.replace("\r\nm=", f"\r\na=fingerprint:sha-256 {other}\r\nm=", 1)
        upper_case = offer.replace(
            "a=fingerprint:sha-384", f"a=fingerprint:SHA-256 {other}\r\na=fingerprint:sha-384"
        )
        for altered in (session_level, upper_case):
            with pytest.raises(ProtocolError, match="several different sha-256"):
                await answer_offer(altered, ice_hosts=HOSTS)

    run(main())


# --------------------------------------------------------------------------- the owner's ID


def test_scientist_reaches_the_owner_whose_id_it_was_given() -> None:
    async def main() -> None:
        certificate = new_certificate()
        owner_id = client_id_from_fingerprint(certificate_fingerprint(certificate))
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        owner, answer = await answer_offer(offer, ice_hosts=HOSTS, certificate=certificate)
        a, b = await asyncio.gather(
            scientist.accept_answer(answer, timeout_secs=WAIT, expected_peer_id=owner_id),
            owner.channel(WAIT),
        )
        try:
            assert scientist.peer_fingerprint == certificate_fingerprint(certificate)
            await a.send(b"hello owner")
            assert await asyncio.wait_for(b.recv(), WAIT) == b"hello owner"
        finally:
            await a.close()
            await b.close()

    run(main())


def test_scientist_refuses_an_answer_from_anyone_but_the_owner() -> None:
    async def main() -> None:
        owner_id = client_id_from_fingerprint(certificate_fingerprint(new_certificate()))
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        impostor, answer = await answer_offer(offer, ice_hosts=HOSTS)
        try:
            with pytest.raises(HandshakeError) as refused:
                await scientist.accept_answer(answer, timeout_secs=WAIT, expected_peer_id=owner_id)
            assert f"not from the owner {owner_id} (the owner_id you gave join_duet)" in str(
                refused.value
            )
        finally:
            await impostor.close()
            await scientist.close()

    run(main())


def test_scientist_checks_the_certificate_presented_not_only_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_owner = new_certificate()
    owner_id = client_id_from_fingerprint(certificate_fingerprint(real_owner))
    # an SDP reader fooled into seeing the real owner's fingerprint in the impostor's answer
    monkeypatch.setattr(
        webrtc, "check_peer_sdp", lambda sdp, what: certificate_fingerprint(real_owner)
    )

    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        impostor, answer = await answer_offer(offer, ice_hosts=HOSTS)
        refused, impostor_channel = await asyncio.gather(
            scientist.accept_answer(answer, timeout_secs=WAIT, expected_peer_id=owner_id),
            impostor.channel(WAIT),
            return_exceptions=True,
        )
        try:
            assert isinstance(refused, HandshakeError), refused
            assert f"not of {owner_id} (the owner_id you gave join_duet)" in str(refused)
            if isinstance(impostor_channel, webrtc.WebRTCChannel):
                with pytest.raises(ChannelClosed):  # the scientist sent it nothing
                    await asyncio.wait_for(impostor_channel.recv(), WAIT)
        finally:
            await scientist.close()
            await impostor.close()

    run(main())


def test_join_duet_refuses_a_malformed_owner_id_before_connecting() -> None:
    with pytest.raises(UsageError, match="is not an ID of 16 hex digits"):
        sy.join_duet("0" * 32, "ws://127.0.0.1:9", owner_id="the owner")


def test_launch_prints_the_owner_id_that_join_checks(capsys: pytest.CaptureFixture[str]) -> None:
    found: dict[str, Any] = {}
    ready = threading.Event()

    def launch() -> None:
        try:
            found["owner"] = sy.launch_duet(confirm=False, on_ready=lambda s, u: ready.set())
        finally:
            ready.set()

    thread = threading.Thread(target=launch)
    thread.start()
    assert ready.wait(60)
    line = re.search(
        r'sy\.join_duet\("([0-9a-f]{32})", signaling_url="(ws://[^"]+)", owner_id="([0-9a-f-]{19})"\)',
        capsys.readouterr().out,
    )
    assert line, "launch_duet printed no join line with an owner_id"
    scientist = sy.join_duet(line.group(1), line.group(2), owner_id=line.group(3))
    thread.join(60)
    try:
        assert f"connected to the data owner {line.group(3)} (it proved its identity)" in (
            capsys.readouterr().out
        )
    finally:
        scientist.close()
        found["owner"].close()


def test_a_duet_confirms_on_the_callers_thread_and_then_takes_no_one_else() -> None:
    # launch_duet is a node of one: the stranger's confirmation runs on the thread that called
    # it (a notebook's prompt works only there), and once one scientist is in, the session ends
    found: dict[str, Any] = {}
    ready = threading.Event()

    def confirm(client_id: str) -> bool:
        found.setdefault("asked_on", []).append(threading.current_thread().name)
        return True

    def on_ready(session_id: str, url: str) -> None:
        found["session"] = (session_id, url)
        ready.set()

    def launch() -> None:
        try:
            found["owner"] = sy.launch_duet(confirm=confirm, on_ready=on_ready, review=False)
        finally:
            ready.set()

    thread = threading.Thread(target=launch, name="the-owners-cell")
    thread.start()
    assert ready.wait(60) and "session" in found
    session_id, url = found["session"]
    scientist = sy.join_duet(session_id, url, name="first")
    thread.join(60)
    try:
        assert found["asked_on"] == ["the-owners-cell"]
        assert len(found["owner"].scientists) == 1
        with pytest.raises(sy.DuetError) as refused:
            sy.join_duet(session_id, url, name="second", wait_secs=0, timeout_secs=30)
        assert "is unknown or expired" in str(refused.value)
        assert found["asked_on"] == ["the-owners-cell"]  # no one was asked about the second
        assert len(found["owner"].scientists) == 1
    finally:
        scientist.close()
        found["owner"].close()


# --------------------------------------------------------------------------- loopback


@pytest.fixture
def loopback_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "loopback.json"
    monkeypatch.setenv("DUET_LOOPBACK_FILE", str(path))
    return path


def test_the_loopback_file_is_private_and_joining_with_it_works(loopback_path: Path) -> None:
    found: dict[str, Any] = {}
    ready = threading.Event()

    def on_ready(session_id: str, url: str) -> None:
        info = loopback_path.stat()
        found["mode"], found["uid"] = stat.S_IMODE(info.st_mode), info.st_uid
        found["record"] = json.loads(loopback_path.read_text())
        ready.set()

    def launch() -> None:
        try:
            found["owner"] = sy.launch_duet(loopback=True, on_ready=on_ready)
        finally:
            ready.set()

    thread = threading.Thread(target=launch)
    thread.start()
    assert ready.wait(60)
    scientist = sy.join_duet(loopback=True)
    thread.join(60)
    try:
        assert found["mode"] == 0o600 and found["uid"] == os.getuid()
        assert len(found["record"]["token"]) == 64
        assert not loopback_path.exists()
    finally:
        scientist.close()
        found["owner"].close()


def _record(**changes: Any) -> dict[str, Any]:
    fields = {
        "session_id": "0" * 32,
        "signaling_url": "ws://127.0.0.1:9",
        "pid": os.getpid(),  # alive
        "owner_id": "0000-0000-0000-0000",
        "token": "0" * 64,
    }
    return {**fields, **changes}


def test_a_loopback_file_others_could_read_is_refused(loopback_path: Path) -> None:
    loopback_path.write_text(json.dumps(_record()))
    loopback_path.chmod(0o644)
    with pytest.raises(UsageError, match="its mode is 0644, not 0600"):
        sy.join_duet(loopback=True)


def test_a_symlinked_loopback_file_is_refused(loopback_path: Path, tmp_path: Path) -> None:
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(_record()))
    planted.chmod(0o600)
    loopback_path.symlink_to(planted)
    with pytest.raises(UsageError, match="a symbolic link is refused"):
        sy.join_duet(loopback=True)


def test_a_loopback_proof_is_bound_to_the_token_session_and_certificate() -> None:
    fingerprint = ":".join(["AB"] * 32)
    sdp = "v=0\r\ns=-\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    token, session_id = loopback_pairing.new_token(), "1" * 32
    proved = loopback_pairing.with_proof(
        sdp, loopback_pairing.loopback_proof(token, session_id, fingerprint)
    )
    loopback_pairing.check_proof(proved, token, session_id, fingerprint)
    for wrong in (
        (loopback_pairing.new_token(), session_id, fingerprint),
        (token, "2" * 32, fingerprint),
        (token, session_id, ":".join(["AC"] * 32)),
    ):
        with pytest.raises(HandshakeError, match="without proving it read the loopback file"):
            loopback_pairing.check_proof(proved, *wrong)
    with pytest.raises(HandshakeError):
        loopback_pairing.check_proof(sdp, token, session_id, fingerprint)


# --------------------------------------------------------------------------- real processes


def _send_if_alive(process: Process, text: str) -> None:
    with contextlib.suppress(BrokenPipeError):  # it may have refused and exited already
        process.send(text)


def test_a_signaling_server_splicing_the_offer_is_refused_across_processes() -> None:
    hostile = Process(str(HOSTILE), "splice", stdin=False)
    started = [hostile]
    try:
        url = hostile.line(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        owner = Process(str(PEER), "owner", url)
        started.append(owner)
        session_id = owner.event("event", "ready")["session_id"]
        scientist = Process(str(PEER), "scientist", session_id, url)
        started.append(scientist)
        scientist.line(r"duet client ID: ([0-9a-f-]+)")
        hostile.event("event", "relayed-offer")
        # refused before anything is answered, and the owner waits on for its scientist
        owner.line(r"refused an offer: .*scientist's offer has a '\\r' line break")
        assert owner.popen.poll() is None
        owner.kill()
        left = hostile.event("event", "owner-left")
        assert left["attacker_connected"] is False and left["attacker_frames"] == 0
        scientist.kill()  # still waiting for an answer the hostile server will never relay
        scientist.exit_code()
        assert not any('"event": "connected"' in line for line in scientist.output)
    finally:
        for process in reversed(started):
            process.stop()


def test_a_fake_owner_is_refused_by_the_scientist_across_processes() -> None:
    hostile = Process(str(HOSTILE), "fake-owner", stdin=False)
    started = [hostile]
    try:
        url = hostile.line(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        owner = Process(str(PEER), "owner", url)
        started.append(owner)
        owner_id = owner.line(r'owner_id="([0-9a-f-]+)"').group(1)
        session_id = owner.event("event", "ready")["session_id"]
        scientist = Process(str(PEER), "scientist", session_id, url, owner_id)
        started.append(scientist)
        hostile.event("event", "answered-as-owner")
        assert scientist.exit_code() != 0
        errors = "".join(scientist.errors)
        assert "HandshakeError" in errors
        assert f"not from the owner {owner_id} (the owner_id you gave join_duet)" in errors
        left = hostile.event("event", "scientist-left")
        assert left["attacker_connected"] is False and left["attacker_frames"] == 0
    finally:
        for process in reversed(started):
            process.stop()


def test_another_local_process_cannot_join_a_loopback_session(tmp_path: Path) -> None:
    from .processes import start_signaling_server

    server, url = start_signaling_server()
    loopback_path = tmp_path / "loopback.json"
    env = {"DUET_LOOPBACK_FILE": str(loopback_path)}
    owner = Process(str(PEER), "owner", url, "--loopback", env=env)
    started = [server, owner]
    try:
        session_id = owner.event("event", "ready")["session_id"]
        assert stat.S_IMODE(loopback_path.stat().st_mode) == 0o600
        # it knows the session ID (the owner printed it) but could not read the file
        intruder = Process(str(PEER), "scientist", session_id, url)
        started.append(intruder)
        assert intruder.exit_code() != 0
        assert "[declined]" in "".join(intruder.errors)
        assert not any('"event": "connected"' in line for line in intruder.output)
        owner.line(r"refused an offer: .*without proving it read the loopback file")
        # the owner waits on for the real scientist (tests/test_admission_processes.py)
        assert owner.popen.poll() is None and loopback_path.exists()
    finally:
        for process in reversed(started):
            process.stop()
