"""Open signaling sessions: one owner, several scientists, each with its own exchange.

The server runs embedded on this test's loop (127.0.0.1, port 0); owners and scientists are real
websocket connections to it, through duet's client or raw when they play a hostile part.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from duet.errors import DuetTimeout, UsageError
from duet.pairing.signaling import (
    ONLY_PEER,
    Closed,
    Offer,
    OwnerEvent,
    PeerJoined,
    PeerLeft,
    SignalingClient,
    SignalingServerError,
)
from signaling_server import SignalingServer, start_embedded_server

UNIT = 10.0  # seconds; every wait here is a multiple of it, none is asserted
T = TypeVar("T")


def run(body: Callable[[str, SignalingServer], Awaitable[T]], **limits: Any) -> T:
    """Run ``body(url, server)`` against a fresh embedded server, bounded in time."""

    async def main() -> T:
        server, url = await start_embedded_server("127.0.0.1", 0, **limits)
        try:
            return await asyncio.wait_for(body(url, server), 3 * UNIT)
        finally:
            await server.close()

    return asyncio.run(main())


async def open_owner(url: str, max_peers: int | None = None) -> tuple[SignalingClient, str]:
    owner = await SignalingClient.connect(url)
    return owner, await owner.register(max_peers=max_peers)


async def joined_scientist(url: str, session_id: str) -> SignalingClient:
    scientist = await SignalingClient.connect(url)
    await scientist.join(session_id)
    return scientist


async def raw_scientist(url: str, session_id: str) -> ClientConnection:
    ws = await connect(url, compression=None)
    await ws.send(json.dumps({"type": "join", "session_id": session_id}))
    assert json.loads(await ws.recv()) == {"type": "joined"}
    return ws


async def refused(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    """The error the server sent this connection, and the close code that followed it."""
    reply = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), UNIT)
    rcvd = closed.value.rcvd
    return reply, (rcvd.code if rcvd else None)


async def events_until(
    owner: SignalingClient, done: Callable[[list[OwnerEvent]], bool], limit: int = 50
) -> list[OwnerEvent]:
    """The owner's events, in order, until ``done(events)``; bounded."""
    events: list[OwnerEvent] = []
    for _ in range(limit):
        events.append(await owner.next_event(UNIT))
        if done(events):
            return events
    raise AssertionError(f"no end after {limit} events: {events}")


def offers_from(events: list[OwnerEvent]) -> dict[str, str]:
    return {e.peer or "": e.sdp for e in events if isinstance(e, Offer)}


def left_peers(events: list[OwnerEvent]) -> dict[str, PeerLeft]:
    return {e.peer: e for e in events if isinstance(e, PeerLeft)}


# --------------------------------------------------------------------------- many scientists


def test_three_scientists_join_concurrently_and_each_gets_only_its_own_answer() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)

        async def scientist(n: int) -> tuple[str, str]:
            client = await joined_scientist(url, session_id)
            await client.send_offer(f"offer-{n}")
            answer = await client.wait_answer(UNIT)
            await client.close()
            return f"offer-{n}", answer

        async def answer_three() -> list[str]:
            peers = []
            for _ in range(3):
                offer = await owner.next_offer(UNIT)
                assert offer is not None
                peer, sdp = offer
                peers.append(peer)
                await owner.send_answer(f"answer-to-{sdp}", peer=peer)
            return peers

        *exchanges, peers = await asyncio.gather(*(scientist(n) for n in range(3)), answer_three())
        for offer, answer in exchanges:
            assert answer == f"answer-to-{offer}"
        assert sorted(peers) == ["p1", "p2", "p3"]
        assert session_id not in peers
        # the session stays registered for the next scientist
        fourth = await joined_scientist(url, session_id)
        await fourth.send_offer("offer-4")
        assert await owner.next_offer(UNIT) == ("p4", "offer-4")
        await owner.send_answer("answer-4", peer="p4")
        assert await fourth.wait_answer(UNIT) == "answer-4"
        await owner.close_session()
        assert await owner.next_offer(UNIT) is None
        assert await owner.next_event(UNIT) == Closed(reason="closed", answered=4)
        await owner.close()
        await fourth.close()

    run(body)


