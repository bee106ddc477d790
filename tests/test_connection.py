"""Connections: the handshake, the heartbeat, closing, and the public API's shape."""

from __future__ import annotations

import asyncio

import pytest
import torch

import duet as sy
from duet.connection import Connection
from duet.protocol.messages import Hello, pack
from duet.runtime import run
from duet.sessions.scientist import connect_scientist
from duet.transport.channel import Channel, ChannelClosed
from duet.transport.memory import memory_pair


class Blackhole(Channel):
    """Delivers until ``silence()``; then swallows everything, like a peer that froze."""

    def __init__(self, inner: Channel):
        self.inner = inner
        self.silent = False

    def silence(self) -> None:
        self.silent = True

    async def send(self, frame: bytes) -> None:
        if not self.silent:
            await self.inner.send(frame)

    async def recv(self) -> bytes:
        while True:
            frame = await self.inner.recv()
            if not self.silent:
                return frame

    async def close(self) -> None:
        await self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


class Recording(Channel):
    """Passes frames on, and notes each once it has been handed to the channel under it."""

    def __init__(self, inner: Channel):
        self.inner = inner
        self.sent: list[bytes] = []

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)
        self.sent.append(frame)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


def joined_through(wrap, **options):
    """An owner and a scientist joined in this process, the scientist's end of the in-memory
    channel wrapped by ``wrap``; ``options``: both connections' (heartbeat...)."""
    owner = sy.OwnerSession()
    scientist = sy.ScientistSession()
    owner.connection_options = options
    holder = {}

    async def join():
        a, b = memory_pair()
        holder["channel"] = wrap(b)
        await asyncio.gather(
            owner.admit(a, preapproved=True, timeout_secs=10),
            connect_scientist(
                scientist,
                holder["channel"],
                identity=sy.Identity.ephemeral(),
                timeout_secs=10,
                **options,
            ),  # fmt: skip
        )

    run(join(), timeout_secs=20, what="join")
    return owner, scientist, holder["channel"]


def test_a_frame_sent_until_sent_has_left_when_send_returns():
    """``send(..., until_sent=)`` from a thread lets the network loop send the frame before
    it returns (a caller busy in Python would otherwise hold the loop off)."""
    from duet.protocol.messages import Sync

    owner, scientist, recording = joined_through(Recording)
    try:
        for rid in range(1_000_000, 1_000_020):
            before = len(recording.sent)
            scientist.connection.send([Sync(rid=rid)], until_sent=10)
            assert len(recording.sent) == before + 1
            assert f'"rid":{rid}'.encode() in recording.sent[-1]
    finally:
        scientist.close()
        owner.close()


def test_a_silent_peer_is_declared_lost_and_blocking_calls_raise():
    owner, scientist, hole = joined_through(Blackhole, heartbeat_secs=0.1, dead_after_secs=0.5)
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="never")
    hole.silence()
    with pytest.raises(sy.ConnectionLost, match="no word from the peer"):
        handle.wait(30)
    with pytest.raises(sy.ConnectionLost):
        scientist.torch.ones(1)
    owner.wait_closed(timeout_secs=30)
    assert not owner.connected and len(owner.store) == 1


def test_handshake_mismatch_names_both_versions():
    async def attempt():
        a, b = memory_pair()
        connection = Connection(
            a, "scientist", on_messages=lambda m, b: None, on_lost=lambda e: None
        )
        other = Hello(duet_version="9.9.9", torch_version="0", allowlist="ffff", role="owner")
        await b.send(pack([other]))
        await connection.open(timeout_secs=10)

    with pytest.raises(sy.HandshakeError, match=r"9\.9\.9.*" + sy.__version__.replace(".", r"\.")):
        run(attempt(), timeout_secs=20, what="handshake")


def test_a_peer_that_never_says_hello_times_out_cleanly():
    async def attempt():
        a, _b = memory_pair()
        connection = Connection(a, "owner", on_messages=lambda m, b: None, on_lost=lambda e: None)
        await connection.open(timeout_secs=0.3)

    with pytest.raises(sy.HandshakeError, match="did not complete the handshake"):
        run(attempt(), timeout_secs=20, what="handshake")


