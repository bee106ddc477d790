"""The registry on the signaling server: signed owner records, searched, renewed, withdrawn, and
refused when forged, replayed, stale, oversized or flooding; in memory and in a real Redis
shared by two server instances. And the scientist's side: a hostile server's forged or expired
record is refused by the client.

Servers run embedded on this test's loop (127.0.0.1, port 0); clients are duet's registry
client, or raw websockets when they play a hostile part.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from duet.errors import UsageError
from duet.identity import Identity
from duet.pairing.signaling import SignalingClient, SignalingServerError
from duet.registry.client import RegistryClient, RegistryError, verified
from duet.registry.records import sign_record, sign_search, sign_withdrawal
from signaling_server import (
    MemoryRegistryStore,
    RedisRegistryStore,
    Registry,
    RegistryLimits,
    start_embedded_server,
)
from signaling_server._messages import Reject, parse
from signaling_server.protocol import (
    DatasetListing,
    Listing,
    Listings,
    Search,
    SignedRecord,
    to_wire,
)
from signaling_server.records import RecordError, check_signed, record_payload

from .redis_server import RedisServer

UNIT = 10.0  # seconds; every wait here is a multiple of it, none is asserted
T = TypeVar("T")

DIGITS = DatasetListing(
    id="odigits", tags=["digits", "images"], description="8x8 handwritten digits",
    shape=[100, 64], dtype="float32", size=25600,
)  # fmt: skip
BIRTHS = DatasetListing(id="obirths", tags=["birth-records"], description="births", shape=[50, 3])


def run(body: Callable[..., Awaitable[T]], *, registry: Registry | None = None, **limits: Any) -> T:
    """Run ``body(url, server)`` against a fresh embedded server, bounded in time."""

    async def main() -> T:
        server, url = await start_embedded_server("127.0.0.1", 0, registry=registry, **limits)
        try:
            return await asyncio.wait_for(body(url, server), 3 * UNIT)
        finally:
            await server.close()

    return asyncio.run(main())


class Seq:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def record(who: Identity, seq: int, *datasets: DatasetListing, **fields: Any) -> SignedRecord:
    return sign_record(
        who, session_id=fields.pop("session_id", "a" * 32), datasets=datasets or (DIGITS,),
        seq=seq, owner_name=fields.pop("owner_name", "hospital"), **fields,
    )  # fmt: skip


async def announce(url: str, signed: SignedRecord) -> Any:
    async with await RegistryClient.connect(url) as registry:
        return await registry.announce(signed)


async def search(url: str, tags: list[str], owner: str | None = None) -> list[Any]:
    async with await RegistryClient.connect(url) as registry:
        return await registry.search(tags, owner=owner)


async def refused(url: str, signed: SignedRecord) -> SignalingServerError:
    with pytest.raises(SignalingServerError) as caught:
        await announce(url, signed)
    return caught.value


async def raw(url: str, text: str) -> tuple[dict[str, Any], int | None]:
    """Send ``text`` on a new connection; the server's reply and its close code."""
    async with connect(url, compression=None, max_size=None) as ws:
        await ws.send(text)
        reply = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
        await asyncio.wait_for(ws.wait_closed(), UNIT)
        return reply, ws.close_code


# --------------------------------------------------------------------------- the happy path


def test_announced_record_is_found_by_tag_with_its_metadata_and_online_flag():
    owner = Identity.ephemeral("owner")

    async def body(url: str, server: Any) -> None:
        signaling = await SignalingClient.connect(url)
        session_id = await signaling.register(max_peers=None)
        reply = await announce(url, record(owner, 1, DIGITS, BIRTHS, session_id=session_id))
        assert (reply.owner_id, reply.seq) == (owner.id, 1)
        [found] = await search(url, ["digits"])
        assert found.record.owner_id == owner.id and found.online
        assert found.record.datasets[0] == DIGITS  # metadata only: there is no value to carry
        assert await search(url, ["digits", "birth-records"]) == []  # one dataset has all tags
        assert [f.record.owner_id for f in await search(url, ["birth-records"])] == [owner.id]
        assert await search(url, ["nothing-like-this"]) == []
        await signaling.close_session()
        await signaling.close()
        [found] = await search(url, [], owner=owner.id)
        assert not found.online  # its session is gone: the record says where, not that it is up

    run(body)


