"""The signaling network at scale (issue 21): concurrent sessions held, join latency, memory.

    PYTHONPATH=. python -m bench --only network          # as one of the benchmarks
    PYTHONPATH=. python -m bench.network --pairs 1000    # on its own

Signaling only (no WebRTC): N owners register open sessions and hold them; then N scientists
join one each (20 in flight: one starts as another ends), send an offer (1.5 KB of SDP) and get the owner's answer. Three
runs, each with fresh server processes:

1. one instance (in memory, no Redis): owners and scientists on it;
2. two instances sharing a real redis-server (``tests/redis_server.py``, a Unix socket): owners
   on A, scientists on B, so every join is relayed through Redis;
3. one instance again, while a flood process hammers it from one address (127.0.0.9) with
   registers and joins of random IDs, 50 connections at a time.

Clients come from 125 loopback addresses (127.0.1.1 ...; Linux routes all of 127/8 to ``lo``), 8
owners and 8 scientists each, so the per-address limits (64 sessions, a burst of 100 connections)
apply as to real users; the servers run with their default limits. Times are measured in this
process (``time.perf_counter``), which also runs every client on one asyncio loop: on a small
machine its own CPU is part of the latency. join = ``join`` sent -> ``joined`` received;
exchange = ``join`` sent -> ``answer`` received. Memory per idle session = the RSS growth of the
instance holding the sessions over the N registered owners (with their connections), and the
bytes Redis counts for one directory entry (``MEMORY USAGE``, averaged over 100).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from signaling_server._redis import SESSION_KEY

from .procs import Process, child_env, rss_kib, terminate

WAIT = 60.0
PER_ADDRESS = 8
#: scientists mid-join at any time (each starts when another finishes), and owners registering
IN_FLIGHT = 20
FLOODER = "127.0.0.9"
SDP = "v=0\r\n" + "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n" * 26
TARGET_P99_MS = 50.0


@dataclass
class Run:
    name: str
    pairs: int = 0
    registers: list[float] = field(default_factory=list)
    joins: list[float] = field(default_factory=list)
    exchanges: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    join_rate: float = 0.0
    #: CPU seconds the instance(s) used while the scientists joined
    server_cpu: float = 0.0
    rss_kib_per_session: float = 0.0
    redis_bytes_per_session: float | None = None
    flood: dict[str, Any] = field(default_factory=dict)
    messages: set[str] = field(default_factory=set)

    def fail(self, reply: dict[str, Any]) -> None:
        self.failed.append(str(reply.get("code", reply["type"])))
        self.messages.add(str(reply.get("message", reply)))


def address(n: int) -> str:
    block = n // PER_ADDRESS
    return f"127.0.{1 + block // 250}.{1 + block % 250}"


def raise_fd_limit(pairs: int) -> None:
    """Each pair is two sockets here and two in a server; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * pairs + 1024
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < need:
            print(f"  fd limit {new} (hard): fewer than the {need} this run needs", flush=True)


def start_instance(*extra: str) -> tuple[Process, str]:
    server = Process(
        "-m", "signaling_server", "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING",
        *extra, stdin=False,
    )  # fmt: skip
    return server, server.line(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)


async def open_ws(url: str, ip: str) -> ClientConnection:
    return await connect(
        url, compression=None, local_addr=(ip, 0), open_timeout=WAIT, ping_interval=None
    )


