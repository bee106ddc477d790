"""``python -m bench.timeline``: one get's life across both processes, step by step.

A signaling server, an owner process (``bench/owner.py`` with ``BENCH_TIMELINE`` set) and this
process as the scientist, over WebRTC on 127.0.0.1 as ``bench --only gets`` runs. Both
processes note a timestamp (``time.monotonic_ns``: one clock for every process of the machine)
where a get passes a step: the frame packed, handed to the network loop, sent on the data
channel, its message arriving, unpacked, handed to the owner's worker, the worker's audit
commit, the reply packed and so on back. The owner writes its marks to a file when it exits;
this process merges them with its own and prints, for the gets whose steps came in the usual
order, the median time from each step to the next.

    python -m bench.timeline [--gets N] [--own]      (--own: gets of the scientist's tensor)

The marks are monkeypatched around duet's functions (measurement only): each costs ~1 us,
so the total is a little above ``bench --only gets``'s figure.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

Mark = tuple[int, str]
MARKS: list[Mark] = []
ENV = "BENCH_TIMELINE"  # the owner writes its marks to this file


def mark(name: str) -> None:
    MARKS.append((time.monotonic_ns(), name))


def install(role: str) -> None:
    """Mark a get's steps in this process (``role``: "owner" or "sci", the marks' prefix)."""
    from duet import connection
    from duet.owner import audit, service
    from duet.protocol.messages import Get, Reply
    from duet.transport import webrtc

    def ours(messages: list[Any]) -> bool:
        return any(isinstance(m, Get | Reply) for m in messages)

    unpack = connection.unpack

    def unpack_marked(data: bytes, **kwargs: Any) -> Any:
        start = time.monotonic_ns()
        out = unpack(data, **kwargs)
        if ours(out[0]):
            MARKS.append((start, f"{role}.unpack"))
            mark(f"{role}.unpacked")
        return out

    connection.unpack = unpack_marked  # type: ignore[assignment]
    pack = connection.pack

    def pack_marked(messages: list[Any], *args: Any, **kwargs: Any) -> bytes:
        hit = ours(messages)
        if hit:
            mark(f"{role}.pack")
        frame = pack(messages, *args, **kwargs)
        if hit:
            mark(f"{role}.packed")
        return frame

    connection.pack = pack_marked  # type: ignore[assignment]

    def around(cls: Any, name: str, before: str, after: str | None = None) -> None:
        fn = getattr(cls, name)

        def marked(*args: Any, **kwargs: Any) -> Any:
            mark(f"{role}.{before}")
            out = fn(*args, **kwargs)
            if after:
                mark(f"{role}.{after}")
            return out

        setattr(cls, name, marked)

    around(connection.Connection, "_accept", "loop takes the frame")
    around(webrtc.WebRTCChannel, "_on_message", "channel message")
    send = webrtc.WebRTCChannel.send

    async def send_marked(self: Any, frame: bytes) -> None:
        mark(f"{role}.channel send")
        await send(self, frame)
        mark(f"{role}.channel sent")

    webrtc.WebRTCChannel.send = send_marked  # type: ignore[method-assign]
    if role == "owner":
        around(service.PeerService, "submit", "to the worker")
        around(service.PeerService, "_run_frame", "worker starts", "worker ends")
        around(audit.AuditLog, "_write", "audit commit", "audit committed")
        around(service.PeerService, "send_replies", "reply to send")


def write(path: str | Path) -> None:
    Path(path).write_text("".join(f"{t} {name}\n" for t, name in MARKS))


def timeline(marks: list[Mark]) -> tuple[int, int, list[tuple[str, str, float]], float]:
    """Gets found, gets in the usual order, and per step the median microseconds to the next."""
    gets: list[list[Mark]] = []
    current: list[Mark] | None = None
    for t, name in sorted(marks):
        if name == "sci.get":
            current = [(t, name)]
        elif current is not None:
            current.append((t, name))
            if name == "sci.got":
                gets.append(current)
                current = None
    orders = collections.Counter(tuple(n for _, n in g) for g in gets)
    order, count = orders.most_common(1)[0]
    usual = [g for g in gets if tuple(n for _, n in g) == order]
    steps = [
        (order[i - 1], order[i], statistics.median((g[i][0] - g[i - 1][0]) / 1e3 for g in usual))
        for i in range(1, len(order))
    ]
    total = statistics.median((g[-1][0] - g[0][0]) / 1e3 for g in usual)
    return len(gets), count, steps, total


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    parser.add_argument("--gets", type=int, default=500)
    parser.add_argument("--own", action="store_true", help="gets of the scientist's own tensor")
    args = parser.parse_args()
    import torch

    from .procs import Owner, pin_malloc, start_signaling_server, terminate

    torch.set_num_threads(1)
    pin_malloc()
    owner_marks = Path(tempfile.mkdtemp(prefix="duet-timeline-")) / "owner.txt"
    server, url = start_signaling_server()
    os.environ[ENV] = str(owner_marks)  # the owner process inherits it
    try:
        owner = Owner(url, "serve", "--data", "mnist", "--big", threads=1)  # as bench gets
        duet = owner.join()
        install("sci")
        small = duet.store["x"][0, 0, 0, :4] * 2
        mine = duet.torch.zeros(4)
        duet.sync()
        get: Callable[[], object] = (
            mine.get
            if args.own
            else lambda: small.get(request_block=True, name="small", timeout_secs=30)
        )
        for _ in range(50):
            get()
        MARKS.clear()
        for _ in range(args.gets):
            mark("sci.get")
            get()
            mark("sci.got")
        owner.close(duet)
    finally:
        os.environ.pop(ENV, None)
        terminate(server)
    marks = MARKS + [
        (int(t), name)
        for t, name in (line.split(" ", 1) for line in owner_marks.read_text().splitlines())
    ]
    found, usual, steps, total = timeline(marks)
    kind = "own-tensor" if args.own else "handler-accepted"
    print(f"{kind} gets: {found}, {usual} with their steps in the usual order; medians, us")
    for before, after, micros in steps:
        print(f"  {before:>28} -> {after:<28} {micros:8.1f}")
    print(f"  {'the whole get':>28}    {'':<28} {total:8.1f}")


if __name__ == "__main__":
    main()
