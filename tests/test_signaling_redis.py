"""Several signaling instances sharing sessions through one real redis-server.

Two instances run as real processes (``python -m signaling_server --port 0 --redis-url ...``)
on 127.0.0.1, sharing a redis-server on a Unix socket of its own; the owner connects to one
(A), the scientist to the other (B), through duet's client, raw websockets when they play a
hostile part, or a real duet over WebRTC.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
import torch
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import duet as sy
from duet.pairing.signaling import (
    Closed,
    OwnerEvent,
    PeerJoined,
    PeerLeft,
    SignalingClient,
    SignalingServerError,
)
from tests.processes import Process, start_signaling_server
from tests.redis_server import RedisServer

UNIT = 10.0  # seconds; every wait here is a multiple of it, none is asserted
T = TypeVar("T")
CHANNELS = "duet:signaling:instance:*"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


def instances(redis_url: str, count: int, *extra: str) -> tuple[list[Process], list[str]]:
    started = [start_signaling_server("--redis-url", redis_url, *extra) for _ in range(count)]
    return [p for p, _ in started], [u for _, u in started]


@pytest.fixture(scope="module")
def two(redis_url: str) -> Iterator[tuple[str, str]]:
    """Instances A and B (default limits), as ``(url_a, url_b)``."""
    processes, urls = instances(redis_url, 2)
    try:
        yield urls[0], urls[1]
    finally:
        for process in processes:
            process.stop()


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(body(), 6 * UNIT)

    return asyncio.run(main())


async def owner_on(url: str, **register: Any) -> tuple[SignalingClient, str]:
    owner = await SignalingClient.connect(url)
    try:
        return owner, await owner.register(**register)
    except BaseException:
        await owner.close()
        raise


async def scientist_on(url: str, session_id: str) -> SignalingClient:
    scientist = await SignalingClient.connect(url)
    try:
        await scientist.join(session_id, UNIT)
    except BaseException:
        await scientist.close()
        raise
    return scientist


async def refused(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """The error the server sent this connection (skipping others), and the close code."""
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
        if reply["type"] == "error":
            break
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), UNIT)
    rcvd = closed.value.rcvd
    return reply, (rcvd.code if rcvd else None)


async def events_until(
    owner: SignalingClient, done: Callable[[list[OwnerEvent]], bool]
) -> list[OwnerEvent]:
    events: list[OwnerEvent] = []
    for _ in range(20):
        events.append(await owner.next_event(UNIT))
        if done(events):
            return events
    raise AssertionError(f"no end after 20 events: {events}")


# --------------------------------------------------------------------------- pairing across


def test_a_scientist_on_b_pairs_with_a_one_scientist_session_on_a(two: tuple[str, str]) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a)
        scientist = await scientist_on(url_b, session_id)
        await owner.wait_peer_joined(UNIT)
        await scientist.send_offer("offer-sdp")
        assert await owner.wait_offer(UNIT) == "offer-sdp"
        await owner.send_answer("answer-sdp")
        assert await scientist.wait_answer(UNIT) == "answer-sdp"
        # the session is done: a second scientist, on either instance, finds it gone
        for url in (url_b, url_a):
            with pytest.raises(SignalingServerError) as gone:
                await scientist_on(url, session_id)
            assert gone.value.server_code == "unknown_session"
        await owner.close()
        await scientist.close()

    run(body)


def test_a_second_scientist_on_a_finds_the_session_taken_by_one_on_b(two: tuple[str, str]) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a)
        first = await scientist_on(url_b, session_id)
        with pytest.raises(SignalingServerError) as taken:
            await scientist_on(url_a, session_id)
        assert taken.value.server_code == "session_taken"
        with pytest.raises(SignalingServerError) as taken_too:
            await scientist_on(url_b, session_id)
        assert taken_too.value.server_code == "session_taken"
        await first.close()
        assert isinstance(await owner.next_event(UNIT), PeerJoined)
        with pytest.raises(SignalingServerError) as left:
            await owner.next_event(UNIT)
        assert left.value.server_code == "peer_left"
        await owner.close()

    run(body)


def test_an_open_session_on_a_answers_scientists_on_both_instances_each_its_own(
    two: tuple[str, str],
) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a, max_peers=None)

        async def scientist(n: int, url: str) -> str:
            client = await scientist_on(url, session_id)
            await client.send_offer(f"offer-{n}")
            answer = await client.wait_answer(UNIT)
            await client.close()
            return answer

        async def answer(count: int) -> None:
            for _ in range(count):
                offer = await owner.next_offer(UNIT)
                assert offer is not None
                await owner.send_answer(f"answer-to-{offer[1]}", peer=offer[0])

        urls = [url_b, url_a, url_b]
        *answers, _ = await asyncio.gather(
            *(scientist(n, url) for n, url in enumerate(urls)), answer(3)
        )
        assert answers == ["answer-to-offer-0", "answer-to-offer-1", "answer-to-offer-2"]
        await owner.close_session()
        assert await owner.next_offer(UNIT) is None
        assert await owner.next_event(UNIT) == Closed(reason="closed", answered=3)
        await owner.close()

    run(body)


def test_a_declined_scientist_on_b_hears_the_owners_reason_and_the_session_goes_on(
    two: tuple[str, str],
) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a, max_peers=None)
        stranger = await scientist_on(url_b, session_id)
        await stranger.send_offer("offer-stranger")
        offer = await owner.next_offer(UNIT)
        assert offer is not None
        await owner.decline(offer[0], "not on the list")
        with pytest.raises(SignalingServerError) as declined:
            await stranger.wait_answer(UNIT)
        assert declined.value.server_code == "declined"
        assert "not on the list" in str(declined.value)
        friend = await scientist_on(url_b, session_id)
        await friend.send_offer("offer-friend")
        offer = await owner.next_offer(UNIT)
        assert offer is not None and offer[1] == "offer-friend"
        await owner.send_answer("welcome", peer=offer[0])
        assert await friend.wait_answer(UNIT) == "welcome"
        await owner.close()
        await friend.close()
        await stranger.close()

    run(body)


def test_a_scientist_on_b_that_leaves_is_reported_to_the_owner_on_a(two: tuple[str, str]) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a, max_peers=None)
        leaver = await scientist_on(url_b, session_id)
        await leaver.close()
        events = await events_until(owner, lambda e: isinstance(e[-1], PeerLeft))
        assert isinstance(events[0], PeerJoined)
        left = events[-1]
        assert isinstance(left, PeerLeft) and left.reason == "left"
        await owner.close()

    run(body)


def test_the_owner_leaving_tells_a_scientist_on_b_peer_left(two: tuple[str, str]) -> None:
    url_a, url_b = two

    async def body() -> None:
        owner, session_id = await owner_on(url_a, max_peers=None)
        scientist = await scientist_on(url_b, session_id)
        await owner.close()
        with pytest.raises(SignalingServerError) as left:
            await scientist.wait_answer(UNIT)
        assert left.value.server_code == "peer_left"
        # and the directory forgets the session
        with pytest.raises(SignalingServerError) as gone:
            await scientist_on(url_b, session_id)
        assert gone.value.server_code == "unknown_session"
        await scientist.close()

    run(body)


def test_an_unknown_session_id_on_b_is_refused_as_on_one_instance(two: tuple[str, str]) -> None:
    async def body() -> None:
        with pytest.raises(SignalingServerError) as unknown:
            await scientist_on(two[1], "0" * 32)
        assert unknown.value.server_code == "unknown_session"
        assert "ask the owner for a new ID" in str(unknown.value)

    run(body)


def test_expiry_across_instances_is_the_local_expiry(redis_url: str) -> None:
    processes, (url_a, url_b) = instances(redis_url, 2, "--session-ttl", "2", "--join-timeout", "1")

    async def body() -> None:
        # a scientist on B that never offers: its exchange expires after the join timeout
        owner, session_id = await owner_on(url_a, max_peers=None)
        idle = await connect(url_b, compression=None)
        await idle.send(json.dumps({"type": "join", "session_id": session_id}))
        error, code = await refused(idle)
        assert error["code"] == "expired" and code == 1008
        assert "did not complete within 1 s of joining" in error["message"]
        events = await events_until(owner, lambda e: isinstance(e[-1], PeerLeft))
        left = events[-1]
        assert isinstance(left, PeerLeft) and left.reason == "expired"
        await owner.close()
        await idle.close()
        # an unpaired one-scientist session on A expires, and B no longer finds it
        lonely, lonely_id = await owner_on(url_a)
        with pytest.raises(SignalingServerError) as expired:
            await lonely.wait_peer_joined(UNIT)
        assert expired.value.server_code == "expired"
        with pytest.raises(SignalingServerError) as gone:
            await scientist_on(url_b, lonely_id)
        assert gone.value.server_code == "unknown_session"
        await lonely.close()

    try:
        run(body)
    finally:
        for process in processes:
            process.stop()


def test_sessions_of_an_instance_that_dies_are_unknown_to_the_others(
    redis_url: str, two: tuple[str, str]
) -> None:
    doomed, url_c = start_signaling_server("--redis-url", redis_url)

    async def body() -> None:
        owner, session_id = await owner_on(url_c, max_peers=None)
        doomed.kill()  # SIGKILL: no goodbye, its directory entries stay until they expire
        with pytest.raises(SignalingServerError) as gone:
            await scientist_on(two[1], session_id)
        assert gone.value.server_code == "unknown_session"
        await owner.close()

    try:
        run(body)
    finally:
        doomed.stop()


def test_a_scientist_waiting_on_an_instance_that_dies_is_told_it_stopped(
    redis_url: str, two: tuple[str, str]
) -> None:
    doomed, url_c = start_signaling_server("--redis-url", redis_url)

    async def body() -> None:
        owner, session_id = await owner_on(url_c, max_peers=None)
        scientist = await connect(two[1], compression=None)
        await scientist.send(json.dumps({"type": "join", "session_id": session_id}))
        assert json.loads(await asyncio.wait_for(scientist.recv(), UNIT)) == {"type": "joined"}
        doomed.kill()
        error, code = await refused(scientist)
        assert (error["code"], code) == ("peer_left", 1008)
        assert "the signaling instance holding session" in error["message"]
        await owner.close()
        await scientist.close()

    try:
        run(body)
    finally:
        doomed.stop()


def test_an_owner_is_told_when_the_instance_of_its_scientist_dies(
    redis_url: str, two: tuple[str, str]
) -> None:
    doomed, url_c = start_signaling_server("--redis-url", redis_url)

    async def body() -> None:
        owner, session_id = await owner_on(two[0], max_peers=None)
        scientist = await scientist_on(url_c, session_id)
        assert isinstance(await owner.next_event(UNIT), PeerJoined)
        doomed.kill()
        left = await owner.next_event(UNIT)
        assert isinstance(left, PeerLeft) and left.reason == "left"
        await owner.close()
        await scientist.close()  # its instance is gone: the connection is closed already

    try:
        run(body)
    finally:
        doomed.stop()


def test_an_instance_that_loses_redis_refuses_registers_and_joins_with_unavailable() -> None:
    with RedisServer() as lost:
        server, url = start_signaling_server("--redis-url", lost.url)
        lost.close()

    async def body() -> None:
        with pytest.raises(SignalingServerError) as register:
            await owner_on(url)
        assert register.value.server_code == "unavailable"
        assert "cannot reach Redis to share the session" in str(register.value)
        with pytest.raises(SignalingServerError) as join:
            await scientist_on(url, "0" * 32)
        assert join.value.server_code == "unavailable"

    try:
        run(body)
        assert "lost Redis at" in "".join(server.errors)
    finally:
        server.stop()


def test_an_instance_refuses_to_start_without_its_redis() -> None:
    process = Process(
        "-m", "signaling_server", "--port", "0", "--redis-url", "unix:///nonexistent/redis.sock",
        stdin=False,
    )  # fmt: skip
    try:
        assert process.exit_code(UNIT) == 1
        assert "cannot reach Redis at unix:///nonexistent/redis.sock" in "".join(process.errors)
    finally:
        process.stop()


# --------------------------------------------------------------------------- hostile Redis


async def spy_on(redis_url: str) -> tuple[Any, Any]:
    """A client of the same Redis listening to every instance's channel, as an attacker with
    access to Redis could."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=UNIT)
    spy = client.pubsub(ignore_subscribe_messages=True)
    await spy.psubscribe(CHANNELS)
    return client, spy