def test_withdrawn_record_is_no_longer_found_and_cannot_be_replayed():
    owner = Identity.ephemeral()
    seq = Seq()

    async def body(url: str, server: Any) -> None:
        old = record(owner, seq())
        await announce(url, old)
        async with await RegistryClient.connect(url) as registry:
            gone = await registry.withdraw(sign_withdrawal(owner, seq=seq()))
        assert gone.found
        assert await search(url, ["digits"]) == []
        error = await refused(url, old)  # the server that saw the withdrawal keeps the seq
        assert error.server_code == "replay"

    run(body)


def test_record_expires_unless_renewed():
    now = [time.time()]
    registry = Registry(clock=lambda: now[0])
    owner = Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        await announce(url, record(owner, 1, ttl_secs=60, issued_at=int(now[0])))
        now[0] += 45
        await announce(url, record(owner, 2, ttl_secs=60, issued_at=int(now[0])))  # renewed
        now[0] += 45  # 90 s after the first: only the renewal keeps it (the server's clock)
        async with connect(url, compression=None) as ws:
            await ws.send('{"type": "search", "tags": ["digits"]}')
            assert len(json.loads(await ws.recv()).get("results", [])) == 1
            now[0] += 30
            await ws.send('{"type": "search", "tags": ["digits"]}')
            assert json.loads(await ws.recv()).get("results", []) == []
        assert await registry.store.count(now=now[0]) == 0

    run(body, registry=registry)


# --------------------------------------------------------------------------- hostile owners


def test_forged_signature_is_refused_and_the_server_keeps_serving():
    owner = Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        signed = record(owner, 1)
        forged = signed.model_copy(
            update={"record": signed.record.model_copy(update={"owner_name": "the real hospital"})}
        )
        error = await refused(url, forged)
        assert error.server_code == "bad_signature"
        assert "not signed by that owner" in str(error)
        mallory = Identity.ephemeral()  # signed by another key, still naming the owner's key
        other = SignedRecord(
            record=signed.record,
            signature=mallory.sign(record_payload(signed.record)).hex(),
        )
        assert (await refused(url, other)).server_code == "bad_signature"
        assert await search(url, ["digits"]) == []
        await announce(url, signed)  # the genuine one still goes through
        assert len(await search(url, ["digits"])) == 1

    run(body)


def test_owner_id_not_of_the_key_is_refused():
    owner, victim = Identity.ephemeral(), Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        signed = record(owner, 1)
        claim = signed.record.model_copy(update={"owner_id": victim.id})
        stolen = SignedRecord(record=claim, signature=owner.sign(record_payload(claim)).hex())
        error = await refused(url, stolen)
        assert error.server_code == "wrong_id"
        assert victim.id in str(error)

    run(body)


def test_replayed_older_or_equal_record_is_refused():
    owner = Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        first, second = record(owner, 5), record(owner, 6, BIRTHS)
        await announce(url, second)
        assert (await refused(url, first)).server_code == "replay"
        assert (await refused(url, second)).server_code == "replay"
        [found] = await search(url, [], owner=owner.id)
        assert found.record.seq == 6  # still the newest

    run(body)