def test_offers_iterates_until_the_session_has_answered_max_peers() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url, max_peers=2)
        scientists = [await joined_scientist(url, session_id) for _ in range(2)]
        for n, scientist in enumerate(scientists):
            await scientist.send_offer(f"offer-{n}")
        seen = []
        async for peer, sdp in owner.offers(timeout_secs=UNIT):
            seen.append((peer, sdp))
            await owner.send_answer(f"answer-to-{sdp}", peer=peer)
        assert sorted(seen) == [("p1", "offer-0"), ("p2", "offer-1")]
        for n, scientist in enumerate(scientists):
            assert await scientist.wait_answer(UNIT) == f"answer-to-offer-{n}"
            await scientist.close()
        await owner.close()

    run(body)


def test_an_answered_scientist_is_closed_normally_and_the_owner_stays_connected() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url, max_peers=5)
        scientist = await raw_scientist(url, session_id)
        await scientist.send(json.dumps({"type": "offer", "sdp": "o"}))
        assert await owner.next_offer(UNIT) == ("p1", "o")
        await owner.send_answer("a", peer="p1")
        assert json.loads(await scientist.recv()) == {"type": "answer", "sdp": "a"}
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(scientist.recv(), UNIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert not owner.closed
        assert server.session_count == 1
        await owner.close()
        await scientist.close()

    run(body)


def test_a_scientist_leaving_mid_exchange_does_not_end_the_session() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        stays = await joined_scientist(url, session_id)
        await stays.send_offer("offer-stays")
        leaves = await joined_scientist(url, session_id)
        await leaves.send_offer("offer-leaves")
        await events_until(owner, lambda ev: len(offers_from(ev)) == 2)
        await leaves.close()
        events = await events_until(owner, lambda ev: bool(left_peers(ev)))
        gone = left_peers(events)["p2"]
        assert (gone.reason, gone.message) == ("left", "the scientist disconnected")
        await owner.send_answer("too late", peer="p2")  # dropped, the session goes on
        await owner.send_answer("answer-stays", peer="p1")
        assert await stays.wait_answer(UNIT) == "answer-stays"
        later = await joined_scientist(url, session_id)
        await later.send_offer("offer-later")
        assert await owner.next_offer(UNIT) == ("p3", "offer-later")
        await owner.send_answer("answer-later", peer="p3")
        assert await later.wait_answer(UNIT) == "answer-later"
        for client in (owner, stays, later):
            await client.close()

    run(body)


def test_next_offer_passes_departures_to_its_callback() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        leaves = await joined_scientist(url, session_id)
        await leaves.close()
        stays = await joined_scientist(url, session_id)
        await stays.send_offer("offer")
        departed: list[PeerLeft] = []
        assert await owner.next_offer(UNIT, on_peer_left=departed.append) == ("p2", "offer")
        assert [(d.peer, d.reason) for d in departed] == [("p1", "left")]
        for client in (owner, stays):
            await client.close()

    run(body)


# --------------------------------------------------------------------------- hostile scientists


def test_a_scientist_sending_an_answer_is_refused_and_the_others_are_unaffected() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        honest = await joined_scientist(url, session_id)
        await honest.send_offer("honest-offer")
        assert await owner.next_offer(UNIT) == ("p1", "honest-offer")
        hostile = await raw_scientist(url, session_id)
        await hostile.send(json.dumps({"type": "answer", "peer": "p1", "sdp": "forged"}))
        reply, close_code = await refused(hostile)
        assert reply["code"] == "malformed"
        assert 'cannot send "answer"' in reply["message"]
        assert close_code == 1008
        await hostile.close()
        events = await events_until(owner, lambda ev: bool(left_peers(ev)))
        assert left_peers(events)["p2"].reason == "refused"
        await owner.send_answer("honest-answer", peer="p1")
        assert await honest.wait_answer(UNIT) == "honest-answer"
        for client in (owner, honest):
            await client.close()

    run(body)


def test_a_scientist_naming_a_peer_is_refused_and_never_sees_anothers_answer() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        honest = await joined_scientist(url, session_id)
        spoofer = await raw_scientist(url, session_id)
        await spoofer.send(json.dumps({"type": "offer", "peer": "p1", "sdp": "spoofed"}))
        reply, close_code = await refused(spoofer)
        assert reply["code"] == "malformed"
        assert "a scientist does not name a peer (got 'p1')" in reply["message"]
        assert close_code == 1008
        await spoofer.close()
        await honest.send_offer("honest-offer")
        departed: list[PeerLeft] = []
        assert await owner.next_offer(UNIT, on_peer_left=departed.append) == (
            "p1",
            "honest-offer",
        )
        await owner.send_answer("honest-answer", peer="p1")
        assert await honest.wait_answer(UNIT) == "honest-answer"
        if not departed:  # the spoofer's peer_left may come after the honest offer
            events = await events_until(owner, lambda ev: bool(left_peers(ev)))
            departed = list(left_peers(events).values())
        assert [(d.peer, d.reason) for d in departed] == [("p2", "refused")]
        for client in (owner, honest):
            await client.close()

    run(body)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "decline", "peer": "p1"},
        {"type": "close"},
        {"type": "ping"},
        {"type": "register", "max_peers": 3},
        {"type": "join", "session_id": "0" * 32},
    ],
    ids=lambda m: m["type"],
)
def test_a_scientist_sending_an_owners_message_is_refused(message: dict[str, Any]) -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        hostile = await raw_scientist(url, session_id)
        await hostile.send(json.dumps(message))
        reply, _ = await refused(hostile)
        await hostile.close()
        assert reply["code"] == "malformed"
        assert f'cannot send "{message["type"]}"' in reply["message"]
        honest = await joined_scientist(url, session_id)
        await honest.send_offer("offer")
        assert await owner.next_offer(UNIT) == ("p2", "offer")
        for client in (owner, honest):
            await client.close()

    run(body)


