"""Bounded memory on a connection: the outbox, stalled peers, frames too large either way.

In-process, over memory channels; ``test_hostile_processes.py`` runs the same cases between
real processes over WebRTC.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

import duet as sy
from duet.connection import Connection
from duet.identity import Identity, auth_message
from duet.protocol.fields import Role
from duet.protocol.frames import FrameTooLarge
from duet.protocol.messages import Auth, Hello, Put, Reply, Sync, pack, unpack
from duet.protocol.serde import Encoder
from duet.runtime import run
from duet.transport.channel import Channel
from duet.transport.memory import memory_pair

from .test_security import still_works

WAIT = 30.0  # a bound on every wait; never a measured duration


class Valve(Channel):
    """Delivers what it receives; holds what is sent while closed, like a peer not reading."""

    def __init__(self, inner: Channel):
        self.inner = inner
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def send(self, frame: bytes) -> None:
        await self.flowing.wait()
        await self.inner.send(frame)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self) -> None:
        self.flowing.set()
        await self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def set_max_frame_bytes(self, limit: int) -> None:
        self.inner.set_max_frame_bytes(limit)


def hello(role: Role, **limits: Any) -> Hello:
    from duet import __version__
    from duet.protocol import allowlist

    return Hello(duet_version=__version__, torch_version=torch.__version__,
                 allowlist=allowlist.digest(), role=role, **limits)  # type: ignore[arg-type]  # fmt: skip


class Pair:
    """An owner-role Connection whose outgoing side goes through a Valve, and a raw peer."""

    def __init__(self, *, peer_limit: int = 1 << 30, **options):
        self.received: list = []
        self.lost: list[sy.ConnectionLost] = []
        self.peer_frames: asyncio.Queue[bytes] = asyncio.Queue()

        async def setup() -> None:
            a, b = memory_pair()
            self.valve = Valve(a)
            self.peer = b
            self.connection = Connection(
                self.valve,
                "owner",
                on_messages=lambda m, buffers: self.received.extend(m),
                on_lost=self.lost.append,
                **options,
            )
            # the raw peer proves an identity of its own, as any scientist does
            who, nonce = Identity.ephemeral(), "ab" * 16
            opening = asyncio.ensure_future(self.connection.open(timeout_secs=WAIT))
            await b.send(pack([hello("scientist", max_frame_bytes=peer_limit,
                                     identity=who.public_key.hex(), nonce=nonce)]))  # fmt: skip
            owner_hello = unpack(await asyncio.wait_for(b.recv(), WAIT), max_frame_bytes=1 << 20)
            proof = auth_message("scientist", "", "", nonce, owner_hello[0][0].nonce)
            await b.send(pack([Auth(signature=who.sign(proof).hex())]))
            await opening

        run(setup(), timeout_secs=WAIT, what="setup")
        self.next_frame()  # the owner's proof of identity

    def next_frame(self) -> bytes:
        return run(asyncio.wait_for(self.peer.recv(), WAIT), timeout_secs=WAIT, what="recv")

    def close(self) -> None:
        run(self.connection.close(), timeout_secs=WAIT, what="close")


def sender(connection: Connection, frames: int, size: int, outcome: dict) -> threading.Thread:
    def send_all() -> None:
        try:
            for i in range(frames):
                connection.send([Sync(rid=i)], [memoryview(bytes(size))])
                outcome["sent"] = i + 1
        except sy.DuetError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=send_all, daemon=True)
    thread.start()
    return thread


def test_a_sending_thread_waits_for_room_and_resumes_when_the_peer_reads():
    pair = Pair(max_outbox_bytes=1 << 20, heartbeat_secs=60, dead_after_secs=120)
    try:
        pair.valve.flowing.clear()
        outcome: dict = {}
        thread = sender(pair.connection, 8, 400_000, outcome)
        thread.join(1.0)  # it cannot finish while the peer reads nothing
        assert thread.is_alive()
        assert 0 < pair.connection.queued_bytes <= pair.connection.max_outbox_bytes
        assert outcome.get("sent", 0) < 8
        pair.connection.loop.call_soon_threadsafe(pair.valve.flowing.set)
        thread.join(WAIT)
        assert not thread.is_alive() and outcome == {"sent": 8}
        sizes = [len(pair.next_frame()) for _ in range(8)]
        assert all(size > 400_000 for size in sizes)
    finally:
        pair.close()


def test_a_peer_that_stops_reading_is_dropped_with_a_reason_and_senders_get_connection_lost():
    pair = Pair(max_outbox_bytes=1 << 20, stall_timeout_secs=0.5, heartbeat_secs=0.1,
                dead_after_secs=120)  # fmt: skip
    pair.valve.flowing.clear()
    outcome: dict = {}
    thread = sender(pair.connection, 1000, 400_000, outcome)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert isinstance(outcome["error"], sy.ConnectionLost)
    assert "the peer stopped reading for" in str(outcome["error"])
    assert len(pair.lost) == 1 and "stopped reading" in str(pair.lost[0])
    run(pair.connection.wait_closed(), timeout_secs=WAIT, what="closing")
    assert pair.connection.queued_bytes == 0  # what waited is freed
    with pytest.raises(sy.ConnectionLost, match="stopped reading"):
        pair.connection.send([Sync(rid=1)])


def test_sends_from_the_loop_thread_never_wait():
    pair = Pair(max_outbox_bytes=1 << 20, heartbeat_secs=60, dead_after_secs=120)
    try:
        pair.valve.flowing.clear()

        async def from_the_loop() -> None:
            for i in range(5):
                pair.connection.send([Sync(rid=i)], [memoryview(bytes(400_000))])

        run(from_the_loop(), timeout_secs=WAIT, what="sends on the loop")
        assert pair.connection.queued_bytes > pair.connection.max_outbox_bytes
        pair.connection.loop.call_soon_threadsafe(pair.valve.flowing.set)
        assert [len(pair.next_frame()) > 400_000 for _ in range(5)] == [True] * 5
    finally:
        pair.close()


def test_a_frame_over_the_peers_limit_is_a_clear_error_and_the_connection_goes_on():
    pair = Pair(peer_limit=100_000, heartbeat_secs=60, dead_after_secs=120)
    try:
        with pytest.raises(FrameTooLarge, match=r"frame of \d+ bytes exceeds the frame limit of 100000 bytes") as info:  # fmt: skip
            pair.connection.send_if_open([Sync(rid=1)], [memoryview(bytes(200_000))])
        assert isinstance(info.value, sy.ProtocolError) and info.value.limit == 100_000
        with pytest.raises(FrameTooLarge, match=r"header of \d+ bytes exceeds the limit"):
            pair.connection.send([Reply(rid=2, value=list(range(3_000_000)))])
        many = [memoryview(b"x")] * 70_000
        with pytest.raises(FrameTooLarge, match="70000 tensors or byte strings in one frame"):
            pair.connection.send([Sync(rid=3)], many)
        assert pair.connection.queued_bytes == 0
        pair.connection.send([Sync(rid=4)])
        assert b'"rid":4' in pair.next_frame()
    finally:
        pair.close()


def test_messages_right_behind_the_peers_hello_are_handled_not_refused():
    received: list = []

    async def scenario() -> None:
        both = asyncio.Event()

        def on_messages(messages: list, _buffers: list) -> None:
            received.extend(messages)
            if len(received) >= 2:
                both.set()

        a, b = memory_pair()
        connection = Connection(a, "owner", on_messages=on_messages, on_lost=lambda exc: None)
        who, nonce = Identity.ephemeral(), "cd" * 16
        await b.send(pack([hello("scientist", identity=who.public_key.hex(), nonce=nonce)]))
        opening = asyncio.ensure_future(connection.open(timeout_secs=WAIT))
        owner_hello = unpack(await asyncio.wait_for(b.recv(), WAIT), max_frame_bytes=1 << 20)
        proof = auth_message("scientist", "", "", nonce, owner_hello[0][0].nonce)
        # the proof and an action right behind it wait in the channel together
        await b.send(pack([Auth(signature=who.sign(proof).hex())]))
        await b.send(pack([Sync(rid=7)]))
        await opening
        await b.send(pack([Sync(rid=8)]))
        await asyncio.wait_for(both.wait(), WAIT)
        await connection.close()

    run(scenario(), timeout_secs=WAIT, what="scenario")
    assert [m.rid for m in received] == [7, 8]


def test_an_oversized_send_is_refused_from_its_head_and_the_owner_serves_on():
    owner, scientist = sy.duet_pair()
    try:
        reason = "what is left of your quota"
        owner.connection.set_max_frame_bytes(100_000, reason=reason)
        client = scientist.client
        object_id = client.new_id()
        # what a scientist that skips the local check sends
        buffers: list[memoryview] = []
        value = Encoder(buffers).encode(torch.zeros(1_000_000))
        client.connection.send([Put(id=object_id, value=value)], buffers)
        scientist.sync(timeout_secs=WAIT)
        failure = client.failures[object_id]
        assert "exceeds the limit of 100000 bytes" in failure.message
        assert reason in failure.message and failure.code == "protocol_error"
        assert object_id not in owner.objects
        assert owner.connection.frames_refused == 1
        still_works(scientist)
    finally:
        scientist.close()
        owner.close()


def test_a_reply_over_the_scientists_limit_fails_its_get_and_the_session_goes_on():
    owner, scientist = sy.duet_pair()
    try:
        x = scientist.send_value(torch.zeros(1_000_000))
        reason = "the scientist's own limit"
        scientist.connection.set_max_frame_bytes(100_000, reason=reason)
        with pytest.raises(sy.ProtocolError, match=r"exceeds the limit of 100000 bytes.*own limit"):
            x.get(timeout_secs=WAIT)
        assert scientist.connection.frames_refused == 1
        assert owner.connection.frames_refused == 0  # the owner was told nothing
        still_works(scientist)
    finally:
        scientist.close()
        owner.close()


def test_the_owner_announces_its_limits_and_a_put_too_big_is_refused_before_sending():
    owner, scientist = sy.duet_pair(max_bytes=10_000_000)
    try:
        hello = scientist.connection.peer_hello
        assert hello.max_bytes == 10_000_000
        assert 10_000_000 < hello.max_frame_bytes < 1 << 30
        sent = scientist.client.actions_sent
        received = owner.connection.frames_received
        with pytest.raises(sy.QuotaExceeded, match=r"is 40000000 bytes .* store 10000000 bytes; nothing was sent"):  # fmt: skip
            torch.zeros(10_000_000).send(scientist)
        assert scientist.client.actions_sent == sent
        scientist.sync(timeout_secs=WAIT)
        assert owner.connection.frames_received == received + 1  # the sync alone
        small = torch.ones(1000).send(scientist)
        assert torch.equal(small.get(), torch.ones(1000))
    finally:
        scientist.close()
        owner.close()