async def register(url: str, n: int, run: Run) -> tuple[str, ClientConnection]:
    ws = await open_ws(url, address(n))
    began = time.perf_counter()
    await ws.send(json.dumps({"type": "register", "max_peers": None}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    run.registers.append(time.perf_counter() - began)
    if reply["type"] != "registered":
        raise RuntimeError(f"owner {n} was refused: {reply}")
    return str(reply["session_id"]), ws


async def answer_offers(ws: ClientConnection) -> None:
    """An owner: answer every offer, hold the session until the bench closes it."""
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "offer":
                await ws.send(json.dumps({"type": "answer", "peer": msg["peer"], "sdp": SDP}))


async def join(url: str, n: int, session_id: str, run: Run) -> None:
    try:
        async with await open_ws(url, address(n)) as ws:
            began = time.perf_counter()
            await ws.send(json.dumps({"type": "join", "session_id": session_id}))
            joined = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if joined["type"] != "joined":
                run.fail(joined)
                return
            run.joins.append(time.perf_counter() - began)
            await ws.send(json.dumps({"type": "offer", "sdp": SDP}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if answer["type"] != "answer":
                run.fail(answer)
                return
            run.exchanges.append(time.perf_counter() - began)
    except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
        run.failed.append(type(exc).__name__)


def cpu_secs(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def pairs_through(
    owners_url: str, scientists_url: str, pids: list[int], pairs: int, run: Run,
    redis_info: Any = None,
) -> None:  # fmt: skip
    """Register ``pairs`` owners on one URL, hold them, then join each from the other."""
    warm = await asyncio.gather(*(register(owners_url, n, Run("warm-up")) for n in range(8)))
    for _, ws in warm:
        await ws.close()
    holder_pid = pids[0]
    before = rss_kib(holder_pid)["VmRSS"]
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def owner(n: int) -> tuple[str, ClientConnection]:
        async with slots:
            return await register(owners_url, n, run)

    owners = await asyncio.gather(*(owner(n) for n in range(pairs)))
    after = rss_kib(holder_pid)["VmRSS"]
    run.rss_kib_per_session = (after - before) / pairs
    if redis_info:
        run.redis_bytes_per_session = await redis_info([sid for sid, _ in owners[:100]])
    servers = [asyncio.create_task(answer_offers(ws)) for _, ws in owners]
    began, cpu = time.perf_counter(), cpu_secs(pids)

    async def one(n: int, session_id: str) -> None:
        async with slots:
            await join(scientists_url, n, session_id, run)

    await asyncio.gather(*(one(n, sid) for n, (sid, _) in enumerate(owners)))
    run.join_rate = pairs / (time.perf_counter() - began)
    run.server_cpu = cpu_secs(pids) - cpu
    run.pairs = pairs
    for _, ws in owners:
        await ws.close()
    await asyncio.gather(*servers)


# --------------------------------------------------------------------------- the flood


async def flood(url: str, stop: asyncio.Event) -> dict[str, int]:
    """Connections from FLOODER as fast as they go, 50 at a time, until ``stop``."""
    counts: dict[str, int] = {}
    started = asyncio.Event()

    async def hammer(n: int) -> None:
        while not stop.is_set():
            first = {"type": "join", "session_id": secrets.token_hex(16)} if n % 2 else {
                "type": "register"}  # fmt: skip
            try:
                async with await open_ws(url, FLOODER) as ws:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps(first))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
                    code = reply.get("code", reply["type"])
            except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
                code = type(exc).__name__
            counts[code] = counts.get(code, 0) + 1
            if not started.is_set():
                started.set()
                print(json.dumps({"event": "flooding"}), flush=True)

    await asyncio.gather(*(hammer(n) for n in range(50)))
    return counts


def flood_main(url: str) -> None:
    """``python -m bench.network --flood URL``: flood until stdin closes; print the counts."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
        began = time.perf_counter()
        counts = await flood(url, stop)
        print(json.dumps({"event": "flood", "secs": time.perf_counter() - began, **counts}))

    asyncio.run(main())


# --------------------------------------------------------------------------- the runs


def one_instance(pairs: int, *, flooded: bool = False) -> Run:
    run = Run("one instance, flooded" if flooded else "one instance")
    server, url = start_instance()
    flooder = None
    try:
        if flooded:
            flooder = Process("-m", "bench.network", "--flood", url, env=child_env())
            flooder.event("flooding", WAIT)  # the flood is on before the first pair
        asyncio.run(pairs_through(url, url, [server.pid], pairs, run))
        if flooder is not None:
            flooder.stop(WAIT)  # closing its stdin ends the flood
            run.flood = flooder.event("flood", WAIT) if flooder.popen.returncode == 0 else {}
    finally:
        if flooder is not None:
            terminate(flooder)
        terminate(server)
    return run


def two_instances(pairs: int) -> Run:
    import redis.asyncio as aioredis

    from tests.redis_server import RedisServer

    run = Run("two instances over Redis")
    with RedisServer() as redis_server:
        a, url_a = start_instance("--redis-url", redis_server.url)
        b, url_b = start_instance("--redis-url", redis_server.url)
        try:

            async def main() -> None:
                client = aioredis.Redis.from_url(redis_server.url, socket_timeout=WAIT)

                async def used(session_ids: list[str]) -> float:
                    """Redis's own count of the bytes a directory entry takes."""
                    sizes = [await client.memory_usage(SESSION_KEY + s) for s in session_ids]
                    return statistics.mean(int(size or 0) for size in sizes)

                try:
                    await pairs_through(url_a, url_b, [a.pid, b.pid], pairs, run, used)
                finally:
                    await client.aclose()

            asyncio.run(main())
        finally:
            terminate(a)
            terminate(b)
    return run


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    if q == 0.5:
        return f"{1000 * statistics.median(values):.1f}"
    return f"{1000 * statistics.quantiles(values, n=100, method='inclusive')[int(q * 100) - 1]:.1f}"


def p99_ms(values: list[float]) -> float:
    return float(ms(values, 0.99)) if values else float("nan")


def table(runs: list[Run]) -> str:
    rows = [
        ("pairs held and joined", [str(r.pairs) for r in runs]),
        ("joins completed per second", [f"{r.join_rate:.0f}" for r in runs]),
        ("server CPU per join (ms)", [f"{1000 * r.server_cpu / max(1, r.pairs):.2f}" for r in runs]),
        ("register p50 / p99 (ms)", [f"{ms(r.registers, .5)} / {ms(r.registers, .99)}" for r in runs]),
        ("join p50 / p99 (ms)", [f"{ms(r.joins, .5)} / {ms(r.joins, .99)}" for r in runs]),
        ("join->answer p50 / p99 (ms)",
         [f"{ms(r.exchanges, .5)} / {ms(r.exchanges, .99)}" for r in runs]),
        ("failed joins", [str(len(r.failed)) + (f" {sorted(set(r.failed))}" if r.failed else "")
                          for r in runs]),
        ("RSS per idle session (KiB)", [f"{r.rss_kib_per_session:.1f}" for r in runs]),
        ("Redis per idle session (bytes)",
         ["-" if r.redis_bytes_per_session is None else f"{r.redis_bytes_per_session:.0f}"
          for r in runs]),
    ]  # fmt: skip
    width = max(len(r.name) for r in runs) + 2
    lines = [f"  {'':<32}" + "".join(f"{r.name:>{width}}" for r in runs)]
    lines += [f"  {label:<32}" + "".join(f"{v:>{width}}" for v in values) for label, values in rows]
    return "\n".join(lines)


def measure(pairs: int) -> list[Run]:
    raise_fd_limit(pairs)
    return [one_instance(pairs), two_instances(pairs), one_instance(pairs, flooded=True)]


def report(runs: list[Run]) -> None:
    print(table(runs[:2]), flush=True)
    for r in runs:
        for message in sorted(r.messages)[:3]:
            print(f"  ({r.name}) a join failed: {message}")
    flooded = runs[2]
    counts = {k: v for k, v in flooded.flood.items() if k not in ("event", "secs")}
    tried = sum(counts.values())
    secs = float(flooded.flood.get("secs", 0.0)) or float("nan")
    print(
        f"  flood from {FLOODER} ({tried} connections in {secs:.1f} s, {tried / secs:.0f}/s: "
        f"{counts.get('rate_limited', 0)} refused with the rate_limited error, "
        f"{counts.get('InvalidStatus', 0)} with HTTP 429; all: {counts}) while "
        f"{flooded.pairs} pairs joined from 125 other addresses: join p50 / p99 "
        f"{ms(flooded.joins, 0.5)} / {ms(flooded.joins, 0.99)} ms, join->answer p99 "
        f"{ms(flooded.exchanges, 0.99)} ms, {len(flooded.failed)} failed; the instance used "
        f"{flooded.server_cpu:.1f} CPU s meanwhile ({runs[0].server_cpu:.1f} s without the flood)",
        flush=True,
    )


def run(ctx: Any) -> None:
    from .common import Figure

    pairs = ctx.n(1000, 200)
    runs = measure(pairs)
    report(runs)
    for r in runs:
        p99 = p99_ms(r.joins)
        ctx.report(
            Figure(
                f"signaling join p99, {r.name}", p99, "ms", target=f"<= {TARGET_P99_MS:g} ms",
                met=p99 <= TARGET_P99_MS, note=f"{r.pairs} pairs, {len(r.failed)} failed",
            )
        )  # fmt: skip
    ctx.report(Figure("signaling RSS per idle session", runs[0].rss_kib_per_session, "KiB"))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood:
        flood_main(args.flood)
        return
    print(f"signaling at scale: {args.pairs} pairs; {os.cpu_count()} cores", flush=True)
    report(measure(args.pairs))


if __name__ == "__main__":
    main()