def test_an_answer_for_a_peer_never_named_refuses_the_owner_and_tells_the_scientists() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        scientist = await joined_scientist(url, session_id)
        await owner.send_answer("a", peer="p9")
        with pytest.raises(SignalingServerError) as refusal:
            await owner.next_offer(UNIT)
        assert refusal.value.server_code == "malformed"
        assert "has no scientist 'p9'" in str(refusal.value)
        with pytest.raises(SignalingServerError) as told:
            await scientist.wait_answer(UNIT)
        assert told.value.server_code == "peer_left"
        for client in (owner, scientist):
            await client.close()

    run(body)


def test_an_answer_before_the_peers_offer_is_refused() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        scientist = await joined_scientist(url, session_id)
        assert await owner.next_event(UNIT) == PeerJoined(peer="p1")
        await owner.send_answer("a", peer="p1")
        with pytest.raises(SignalingServerError) as refusal:
            await owner.next_event(UNIT)
        assert "\"answer\" to 'p1' arrived before its offer" in str(refusal.value)
        await scientist.close()
        await owner.close()

    run(body)


# --------------------------------------------------------------------------- how sessions end


def test_an_open_session_ends_once_max_peers_are_answered() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url, max_peers=2)
        for n in (1, 2):
            scientist = await joined_scientist(url, session_id)
            await scientist.send_offer(f"offer-{n}")
            assert await owner.next_offer(UNIT) == (f"p{n}", f"offer-{n}")
            await owner.send_answer(f"answer-{n}", peer=f"p{n}")
            assert await scientist.wait_answer(UNIT) == f"answer-{n}"
            await scientist.close()
        assert await owner.next_offer(UNIT) is None
        assert await owner.next_event(UNIT) == Closed(reason="max_peers", answered=2)
        late = await SignalingClient.connect(url)
        with pytest.raises(SignalingServerError) as refusal:
            await late.join(session_id)
        assert refusal.value.server_code == "unknown_session"
        await late.close()
        await owner.close()
        assert server.session_count == 0

    run(body)