def test_memory_channel_close_is_seen_by_the_peer():
    async def scenario():
        a, b = memory_pair()
        await a.send(b"x")
        await a.close()
        assert await b.recv() == b"x"
        with pytest.raises(ChannelClosed):
            await b.recv()
        with pytest.raises(ChannelClosed):
            await b.send(b"y")

    run(scenario(), timeout_secs=10, what="scenario")


def test_context_manager_closes_both_sides():
    owner, scientist = sy.duet_pair()
    with owner, scientist:
        assert owner.connected and scientist.connected
    assert not owner.connected and not scientist.connected


def test_public_api_is_curated_and_importing_only_adds_send_and_sharing_to_torch():
    exported = set(sy.__all__)
    assert {"launch_duet", "join_duet", "duet_pair", "Module", "DuetError", "RemoteError",
            "PermissionDenied", "ConnectionLost", "Pointer"} <= exported  # fmt: skip
    for name in sy.__all__:
        assert hasattr(sy, name), name
    for name in exported - {"__version__"}:
        obj = getattr(sy, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not sy.RequestWarning:
            assert issubclass(obj, sy.DuetError), name
    assert hasattr(torch.Tensor, "send") and hasattr(torch.nn.Module, "send")
    assert not hasattr(torch.Tensor, "get") and not hasattr(torch.Tensor, "request")
    assert torch.Tensor.send.__module__ == "duet.in_process"
    # PySyft 0.2's secret sharing: x.fix_precision() / x.fix_prec(), x.share(bob, alice)
    assert torch.Tensor.share.__module__ == "duet.smpc.shared"
    assert torch.Tensor.fix_precision.__module__ == "duet.smpc.fixed"


def test_a_process_that_exits_without_closing_says_goodbye(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "owner_exits.py"
    script.write_text(
        "import duet as sy, sys\n"
        "owner = sy.launch_duet(confirm=False, on_ready=lambda s, u: print('READY', s, u, flush=True))\n"
        "print('connected', flush=True)\n"
    )  # the script ends without owner.close()
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        for _ in range(20):  # a few banner lines come first
            line = owner.stdout.readline()
            if line.startswith("READY"):
                break
        _, session_id, url = line.split()
        scientist = sy.join_duet(session_id, url)
        owner.wait(60)
        scientist.wait_closed(timeout_secs=30)
        assert not scientist.connected
        assert "closed by the owner" in str(scientist.client.lost)
    finally:
        if owner.poll() is None:
            owner.kill()
        owner.wait(30)
        owner.stdout.close()


def test_over_webrtc_a_malformed_frame_taken_as_it_arrives_gets_an_error_and_the_owner_serves_on(
    monkeypatch,
):
    """Frames over WebRTC are taken inside the transport's callback (``deliver_to``): a
    hostile scientist's garbage there is answered with a protocol error, and nothing is lost."""
    import os

    from duet.transport.webrtc import answer_offer, create_offer

    monkeypatch.setenv("DUET_ICE_HOSTS", "127.0.0.1")
    hosts = ["127.0.0.1"]

    async def channels():
        scientist_peer, offer = await create_offer(ice_hosts=hosts)
        owner_peer, answer = await answer_offer(offer, ice_hosts=hosts, timeout_secs=30)
        return await asyncio.gather(
            scientist_peer.accept_answer(answer, timeout_secs=30), owner_peer.channel(30)
        )

    ours, theirs = run(channels(), timeout_secs=60, what="WebRTC channels")
    owner = sy.OwnerSession()
    scientist = sy.ScientistSession()

    async def join():
        await asyncio.gather(
            owner.admit(theirs, preapproved=True, timeout_secs=30),
            connect_scientist(scientist, ours, identity=sy.Identity.ephemeral(), timeout_secs=30),
        )

    run(join(), timeout_secs=60, what="join")
    try:
        assert ours._receiver is not None and theirs._receiver is not None  # taken as they come
        x = torch.arange(5.0).send(scientist)
        before = len(scientist.client.notices)
        for garbage in (b"", b"DU\x02\x00" + os.urandom(64), b'DU\x02\x00\x05\x00\x00\x00[{"k"'):
            run(ours.send(garbage), timeout_secs=30, what="a malformed frame")
        assert torch.equal((x + 1).get(timeout_secs=30), torch.arange(5.0) + 1)
        errors = list(scientist.client.notices)[before:]
        assert len(errors) == 3 and all(e.op == "frame" for e in errors)
        assert owner.connected
    finally:
        scientist.close()
        owner.close()