def test_stale_or_future_records_are_refused():
    owner = Identity.ephemeral()
    now = int(time.time())

    async def body(url: str, server: Any) -> None:
        old = await refused(url, record(owner, 1, issued_at=now - 3600))
        assert old.server_code == "stale" and "sign a new record" in str(old)
        ahead = await refused(url, record(owner, 2, issued_at=now + 3600))
        assert ahead.server_code == "future" and "check the owner's clock" in str(ahead)
        await announce(url, record(owner, 3, issued_at=now))

    run(body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(datasets=[r["datasets"][0]] * 65), "signed.record.datasets"),
        (lambda r: r["datasets"][0].update(description="x" * 1001), "description"),
        (lambda r: r["datasets"][0].update(tags=["t"] * 17), "tags"),
        (lambda r: r["datasets"][0].update(tags=["x" * 65]), "tags"),
        (lambda r: r.update(ttl_secs=10**6), "ttl_secs"),
        (lambda r: r.update(seq="7"), "seq"),
        (lambda r: r.update(owner_key="zz"), "owner_key"),
    ],
)
def test_oversized_or_malformed_records_get_a_clear_error(change, field):
    owner = Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        message = {"type": "announce", "signed": json.loads(record(owner, 1).model_dump_json())}
        change(message["signed"]["record"])
        reply, code = await raw(url, json.dumps(message))
        assert reply["type"] == "error" and reply["code"] == "malformed"
        assert field in reply["message"] and '"announce"' in reply["message"]
        assert code == 1008
        await announce(url, record(owner, 2))  # the server keeps serving

    run(body)


def test_garbage_and_oversized_messages_are_refused_and_the_server_keeps_serving():
    owner = Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        reply, code = await raw(url, '{"type": "search", "tags": "digits"}')
        assert reply["code"] == "malformed" and "tags" in reply["message"]
        reply, code = await raw(url, '{"type": "announce", "signed": 1')
        assert reply["code"] == "malformed" and "not valid JSON" in reply["message"]
        huge = {"type": "search", "tags": ["x" * 300_000]}
        reply, code = await raw(url, json.dumps(huge))
        assert (reply["code"], code) == ("too_big", 1009)
        async with connect(url, compression=None) as ws:  # a registry connection stays one
            await ws.send('{"type": "search"}')
            assert json.loads(await ws.recv())["type"] == "listings"
            await ws.send('{"type": "register"}')
            reply = json.loads(await ws.recv())
            assert reply["code"] == "malformed" and "registry connection" in reply["message"]
        await announce(url, record(owner, 1))
        assert len(await search(url, ["digits"])) == 1

    run(body)


def test_registration_flood_from_one_address_is_limited():
    registry = Registry(limits=RegistryLimits(max_per_address=3))
    owners = [Identity.ephemeral() for _ in range(5)]

    async def body(url: str, server: Any) -> None:
        for who in owners[:3]:
            await announce(url, record(who, 1))
        error = await refused(url, record(owners[3], 1))
        assert error.server_code == "too_many_registrations"
        assert "holds registrations of 3 owners" in str(error)
        await announce(url, record(owners[0], 2))  # renewing one held is fine
        async with await RegistryClient.connect(url) as client:
            await client.withdraw(sign_withdrawal(owners[1], seq=2))
        await announce(url, record(owners[4], 1))  # a withdrawal frees its place
        assert len(await search(url, ["digits"])) == 3

    run(body, registry=registry)


def test_an_identity_sending_too_fast_is_limited_and_no_one_can_spend_its_tokens():
    """Per identity, counted only once a signature holds: an owner renewing in a loop is
    slowed down, forged announcements in its name cost it nothing, others go on."""
    registry = Registry(limits=RegistryLimits(per_identity_rate=0.001, per_identity_burst=3))
    owner, other = Identity.ephemeral("owner"), Identity.ephemeral("other")
    seq = Seq()

    async def body(url: str, server: Any) -> None:
        forged = record(owner, 1000).model_copy(update={"signature": "00" * 64})
        for _ in range(5):  # a stranger's forgeries in the owner's name: refused, not counted
            assert (await refused(url, forged)).server_code == "bad_signature"
        async with await RegistryClient.connect(url) as client:
            for _ in range(3):
                await client.announce(record(owner, seq()))
        error = await refused(url, record(owner, seq()))
        assert error.server_code == "rate_limited" and owner.id in str(error)
        await announce(url, record(other, 1))  # another identity is untouched
        async with await RegistryClient.connect(url) as client:  # one connection, anonymous
            for _ in range(3):
                await client.search(["digits"], identity=None)
            with pytest.raises(SignalingServerError) as caught:
                await client.search(["digits"], identity=None)
            assert caught.value.server_code == "rate_limited"

    run(body, registry=registry)