def test_an_open_session_for_one_scientist_outlives_a_scientist_that_fails() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner = await SignalingClient.connect(url)
        session_id = await owner.register(max_peers=1, open_session=True)
        assert owner.open_session
        fails = await joined_scientist(url, session_id)
        await fails.close()
        succeeds = await joined_scientist(url, session_id)
        await succeeds.send_offer("offer")
        departed: list[PeerLeft] = []
        assert await owner.next_offer(UNIT, on_peer_left=departed.append) == ("p2", "offer")
        assert [(d.peer, d.reason) for d in departed] == [("p1", "left")]
        await owner.send_answer("answer", peer="p2")
        assert await succeeds.wait_answer(UNIT) == "answer"
        assert await owner.next_offer(UNIT) is None
        assert await owner.next_event(UNIT) == Closed(reason="max_peers", answered=1)
        for client in (owner, succeeds):
            await client.close()

    run(body)


def test_pending_joins_are_bounded_per_session() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        first = await joined_scientist(url, session_id)
        second = await joined_scientist(url, session_id)
        third = await SignalingClient.connect(url)
        with pytest.raises(SignalingServerError) as refusal:
            await third.join(session_id)
        assert refusal.value.server_code == "session_busy"
        assert "has 2 scientists mid-exchange already (limit 2)" in str(refusal.value)
        await third.close()
        await first.send_offer("offer-1")
        await events_until(owner, lambda ev: bool(offers_from(ev)))
        await owner.send_answer("answer-1", peer="p1")
        assert await first.wait_answer(UNIT) == "answer-1"
        again = await joined_scientist(url, session_id)  # a place is free again
        await owner.close()
        with pytest.raises(SignalingServerError) as told:
            await again.wait_answer(UNIT)
        assert told.value.server_code == "peer_left"
        for client in (first, second, again):
            await client.close()

    run(body, max_pending_joins=2)


def test_a_session_admits_no_more_scientists_than_it_has_left_to_answer() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url, max_peers=2)
        joined = [await joined_scientist(url, session_id) for _ in range(2)]
        extra = await SignalingClient.connect(url)
        with pytest.raises(SignalingServerError) as refusal:
            await extra.join(session_id)
        assert refusal.value.server_code == "session_busy"
        assert "accepts 2 scientists" in str(refusal.value)
        for client in (extra, owner, *joined):
            await client.close()

    run(body)


def test_a_declined_scientist_is_told_why_and_the_session_goes_on() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        unwelcome = await joined_scientist(url, session_id)
        await unwelcome.send_offer("offer-1")
        assert await owner.next_offer(UNIT) == ("p1", "offer-1")
        await owner.decline("p1", "client ID not confirmed")
        with pytest.raises(SignalingServerError) as declined:
            await unwelcome.wait_answer(UNIT)
        assert declined.value.server_code == "declined"
        assert "declined this connection (client ID not confirmed)" in str(declined.value)
        welcome = await joined_scientist(url, session_id)
        await welcome.send_offer("offer-2")
        assert await owner.next_offer(UNIT) == ("p2", "offer-2")
        await owner.send_answer("answer-2", peer="p2")
        assert await welcome.wait_answer(UNIT) == "answer-2"
        for client in (owner, unwelcome, welcome):
            await client.close()

    run(body)


def test_the_owner_leaving_or_closing_tells_every_scientist_mid_exchange() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        for ending in ("leave", "close_session"):
            owner, session_id = await open_owner(url)
            waiting = [await joined_scientist(url, session_id) for _ in range(3)]
            await events_until(owner, lambda ev: len(ev) == 3)  # all three joined
            if ending == "leave":
                await owner.close()
            else:
                await owner.close_session()
                assert await owner.next_offer(UNIT) is None
            for scientist in waiting:
                with pytest.raises(SignalingServerError) as told:
                    await scientist.wait_answer(UNIT)
                assert told.value.server_code == "peer_left"
                await scientist.close()
            await owner.close()
        assert server.session_count == 0

    run(body)


def test_an_open_session_expires_without_a_message_from_its_owner() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        async with connect(url, compression=None) as owner:
            await owner.send(json.dumps({"type": "register", "max_peers": None}))
            registered = json.loads(await owner.recv())
            scientist = await joined_scientist(url, registered["session_id"])
            assert json.loads(await owner.recv()) == {"type": "peer_joined", "peer": "p1"}
            reply, close_code = await refused(owner)  # the owner says nothing
            assert reply["code"] == "expired"
            assert "expired after 0.5 s without a message from its owner" in reply["message"]
            assert close_code == 1008
            with pytest.raises(SignalingServerError) as told:
                await scientist.wait_answer(UNIT)
            assert told.value.server_code == "expired"
            await scientist.close()

    run(body, session_ttl=0.5)


