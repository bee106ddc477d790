"""2. A get accepted by a handler: round-trip latency, beside a plain get and a sync.

``small = x[0, 0, 0, :4] * 2`` is computed once from the owner's images (private, so every get
is a request); then it is fetched N times with ``request_block=True, name="small"``, a name the
owner's handler accepts. For scale, the same count of gets of a scientist-owned 4-element tensor
(no request) and of bare ``sync()`` round trips are timed in the same session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .common import Context, Figure, median, percentile


def latencies(fn: Callable[[], Any], count: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run(ctx: Context) -> None:
    count = ctx.n(500, 100)
    duet = ctx.session("gets")
    small = duet.store["x"][0, 0, 0, :4] * 2
    mine = duet.torch.zeros(4)
    duet.sync()
    handled = latencies(lambda: small.get(request_block=True, name="small", timeout_secs=30), count)
    own = latencies(mine.get, count)
    syncs = latencies(duet.sync, count)
    base = f"own get p50 {median(own) * 1000:.2f} ms, sync p50 {median(syncs) * 1000:.2f} ms"
    p50 = median(handled) * 1000
    ctx.report(
        Figure(
            "handler-accepted get p50", p50, "ms", target="<= 1 ms", met=p50 <= 1.0,
            baseline=base, note=f"{count} gets of a 4-element tensor",
        )
    )  # fmt: skip
    ctx.report(Figure("handler-accepted get p99", percentile(handled, 99) * 1000, "ms"))
    ctx.report(
        Figure(
            "own-tensor get p50 / p99", median(own) * 1000, "ms",
            note=f"p99 {percentile(own, 99) * 1000:.2f} ms",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "sync round trip p50 / p99", median(syncs) * 1000, "ms",
            note=f"p99 {percentile(syncs, 99) * 1000:.2f} ms",
        )
    )  # fmt: skip