def test_a_search_beyond_the_limits_is_refused_before_it_is_sent():
    async def body(url: str, server: Any) -> None:
        async with await RegistryClient.connect(url) as client:
            with pytest.raises(UsageError, match="at most 8 tags"):
                await client.search(["x"] * 9)
            with pytest.raises(UsageError, match="is not an owner ID"):
                await client.search([], owner="hospital")
            assert await client.search(["x"]) == []  # the connection is still good

    run(body)


def test_online_may_come_from_an_awaitable_lookup():
    owner = Identity.ephemeral()

    class SharedSessions:  # as sessions shared across instances would answer
        async def __call__(self, session_id: str) -> bool:
            await asyncio.sleep(0)
            return session_id == "a" * 32

    async def body(url: str, server: Any) -> None:
        await announce(url, record(owner, 1))
        reply = await server.registry._answer(Search(tags=["digits"]), "x", SharedSessions())
        assert [r.online for r in reply.results] == [True]

    run(body)


def test_a_full_registry_refuses_new_owners_and_still_renews_those_it_holds():
    registry = Registry(limits=RegistryLimits(max_records=1))
    first, second = Identity.ephemeral(), Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        await announce(url, record(first, 1))
        error = await refused(url, record(second, 1))
        assert error.server_code == "registry_full" and "records of 1 owners" in str(error)
        await announce(url, record(first, 2))

    run(body, registry=registry)