def test_a_ping_restarts_an_open_sessions_ttl() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        async with connect(url, compression=None) as owner:
            await owner.send(json.dumps({"type": "register", "max_peers": 4}))
            session_id = json.loads(await owner.recv())["session_id"]
            deadline = server._sessions[session_id].deadline
            assert deadline is not None
            before = deadline.when()
            assert before is not None
            await owner.send(json.dumps({"type": "ping"}))
            assert json.loads(await owner.recv()) == {"type": "pong", "ttl_secs": 600}
            after = deadline.when()
            assert after is not None and after > before

    run(body)


def test_the_client_pings_while_it_waits_for_scientists() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        deadline = server._sessions[session_id].deadline
        assert deadline is not None
        before = deadline.when()
        assert before is not None
        owner.ttl_secs = 0.06  # as if the server's TTL were short: a ping every 20 ms
        with pytest.raises(DuetTimeout):
            await owner.next_offer(0.5)
        after = deadline.when()
        assert after is not None and after > before
        await owner.close()

    run(body)


def test_a_scientist_that_does_not_complete_in_time_is_dropped_alone() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        departed: list[PeerLeft] = []
        # the owner waits (and so pings, every 2/3 s) while p1 lets its exchange expire
        waiting = asyncio.create_task(owner.next_offer(UNIT, on_peer_left=departed.append))
        silent = await joined_scientist(url, session_id)
        with pytest.raises(SignalingServerError) as expired:
            await silent.wait_answer(UNIT)  # it never offers
        assert expired.value.server_code == "expired"
        assert "did not complete within 2 s of joining" in str(expired.value)
        await silent.close()
        after = await joined_scientist(url, session_id)
        await after.send_offer("offer")
        assert await waiting == ("p2", "offer")
        assert [(d.peer, d.reason) for d in departed] == [("p1", "expired")]
        for client in (owner, after):
            await client.close()

    run(body, session_ttl=2)


def test_a_join_that_never_offers_gives_its_place_back_after_the_join_timeout() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        waiting = asyncio.create_task(owner.next_offer(UNIT))
        stalled = await raw_scientist(url, session_id)  # joins, then says nothing
        busy = await SignalingClient.connect(url)
        with pytest.raises(SignalingServerError) as refusal:
            await busy.join(session_id)
        assert refusal.value.server_code == "session_busy"
        await busy.close()
        reply, code = await refused(stalled)
        assert (reply["code"], code) == ("expired", 1008)
        assert "did not complete within 1 s of joining" in reply["message"]
        after = await joined_scientist(url, session_id)  # its place is free again
        await after.send_offer("offer")
        assert await waiting == ("p2", "offer")
        for client in (owner, after):
            await client.close()

    run(body, max_pending_joins=1, join_timeout=1)


def test_an_offer_left_unanswered_gives_its_place_back_after_the_join_timeout() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, session_id = await open_owner(url)
        departed: list[PeerLeft] = []
        waiting = asyncio.create_task(owner.next_offer(UNIT, on_peer_left=departed.append))
        ignored = await joined_scientist(url, session_id)
        await ignored.send_offer("offer-1")
        assert await waiting == ("p1", "offer-1")  # the owner never answers it
        with pytest.raises(SignalingServerError) as expired:
            await ignored.wait_answer(UNIT)
        assert expired.value.server_code == "expired"
        after = await joined_scientist(url, session_id)
        await after.send_offer("offer-2")
        assert await owner.next_offer(UNIT, on_peer_left=departed.append) == ("p2", "offer-2")
        assert [(d.peer, d.reason) for d in departed] == [("p1", "expired")]
        for client in (owner, ignored, after):
            await client.close()

    run(body, max_pending_joins=1, join_timeout=1)


# --------------------------------------------------------------------------- one-scientist sessions