async def next_envelope(spy: Any, kind: str) -> tuple[str, dict[str, Any]]:
    """The channel and content of the next envelope of ``kind`` anyone published."""
    async with asyncio.timeout(UNIT):
        while True:
            item = await spy.get_message(timeout=UNIT)
            if item is None or item["type"] != "pmessage":
                continue
            envelope = json.loads(item["data"])
            if envelope["kind"] == kind:
                return item["channel"].decode(), envelope


def test_a_message_injected_into_redis_is_parsed_as_the_scientists_and_refused(
    redis_url: str, two: tuple[str, str]
) -> None:
    url_a, url_b = two

    async def body() -> None:
        client, spy = await spy_on(redis_url)
        owner, session_id = await owner_on(url_a, max_peers=None)
        scientist = await connect(url_b, compression=None)
        await scientist.send(json.dumps({"type": "join", "session_id": session_id}))
        channel, opened = await next_envelope(spy, "open")
        assert json.loads(await scientist.recv()) == {"type": "joined"}
        # the attacker speaks for the relayed scientist: an answer, and an offer naming a
        # peer, which no scientist may send: refused as on a local connection
        forged = {**opened, "kind": "msg", "data": json.dumps({"type": "answer", "sdp": "x"})}
        await client.publish(channel, json.dumps(forged))
        error, code = await refused(scientist)
        assert (error["code"], code) == ("malformed", 1008)
        assert "a scientist in session" in error["message"]
        events = await events_until(owner, lambda e: isinstance(e[-1], PeerLeft))
        left = events[-1]
        assert isinstance(left, PeerLeft) and left.reason == "refused"
        await owner.close()
        await scientist.close()
        await spy.aclose()
        await client.aclose()

    run(body)