GENUINE = record(Identity.ephemeral(), 3, DIGITS, BIRTHS)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
RECORD_PATHS = st.sampled_from([
    ("owner_key",), ("owner_id",), ("session_id",), ("owner_name",), ("datasets",),
    ("issued_at",), ("seq",), ("ttl_secs",), ("datasets", 0, "id"), ("datasets", 0, "tags"),
    ("datasets", 1, "shape"), ("datasets", 0, "size"), ("datasets", 1, "description"),
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(RECORD_PATHS, ANY_JSON)
def test_any_change_to_a_signed_record_is_refused_cleanly(path, value):
    message = {"type": "announce", "signed": json.loads(GENUINE.model_dump_json())}
    where = message["signed"]["record"]
    for step in path[:-1]:
        where = where[step]
    where[path[-1]] = value
    try:
        parsed = parse(json.dumps(message), 256 * 1024)
    except Reject as rej:  # not a record at all: malformed, with a message
        assert rej.code == "malformed" and rej.message
        return
    if parsed.signed == GENUINE:  # the same value written another way (1.0 for 1, say)
        return
    with pytest.raises(RecordError):
        check_signed(parsed.signed)


def test_a_failing_or_silent_store_is_a_clear_error_and_the_server_goes_on():
    class Broken(MemoryRegistryStore):
        async def search(self, tags, owner, *, now, limit):  # type: ignore[no-untyped-def]
            raise ConnectionError("Redis is down")

        async def put(self, signed, **fields):  # type: ignore[no-untyped-def]
            await asyncio.Event().wait()  # never answers

    registry = Registry(Broken(), RegistryLimits(store_timeout_secs=0.2))

    async def body(url: str, server: Any) -> None:
        with pytest.raises(SignalingServerError) as failed:
            await search(url, ["digits"])
        assert failed.value.server_code == "registry_unavailable"
        assert "failed (ConnectionError); try again shortly" in str(failed.value)
        error = await refused(url, record(Identity.ephemeral(), 1))
        assert error.server_code == "registry_unavailable" and "did not answer" in str(error)
        signaling = await SignalingClient.connect(url)  # sessions are served as ever
        assert await signaling.register()
        await signaling.close()

    run(body, registry=registry)


def test_a_record_for_an_audience_is_shown_only_to_a_search_signed_by_one_of_it():
    owner, alice, bob = Identity.ephemeral(), Identity.ephemeral(), Identity.ephemeral()

    async def body(url: str, server: Any) -> None:
        await announce(url, record(owner, 1, audience=[alice.id]))
        await announce(url, record(Identity.ephemeral(), 1))  # open to anyone
        async with await RegistryClient.connect(url) as client:
            anyone = await client.search(["digits"])
            to_alice = await client.search(["digits"], identity=alice)
            to_bob = await client.search(["digits"], identity=bob)
        assert owner.id not in {f.record.owner_id for f in anyone}
        assert owner.id in {f.record.owner_id for f in to_alice} and len(to_alice) == 2
        assert owner.id not in {f.record.owner_id for f in to_bob} and len(to_bob) == 1

        signed = sign_search(alice, Search(tags=["digits"]))
        proof = signed.proof
        assert proof is not None
        as_alice = proof.model_copy(update={"scientist_key": bob.public_key.hex()})
        other_search = Search(tags=["births"], proof=proof)  # alice's proof, another search
        stale = sign_search(alice, Search(tags=["digits"]), issued_at=int(time.time()) - 3600)
        for bad, code in [
            (signed.model_copy(update={"proof": as_alice}), "wrong_id"),
            (other_search, "bad_signature"),
            (stale, "stale"),
        ]:
            reply, close = await raw(url, to_wire(bad))
            assert (reply["code"], close) == (code, 1008), reply

    run(body)


# --------------------------------------------------------------------------- hostile servers


def test_client_refuses_forged_expired_and_unasked_records():
    owner = Identity.ephemeral()
    now = time.time()
    good = record(owner, 1)
    verified(good, ["digits"], None, now=now)
    forged = good.model_copy(
        update={"record": good.record.model_copy(update={"session_id": "b" * 32})}
    )
    with pytest.raises(RegistryError, match="not signed by that owner"):
        verified(forged, ["digits"], None, now=now)
    with pytest.raises(RegistryError, match="expired"):
        verified(good, ["digits"], None, now=now + good.record.ttl_secs + 60)
    with pytest.raises(RegistryError, match="does not answer the search"):
        verified(good, ["birth-records"], None, now=now)
    with pytest.raises(RegistryError, match="does not answer the search"):
        verified(good, [], Identity.ephemeral().id, now=now)


def test_hostile_server_listing_a_forged_or_old_record_is_refused_by_the_scientist():
    owner = Identity.ephemeral()
    good = record(owner, 2)
    forged = good.model_copy(
        update={"record": good.record.model_copy(update={"session_id": "b" * 32})}
    )
    old = record(owner, 1, issued_at=int(time.time()) - 3600)  # genuine, long expired

    async def hostile(ws: Any) -> None:
        await ws.recv()
        listings = Listings(results=[Listing(signed=s, online=True) for s in (forged, old, good)])
        await ws.send(to_wire(listings))
        await ws.wait_closed()

    async def main() -> None:
        async with serve(hostile, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}"
            found = await asyncio.wait_for(search(url, ["digits"]), UNIT)
            assert [f.record for f in found] == [good.record]
            async with await RegistryClient.connect(url) as client:
                with pytest.raises(RegistryError):
                    await client.search(["digits"], strict=True)

    asyncio.run(main())


# --------------------------------------------------------------------------- Redis


def test_two_instances_share_one_redis_and_refuse_a_replay_on_the_other():
    redis_asyncio = pytest.importorskip("redis.asyncio")
    owner = Identity.ephemeral()

    async def main(redis_url: str) -> None:
        clients = [redis_asyncio.Redis.from_url(redis_url) for _ in range(2)]
        stores = [RedisRegistryStore(c) for c in clients]
        a, url_a = await start_embedded_server(registry=Registry(stores[0]))
        b, url_b = await start_embedded_server(registry=Registry(stores[1]))
        try:
            old, new = record(owner, 1), record(owner, 2, DIGITS, BIRTHS)
            await announce(url_a, old)
            await announce(url_a, new)
            [found] = await search(url_b, ["birth-records"])  # announced on A, found on B
            assert found.record == new.record
            assert (await refused(url_b, old)).server_code == "replay"
            ttl = await clients[0].pttl(f"duet:registry:rec:{owner.id}")
            assert 0 < ttl <= new.record.ttl_secs * 1000  # it expires unless renewed
            async with await RegistryClient.connect(url_b) as registry:
                await registry.withdraw(sign_withdrawal(owner, seq=3))
            assert await search(url_a, ["digits"]) == []
            assert (await refused(url_a, new)).server_code == "replay"
            # racing announcements on both: whatever the order, the newest one is kept
            later = [record(owner, n) for n in range(10, 20)]
            await asyncio.gather(
                *(announce(url_a if n % 2 else url_b, s) for n, s in enumerate(later)),
                return_exceptions=True,
            )
            [found] = await search(url_a, [], owner=owner.id)
            assert found.record.seq == 19
        finally:
            await a.close()
            await b.close()
            for client in clients:
                await client.aclose()

    with RedisServer() as redis:
        asyncio.run(asyncio.wait_for(main(redis.url), 3 * UNIT))


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_stores_agree_on_replay_address_limit_and_search(kind):
    owners = [Identity.ephemeral() for _ in range(3)]

    async def contract(store: Any) -> None:
        now = time.time()
        put = dict(now=now, keep_seq_secs=200, max_per_address=2, max_records=3)
        await store.put(record(owners[0], 3), address="10.0.0.1", **put)
        await store.put(record(owners[1], 1, BIRTHS), address="10.0.0.1", **put)
        with pytest.raises(Exception, match="too_many"):
            await store.put(record(owners[2], 1), address="10.0.0.1", **put)
        await store.put(record(owners[2], 1), address="10.0.0.2", **put)
        with pytest.raises(Exception, match="full"):  # three owners held: no fourth
            await store.put(record(Identity.ephemeral(), 1), address="10.0.0.3", **put)
        await store.put(record(owners[2], 2), address="10.0.0.2", **put)  # a renewal is fine
        with pytest.raises(Exception, match="replay"):
            await store.put(record(owners[0], 3), address="10.0.0.1", **put)
        found = await store.search(["digits"], None, now=now, limit=10)
        assert {s.record.owner_id for s in found} == {owners[0].id, owners[2].id}
        assert len(await store.search(["digits"], None, now=now, limit=1)) == 1
        assert await store.withdraw(owners[0].id, 4, now=now, keep_seq_secs=200)
        with pytest.raises(Exception, match="replay"):
            await store.withdraw(owners[0].id, 4, now=now, keep_seq_secs=200)
        assert [s.record.owner_id for s in await store.search([], None, now=now, limit=10)] != []
        assert await store.count(now=now) == 2

    if kind == "memory":
        asyncio.run(contract(MemoryRegistryStore()))
        return
    redis_asyncio = pytest.importorskip("redis.asyncio")

    async def with_redis(url: str) -> None:
        client = redis_asyncio.Redis.from_url(url)
        try:
            await contract(RedisRegistryStore(client))
        finally:
            await client.aclose()

    with RedisServer() as redis:
        asyncio.run(asyncio.wait_for(with_redis(redis.url), 3 * UNIT))