@pytest.mark.parametrize("register", [{"type": "register"}, {"type": "register", "max_peers": 1}])
def test_a_one_scientist_session_speaks_exactly_the_old_protocol(register: dict[str, Any]) -> None:
    async def body(url: str, server: SignalingServer) -> None:
        async with connect(url, compression=None) as owner:
            await owner.send(json.dumps(register))
            registered = json.loads(await owner.recv())
            assert set(registered) == {"type", "session_id", "ttl_secs"}
            assert registered["ttl_secs"] == 600 and isinstance(registered["ttl_secs"], int)
            session_id = registered["session_id"]
            scientist = await raw_scientist(url, session_id)
            assert json.loads(await owner.recv()) == {"type": "peer_joined"}
            second = await SignalingClient.connect(url)
            with pytest.raises(SignalingServerError) as taken:
                await second.join(session_id)
            assert taken.value.server_code == "session_taken"
            await second.close()
            await scientist.send(json.dumps({"type": "offer", "sdp": "o"}))
            assert json.loads(await owner.recv()) == {"type": "offer", "sdp": "o"}
            await owner.send(json.dumps({"type": "ping"}))
            reply, _ = await refused(owner)
            assert reply["code"] == "malformed"
            assert "one-scientist session" in reply["message"]
            reply, _ = await refused(scientist)
            assert reply["code"] == "peer_left"
            await scientist.close()

    run(body)


def test_next_offer_works_for_a_one_scientist_session() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner = await SignalingClient.connect(url)
        session_id = await owner.register()
        assert not owner.open_session
        scientist = await joined_scientist(url, session_id)
        await scientist.send_offer("o")
        assert await owner.next_offer(UNIT) == (ONLY_PEER, "o")
        await owner.send_answer("a", peer=ONLY_PEER)
        assert await scientist.wait_answer(UNIT) == "a"
        assert await owner.next_offer(UNIT) is None
        for client in (owner, scientist):
            await client.close()

    run(body)


def test_calls_that_do_not_fit_the_session_raise_usage_error_before_sending() -> None:
    async def body(url: str, server: SignalingServer) -> None:
        owner, _ = await open_owner(url, max_peers=3)
        with pytest.raises(UsageError, match="next_offer"):
            await owner.wait_offer(UNIT)
        with pytest.raises(UsageError, match="peer=peer"):
            await owner.send_answer("a")
        with pytest.raises(UsageError, match="peer ID"):
            await owner.send_answer("a", peer="not a peer")
        with pytest.raises(UsageError, match="already serves a session"):
            await owner.register()
        one = await SignalingClient.connect(url)
        await one.register()
        with pytest.raises(UsageError, match="open session"):
            await one.decline("p1")
        with pytest.raises(UsageError, match="one scientist"):
            await one.send_answer("a", peer="p2")
        fresh = await SignalingClient.connect(url)
        with pytest.raises(UsageError, match="register"):
            await fresh.next_offer(UNIT)
        with pytest.raises(UsageError, match="max_peers"):
            await fresh.register(max_peers=0)
        for client in (owner, one, fresh):
            await client.close()

    run(body)


def test_an_open_sessions_life_is_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    async def body(url: str, server: SignalingServer) -> str:
        owner, session_id = await open_owner(url, max_peers=2)
        leaves = await joined_scientist(url, session_id)
        await leaves.close()
        for n in (2, 3):
            scientist = await joined_scientist(url, session_id)
            await scientist.send_offer("o")
            assert await owner.next_offer(UNIT) == (f"p{n}", "o")
            await owner.send_answer("a", peer=f"p{n}")
            await scientist.wait_answer(UNIT)
            await scientist.close()
        assert await owner.next_offer(UNIT) is None
        await owner.close()
        return session_id

    with caplog.at_level(logging.INFO, logger="signaling_server"):
        session_id = run(body)
    lines = [r.getMessage() for r in caplog.records if session_id[:8] in r.getMessage()]
    assert len(lines) == 1, lines
    assert re.search(
        r"open \(max_peers 2\): 3 joined, 2 answered, 1 left, 0 declined, max_peers reached "
        r"after [0-9.]+ s$",
        lines[0],
    )
    assert session_id not in lines[0]
