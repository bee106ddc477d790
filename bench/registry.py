"""The network's registry (issue 21): memory per idle registration, announce and search latency.

    PYTHONPATH=. python -m bench.registry [--owners 5000]

N owners, each with an identity of its own, announce one signed record listing one dataset
(three tags, a 60-character description, a shape): what a node listing one dataset sends.

1. Memory per idle registration: the store's own growth over the N records, in memory
   (``MemoryRegistryStore``, the records parsed from their wire text as the server does: the
   bytes ``tracemalloc`` counts, the parsed records with the store's indexes) and in a real redis-server
   (``RedisRegistryStore`` on a Unix socket: ``used_memory`` before and after, from ``INFO``).
2. Latency, through a real server on this loop (``start_embedded_server``, 127.0.0.1) over one
   registry connection: announcing one record, and a search matching 20 records, whose results
   the client verifies (signature, ID, expiry), in memory and with Redis; medians and p99.

Records are signed before anything is timed (signing is the owner's cost, not the registry's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from typing import Any

import redis.asyncio as aioredis

from duet.identity import Identity
from duet.registry.client import RegistryClient
from duet.registry.records import sign_record
from signaling_server import (
    MemoryRegistryStore,
    RedisRegistryStore,
    Registry,
    RegistryLimits,
    start_embedded_server,
)
from signaling_server.protocol import DatasetListing, SignedRecord
from tests.redis_server import RedisServer

LATENCY_SAMPLES = 300
SEARCH_HITS = 20


def records(owners: int) -> list[SignedRecord]:
    signed = []
    for n in range(owners):
        tags = ["births", "hospital", f"ward-{n}"] if n < SEARCH_HITS else ["digits", "images"]
        listing = DatasetListing(
            id=f"o{n:031x}", tags=tags, description=f"records of ward {n}, 2018 to 2022 (synthetic)",
            shape=[12_000, 3], dtype="int64", size=288_000,
        )  # fmt: skip
        signed.append(sign_record(
            Identity.ephemeral(f"owner {n}"), session_id=f"{n:032x}", datasets=[listing], seq=1,
            owner_name=f"hospital {n}",
        ))  # fmt: skip
    return signed


async def fill(store: Any, signed: list[SignedRecord]) -> None:
    now = time.time()
    for record in signed:
        await store.put(
            record, address="127.0.0.1", now=now, keep_seq_secs=300.0,
            max_per_address=len(signed) + 1, max_records=len(signed) + 1,
        )  # fmt: skip


async def memory_store_bytes(signed: list[SignedRecord]) -> float:
    """The records parsed from their wire text, as the server does, and stored: all of it
    counted (the parsed records are what the store keeps)."""
    texts = [record.model_dump_json() for record in signed]
    store = MemoryRegistryStore()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await fill(store, [SignedRecord.model_validate_json(text) for text in texts])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(signed)


async def redis_store_bytes(url: str, signed: list[SignedRecord]) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
        before = (await client.info("memory"))["used_memory"]
        await fill(RedisRegistryStore(client), signed)
        after = (await client.info("memory"))["used_memory"]
        return (after - before) / len(signed)
    finally:
        await client.aclose()


async def latencies(store: Any, signed: list[SignedRecord]) -> tuple[list[float], list[float]]:
    """Announce the records one by one over one connection (timed: the last LATENCY_SAMPLES),
    then search for the SEARCH_HITS tagged "births" LATENCY_SAMPLES times."""
    limits = RegistryLimits(
        max_per_address=len(signed) + 1, max_records=len(signed) + 1,
        per_identity_burst=LATENCY_SAMPLES + 1,
    )  # fmt: skip
    server, url = await start_embedded_server(registry=Registry(store, limits))
    announce: list[float] = []
    search: list[float] = []
    try:
        async with await RegistryClient.connect(url) as client:
            for n, record in enumerate(signed):
                started = time.perf_counter()
                await client.announce(record)
                if n >= len(signed) - LATENCY_SAMPLES:
                    announce.append(time.perf_counter() - started)
            for _ in range(LATENCY_SAMPLES):
                started = time.perf_counter()
                found = await client.search(["births"], identity=Identity.ephemeral("scientist"))
                search.append(time.perf_counter() - started)
                assert len(found) == SEARCH_HITS, len(found)
    finally:
        await server.close()
    return announce, search


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"{statistics.median(values) * 1e3:6.2f} ms (p99 {p99 * 1e3:.2f})"


async def measure(owners: int) -> None:
    print(f"signing {owners:,} records...", flush=True)
    signed = records(owners)
    in_memory = await memory_store_bytes(signed)
    with RedisServer() as redis_server:
        in_redis = await redis_store_bytes(redis_server.url, signed)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            await client.flushall()
            redis_times = await latencies(RedisRegistryStore(client), signed)
        finally:
            await client.aclose()
    memory_times = await latencies(MemoryRegistryStore(), signed)
    print(f"memory per idle registration ({owners:,} owners, one dataset each):")
    print(f"  in memory (MemoryRegistryStore)   {in_memory:8,.0f} bytes")
    print(f"  in Redis (RedisRegistryStore)     {in_redis:8,.0f} bytes")
    print(f"latency over one connection, {LATENCY_SAMPLES} each:  in memory | Redis")
    print(f"  announce one record            {ms(memory_times[0])} | {ms(redis_times[0])}")
    print(
        f"  search, {SEARCH_HITS} results verified    {ms(memory_times[1])} | {ms(redis_times[1])}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.registry", description=__doc__)
    parser.add_argument("--owners", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(measure(args.owners))
    return 0


if __name__ == "__main__":
    sys.exit(main())
