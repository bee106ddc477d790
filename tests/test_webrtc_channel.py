"""WebRTCChannel: two aiortc peers in one process, SDPs passed directly, loopback only."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

# Before anything creates a peer connection: gather on loopback only, never on eth0.
os.environ["DUET_ICE_HOSTS"] = "127.0.0.1"

import pytest

from duet.errors import DuetTimeout, NetworkError, ProtocolError, UsageError
from duet.transport.channel import ChannelClosed
from duet.transport.ice import resolve_ice_hosts, without_mdns_candidates
from duet.transport.webrtc import (
    WebRTCChannel,
    answer_offer,
    client_id_from_fingerprint,
    create_offer,
    dtls_fingerprint,
    sdp_candidate_addresses,
)

HOSTS = ["127.0.0.1"]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
WAIT = 30.0  # generous bound for any single wait; tests never assert timing


def run(coro: Coroutine[Any, Any, None], timeout: float = 240.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def connected() -> tuple[WebRTCChannel, WebRTCChannel, str, str]:
    scientist, offer = await create_offer(ice_hosts=HOSTS)
    owner, answer = await answer_offer(offer, ice_hosts=HOSTS, timeout_secs=WAIT)
    a, b = await asyncio.gather(
        scientist.accept_answer(answer, timeout_secs=WAIT), owner.channel(WAIT)
    )
    return a, b, scientist.client_id, owner.peer_client_id


async def with_pair(body: Callable[[WebRTCChannel, WebRTCChannel], Awaitable[None]]) -> None:
    a, b, _, _ = await connected()
    try:
        await body(a, b)
    finally:
        await a.close()
        await b.close()


async def recv(channel: WebRTCChannel, timeout: float = WAIT) -> bytes:
    return await asyncio.wait_for(channel.recv(), timeout)


def all_loopback(sdp: str) -> bool:
    addresses = sdp_candidate_addresses(sdp)
    return bool(addresses) and all(ipaddress.ip_address(x) in LOOPBACK for x in addresses)


def test_candidates_are_loopback_only() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        owner, answer = await answer_offer(offer, ice_hosts=HOSTS, timeout_secs=WAIT)
        try:
            assert all_loopback(offer), sdp_candidate_addresses(offer)
            assert all_loopback(answer), sdp_candidate_addresses(answer)
            assert sdp_candidate_addresses(offer) == ["127.0.0.1"]
        finally:
            await scientist.close()
            await owner.close()

    run(main())


def test_env_var_restricts_hosts() -> None:
    async def main() -> None:
        scientist, offer = await create_offer()  # DUET_ICE_HOSTS only
        await scientist.close()
        assert sdp_candidate_addresses(offer) == ["127.0.0.1"]

    run(main())


def test_small_frames_in_order() -> None:
    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        frames = [b"", b"x", *(f"frame {i}".encode() for i in range(200))]
        for frame in frames:
            await a.send(frame)
        assert [await recv(b) for _ in frames] == frames
        await b.send(b"reply")
        assert await recv(a) == b"reply"

    run(with_pair(body))


def test_an_emulated_latency_delays_frames_but_keeps_them_whole_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUET_EMULATED_DELAY_MS", "30")
    handed_on = []  # frames that came through the emulated link, not straight to the reader
    original = WebRTCChannel._hand_on_delayed

    def counting(self: WebRTCChannel) -> None:
        before = len(self._delayed)
        original(self)
        handed_on.append(before - len(self._delayed))

    monkeypatch.setattr(WebRTCChannel, "_hand_on_delayed", counting)

    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        frames = [os.urandom(n) for n in (0, 1, 70_000, 5, 300_000, *range(100))]
        for frame in frames:
            await a.send(frame)
        assert [await recv(b) for _ in frames] == frames
        await b.send(b"reply")
        assert await recv(a) == b"reply"
        assert sum(handed_on) == len(frames) + 1

    run(with_pair(body))


def test_large_frame_then_small_frames() -> None:
    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        big = os.urandom(20 * 1024 * 1024)
        small = [f"small {i}".encode() for i in range(5)]

        async def send_big() -> None:
            await a.send(big)

        async def send_small() -> None:
            for frame in small:
                await a.send(frame)

        # Tasks start in creation order, so the big frame takes the send lock first.
        big_task = asyncio.create_task(send_big())
        small_task = asyncio.create_task(send_small())
        got = await recv(b, timeout=180)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(big).hexdigest()
        assert [await recv(b) for _ in small] == small
        await asyncio.wait_for(asyncio.gather(big_task, small_task), WAIT)

    run(with_pair(body))


def test_cancelled_send_keeps_stream_usable() -> None:
    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        dc = a._dc
        original = dc.send
        sent = 0
        task: asyncio.Task[None] | None = None

        def counting_send(data: bytes) -> None:
            nonlocal sent
            original(data)
            sent += 1
            if sent == 3 and task is not None:
                task.cancel()  # takes effect at the next flow-control wait

        dc.send = counting_send  # type: ignore[method-assign]
        task = asyncio.create_task(a.send(os.urandom(8 * 1024 * 1024)))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, WAIT)
        dc.send = original  # type: ignore[method-assign]
        await a.send(b"after the cancelled frame")
        assert await recv(b) == b"after the cancelled frame"

    run(with_pair(body))


def test_close_propagates_to_peer() -> None:
    async def main() -> None:
        a, b, _, _ = await connected()
        await a.send(b"last words")
        await a.close()
        await a.close()  # idempotent
        assert a.closed
        with pytest.raises(ChannelClosed):
            await a.send(b"too late")
        assert await recv(b) == b"last words"
        with pytest.raises(ChannelClosed):
            await recv(b)
        with pytest.raises(ChannelClosed):  # and keeps raising
            await recv(b)
        assert b.closed
        await b.close()

    run(main())


def test_client_id_matches_across_peers() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        owner, _ = await answer_offer(offer, ice_hosts=HOSTS, timeout_secs=WAIT)
        try:
            owner_view = client_id_from_fingerprint(dtls_fingerprint(offer))
            assert owner.peer_client_id == owner_view == scientist.client_id
            assert scientist.fingerprint == dtls_fingerprint(offer)
        finally:
            await scientist.close()
            await owner.close()

    run(main())


def test_fingerprint_helpers() -> None:
    fp = ":".join(["AB"] * 32)
    sdp = f"v=0\r\na=fingerprint:sha-256 {fp.lower()}\r\na=fingerprint:sha-384 00:11\r\n"
    assert dtls_fingerprint(sdp) == fp
    client_id = client_id_from_fingerprint(fp)
    assert len(client_id) == 19 and client_id.count("-") == 3
    assert client_id == client_id_from_fingerprint(fp.lower())
    assert client_id != client_id_from_fingerprint(":".join(["AC"] * 32))
    with pytest.raises(ProtocolError):
        dtls_fingerprint("v=0\r\na=fingerprint:sha-384 00:11\r\n")


def test_offer_without_fingerprint_is_refused() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        await scientist.close()
        stripped = "".join(
            line for line in offer.splitlines(keepends=True) if "fingerprint" not in line
        )
        with pytest.raises(ProtocolError):
            await answer_offer(stripped, ice_hosts=HOSTS, timeout_secs=WAIT)

    run(main())


def test_waiting_for_the_channel_times_out() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        owner, _ = await answer_offer(offer, ice_hosts=HOSTS, timeout_secs=WAIT)
        try:
            with pytest.raises(DuetTimeout, match="did not arrive"):
                await owner.channel(timeout_secs=0.5)  # the scientist never applies the answer
        finally:
            await scientist.close()
            await owner.close()

    run(main())


def test_garbage_answer_is_refused() -> None:
    async def main() -> None:
        scientist, offer = await create_offer(ice_hosts=HOSTS)
        fp = dtls_fingerprint(offer)
        with pytest.raises(NetworkError):
            await scientist.accept_answer(f"a=fingerprint:sha-256 {fp}\r\n", timeout_secs=WAIT)
        await scientist.close()

    run(main())


def test_resolve_ice_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_ice_hosts(["127.0.0.1", "::1", "127.0.0.1"]) == ("127.0.0.1", "::1")
    monkeypatch.setenv("DUET_ICE_HOSTS", " 127.0.0.1 , 127.0.0.2,")
    assert resolve_ice_hosts(None) == ("127.0.0.1", "127.0.0.2")
    monkeypatch.setenv("DUET_ICE_HOSTS", "")
    assert resolve_ice_hosts(None) is None
    for bad in (["localhost"], [], "127.0.0.1"):
        with pytest.raises(UsageError):
            resolve_ice_hosts(bad)


def test_mdns_candidates_dropped() -> None:
    sdp = (
        "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 1f0e2c.local 5001 typ host\r\n"
    )
    assert sdp_candidate_addresses(without_mdns_candidates(sdp)) == ["127.0.0.1"]


def test_a_frame_over_the_limit_is_refused_from_its_head_and_the_stream_goes_on() -> None:
    from duet.protocol.frames import FrameTooLarge, header_of
    from duet.protocol.messages import Put, pack

    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        b.set_max_frame_bytes(1 << 20)
        big = pack([Put(id="s1", value={"$": "bytes", "buf": 0})], [memoryview(bytes(8 << 20))])
        await a.send(big)
        await a.send(b"after the big frame")
        with pytest.raises(FrameTooLarge, match=f"of {len(big)} bytes exceeds the limit") as info:
            await recv(b)
        assert b'"id":"s1"' in (header_of(info.value.head) or b"")
        assert await recv(b) == b"after the big frame"
        assert not b.closed
        # refused at the first chunk: nothing of it was held, the rest dropped as it came
        assert b._reassembler.frames_refused == 1 and b._reassembler.buffered == 0
        assert b._reassembler.bytes_discarded == len(big)
        b.set_max_frame_bytes(16 << 20)
        await a.send(big)
        assert await recv(b) == big

    run(with_pair(body))


def test_frames_handed_on_as_they_complete_keep_their_place_behind_what_waits_for_recv() -> None:
    """A reader that takes frames as they complete (what a connection does) gets them at once
    while nothing waits for ``recv``; once something does (here a refused frame nobody has
    read yet), later frames queue behind it, so the stream's order holds."""
    from duet.protocol.frames import FrameTooLarge

    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        b.set_max_frame_bytes(1 << 20)
        handed: list[bytes] = []
        before = [f"before {i}".encode() for i in range(40)]
        after = [f"after {i}".encode() for i in range(40)]
        queued = asyncio.Event()
        put = b._inbox.put_nowait

        def counting_put(item: object) -> None:
            put(item)
            if b._inbox.qsize() == 1 + len(after):
                queued.set()

        b._inbox.put_nowait = counting_put  # type: ignore[method-assign]
        more = asyncio.Event()

        def receiver(frame: bytes) -> None:
            handed.append(frame)
            if len(handed) > len(before):
                more.set()

        assert b.deliver_to(receiver)
        for frame in before:
            await a.send(frame)
        await a.send(os.urandom(2 << 20))  # refused: it waits for recv
        for frame in after:
            await a.send(frame)
        await asyncio.wait_for(queued.wait(), WAIT)  # the refusal, then every later frame
        assert handed == before
        with pytest.raises(FrameTooLarge):
            await recv(b)
        assert [await recv(b) for _ in after] == after
        await a.send(b"nothing waits now")  # straight to the reader again
        await asyncio.wait_for(more.wait(), WAIT)
        assert b._inbox.empty()
        assert handed == [*before, b"nothing waits now"]

    run(with_pair(body))


def test_a_peer_that_stops_acknowledging_closes_the_channel_with_a_reason() -> None:
    async def body(a: WebRTCChannel, b: WebRTCChannel) -> None:
        async def no_sack() -> None:  # b still receives, but never acknowledges
            return None

        b._pc.sctp._send_sack = no_sack  # type: ignore[union-attr,method-assign]
        a.stall_timeout_secs = 1.0
        with pytest.raises(ChannelClosed, match=r"the peer stopped reading for 1 s"):
            await asyncio.wait_for(a.send(os.urandom(8 << 20)), WAIT)
        assert a.closed

    run(with_pair(body))