def test_garbage_in_redis_is_dropped_and_a_forged_reply_never_reaches_the_scientist(
    redis_url: str, two: tuple[str, str]
) -> None:
    url_a, url_b = two

    async def body() -> None:
        client, spy = await spy_on(redis_url)
        owner, session_id = await owner_on(url_a, max_peers=None)
        scientist = await connect(url_b, compression=None)
        await scientist.send(json.dumps({"type": "join", "session_id": session_id}))
        holder, opened = await next_envelope(spy, "open")
        back = "duet:signaling:instance:" + opened["src"]
        assert json.loads(await scientist.recv()) == {"type": "joined"}
        for channel in (holder, back):
            for junk in (b"\xff\x00not json", b"[]", json.dumps({**opened, "kind": "nope"}),
                         json.dumps({**opened, "conn": "../etc"}), b"{" * 100_000):  # fmt: skip
                await client.publish(channel, junk)
        # a reply that is no server message, and one too big for any envelope, for the scientist
        not_a_reply = {**opened, "kind": "send", "src": opened["src"], "data": '{"type": "join"}'}
        await client.publish(back, json.dumps(not_a_reply))
        await client.publish(back, json.dumps({**not_a_reply, "data": "x" * (5 << 20)}))
        await scientist.send(json.dumps({"type": "offer", "sdp": "real-offer"}))
        offer = await owner.next_offer(UNIT)
        assert offer is not None and offer[1] == "real-offer"
        await owner.send_answer("real-answer", peer=offer[0])
        # the first thing the scientist receives after "joined" is the owner's real answer
        assert json.loads(await asyncio.wait_for(scientist.recv(), UNIT)) == {
            "type": "answer",
            "sdp": "real-answer",
        }
        await owner.close()
        await scientist.close()
        await spy.aclose()
        await client.aclose()

    run(body)


