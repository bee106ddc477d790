"""Bad clients cannot hurt others: rate limits per source address, slow readers dropped.

The server runs as a real process on 127.0.0.1; a hostile client floods it from another
loopback address (127.0.0.9: Linux routes all of 127/8 to the loopback interface) while an
ordinary one pairs from 127.0.0.1. The token bucket itself is tested with explicit times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from duet.pairing.signaling import SignalingClient
from signaling_server._limits import Admission, RateLimiter
from tests.processes import start_signaling_server

UNIT = 10.0  # seconds; every wait here is a multiple of it, none is asserted
T = TypeVar("T")
FLOODER = "127.0.0.9"


def run(body: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(body(), 6 * UNIT)

    return asyncio.run(main())


@pytest.fixture
def limited() -> Iterator[str]:
    server, url = start_signaling_server("--connections-per-sec", "5", "--connection-burst", "20")
    try:
        yield url
    finally:
        server.stop()


async def pair_once(url: str, n: int) -> str:
    owner = await SignalingClient.connect(url)
    scientist = await SignalingClient.connect(url)
    try:
        session_id = await owner.register()
        await scientist.join(session_id, UNIT)
        await scientist.send_offer(f"offer-{n}")
        await owner.send_answer(f"answer-to-{await owner.wait_offer(UNIT)}")
        return await scientist.wait_answer(UNIT)
    finally:
        await owner.close()
        await scientist.close()


async def flood_once(url: str, n: int) -> str:
    """One hostile connection from FLOODER: a join or a register; the error code it got."""
    first = {"type": "join", "session_id": secrets.token_hex(16)} if n % 2 else {"type": "register"}
    try:
        async with connect(url, compression=None, local_addr=(FLOODER, 0), open_timeout=UNIT) as ws:
            with contextlib.suppress(ConnectionClosed):  # refused before it says a word
                await ws.send(json.dumps(first))
            reply = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
    except ConnectionClosed:
        return "closed"
    except InvalidStatus as exc:  # told burst times already: a bare HTTP refusal
        assert exc.response.status_code == 429
        assert exc.response.body.startswith(f"rate_limited: {FLOODER} opens".encode())
        return "http_429"
    if reply["type"] == "error":
        if reply["code"] == "rate_limited":
            assert f"{FLOODER} opens connections faster than" in reply["message"]
            assert "wait a second and try again" in reply["message"]
        return str(reply["code"])
    return str(reply["type"])


def test_a_flood_from_one_address_is_refused_while_another_clients_pairs_succeed(
    limited: str,
) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()

        async def flood() -> Counter[str]:
            codes: Counter[str] = Counter()
            codes["secs"] = -int(loop.time())
            for wave in range(6):  # waves of 50 connections at once
                replies = await asyncio.gather(
                    *(flood_once(limited, 50 * wave + n) for n in range(50))
                )
                codes.update(replies)
            codes["secs"] += int(loop.time()) + 1
            return codes

        async def pairs() -> list[str]:
            return [await pair_once(limited, n) for n in range(6)]

        codes, answers = await asyncio.gather(flood(), pairs())
        assert answers == [f"answer-to-offer-{n}" for n in range(6)]
        # the flood got its burst (registered, or told the ID is unknown); every other
        # connection was refused: told why 19 times, then, as it went on faster than 5 a
        # second, with a bare HTTP 429
        served = codes["registered"] + codes["unknown_session"]
        assert served + codes["rate_limited"] + codes["http_429"] == 300, codes
        assert 20 <= served <= 20 + 5 * codes["secs"], codes
        assert codes["rate_limited"] >= 19 and codes["http_429"] > 0, codes

    run(body)


# --------------------------------------------------------------------------- slow readers


def small_window_socket(url: str) -> socket.socket:
    """A TCP connection to ``url`` that advertises a tiny receive window."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(UNIT)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return sock


async def joined(url: str, session_id: str) -> ClientConnection:
    ws = await connect(url, compression=None, max_size=None)
    await ws.send(json.dumps({"type": "join", "session_id": session_id}))
    assert json.loads(await asyncio.wait_for(ws.recv(), UNIT)) == {"type": "joined"}
    return ws


async def error_of(ws: ClientConnection) -> dict[str, Any]:
    reply = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
    assert reply["type"] == "error", reply
    return dict(reply)


def test_an_owner_that_reads_nothing_is_dropped_and_its_scientists_told() -> None:
    server, url = start_signaling_server(
        "--max-message-bytes", str(2 << 20), "--send-timeout", "1", "--join-timeout", "600"
    )

    async def body() -> None:
        # the owner registers, then stops reading (one message queued at most, a tiny window)
        owner = await connect(
            url, compression=None, max_queue=1, max_size=None, sock=small_window_socket(url)
        )
        await owner.send(json.dumps({"type": "register", "max_peers": None}))
        session_id = json.loads(await owner.recv())["session_id"]
        scientists = [await joined(url, session_id) for _ in range(8)]
        sdp = "v=0 " + "x" * ((1 << 20) - 8)  # 8 offers of 1 MiB: more than kernel buffers
        for scientist in scientists:
            await scientist.send(json.dumps({"type": "offer", "sdp": sdp}))
        for scientist in scientists:
            error = await error_of(scientist)
            assert error["code"] == "peer_left", error
            assert "the owner disconnected" in error["message"]
            await scientist.close()
        # the server goes on serving everyone else
        assert await pair_once(url, 1) == "answer-to-offer-1"
        owner.transport.abort()

    try:
        run(body)
        assert "read nothing for 1 s" in "".join(server.errors)
    finally:
        server.stop()


# --------------------------------------------------------------------------- the bucket


def test_a_bucket_allows_its_burst_then_its_rate_and_addresses_do_not_share() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another address has a bucket of its own
    assert limiter.allow("a", 1.0)  # the refusal took it to -1: one token after a second
    assert not limiter.allow("a", 1.0)
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]


def test_an_address_that_goes_on_connecting_stays_refused_until_it_slows_down() -> None:
    limiter = RateLimiter(rate=1.0, burst=2)
    verdicts = [limiter.admit("a", 0.0) for _ in range(5)]
    allow, refuse, shut = Admission.ALLOW, Admission.REFUSE, Admission.SHUT
    assert verdicts == [allow, allow, refuse, shut, shut]  # told why once (burst - 1), then shut
    # one attempt a second is still faster than the bucket climbs back from its floor
    assert [limiter.admit("a", t) for t in (1.0, 2.0, 3.0)] == [shut, shut, shut]
    assert limiter.admit("a", 6.0) is allow  # three seconds of quiet: (burst + 1) / rate
    assert limiter.admit("a", 6.0) is refuse


def test_buckets_are_forgotten_once_full_and_their_number_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, max_addresses=100)
    for n in range(1000):
        limiter.allow(f"10.0.{n // 256}.{n % 256}", 0.0)
        assert len(limiter) <= 100
    limiter.allow("10.1.0.0", 10.0)  # all the others have refilled by now
    assert len(limiter) == 1


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5)])
def test_a_bucket_refuses_limits_that_allow_nothing(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive and burst at least 1"):
        RateLimiter(rate, burst)