def test_a_flood_written_into_redis_in_one_scientists_name_ends_only_its_exchange(
    redis_url: str, two: tuple[str, str]
) -> None:
    url_a, url_b = two

    async def body() -> None:
        client, spy = await spy_on(redis_url)
        owner, session_id = await owner_on(url_a, max_peers=None)
        victim = await connect(url_b, compression=None)
        await victim.send(json.dumps({"type": "join", "session_id": session_id}))
        holder, opened = await next_envelope(spy, "open")
        assert json.loads(await victim.recv()) == {"type": "joined"}
        bystander = await scientist_on(url_b, session_id)
        offer = json.dumps({"type": "offer", "sdp": "forged"})
        for _ in range(200):
            await client.publish(holder, json.dumps({**opened, "kind": "msg", "data": offer}))
        # the first forged offer is relayed as the victim's; the second is refused as a second
        # offer from a local scientist would be, and the rest find the exchange over
        error, code = await refused(victim)
        assert (error["code"], code) == ("malformed", 1008)
        assert "was already relayed" in error["message"]
        events = await events_until(owner, lambda e: "p1" in left_peers(e))
        assert left_peers(events)["p1"].reason == "refused"
        # the bystander's exchange is untouched
        await bystander.send_offer("bystander-offer")
        while (offer_event := await owner.next_offer(UNIT)) is not None:
            if offer_event[0] == "p2":
                break
        assert offer_event == ("p2", "bystander-offer")
        await owner.send_answer("bystander-answer", peer="p2")
        assert await bystander.wait_answer(UNIT) == "bystander-answer"
        await owner.close()
        await bystander.close()
        await victim.close()
        await spy.aclose()
        await client.aclose()

    run(body)


def left_peers(events: list[OwnerEvent]) -> dict[str, PeerLeft]:
    return {e.peer: e for e in events if isinstance(e, PeerLeft)}


# --------------------------------------------------------------------------- a real duet across


def test_a_real_duet_pairs_over_webrtc_across_two_instances(two: tuple[str, str]) -> None:
    url_a, url_b = two
    found: dict[str, Any] = {}
    ready = threading.Event()

    def on_ready(session_id: str, url: str) -> None:
        found["session_id"] = session_id
        ready.set()

    def launch() -> None:
        try:
            found["owner"] = sy.launch_duet(url_a, confirm=False, on_ready=on_ready, review=False)
        finally:
            ready.set()

    thread = threading.Thread(target=launch)
    thread.start()
    assert ready.wait(6 * UNIT) and "session_id" in found
    scientist = sy.join_duet(found["session_id"], url_b, timeout_secs=6 * UNIT)
    thread.join(6 * UNIT)
    try:
        x = torch.tensor([1.0, 2.0, 3.0]).send(scientist)
        assert torch.equal((x + 1).get(), torch.tensor([2.0, 3.0, 4.0]))
    finally:
        scientist.close()
        if "owner" in found:
            found["owner"].close()


def test_a_scientist_on_one_instance_finds_and_joins_an_owner_listed_on_another(
    two: tuple[str, str],
) -> None:
    """The network behind one address: the owner's node registers and lists on instance A, the
    scientist searches and joins through instance B (registry and session both in Redis)."""
    url_a, url_b = two
    owner = sy.launch_duet(url_a, confirm=False, max_scientists=2, wait=False, review=False)
    session = None
    try:
        owner.publish(torch.arange(6.0), tags=["census"], description="six counts", listed=True)
        assert owner.listing is not None
        owner.listing.settle()
        assert owner.listing.last_error is None, owner.listing.last_error
        found = sy.search(tags=["census"], network_url=url_b)
        assert list(found.owner_id) == [owner.identity.id]
        assert list(found.online) == [True]  # the session lives on A: B asks the directory
        assert sy.search(tags=["census"], network_url=url_a).owner_id.tolist() == [
            owner.identity.id
        ]
        session, census = sy.join(url_b, owner=owner.identity.id, dataset="census")
        assert session.owner_id == owner.identity.id
        assert census.tags == ["census"]
        with pytest.raises(sy.PermissionDenied):  # found through the network, still private
            census.get()
    finally:
        if session is not None:
            session.close()
        owner.close()  # withdraws the listing, through A, for every instance
    assert sy.search(tags=["census"], network_url=url_b).empty
