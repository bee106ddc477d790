"""3. Fire-and-forget ops: N chained ``x = x + 1`` on a 4-element tensor, then one sync.

Throughput is N over the time from the first op to the sync's return (sent *and* executed);
the issue rate (how fast the scientist's calls return) is printed beside it. The final value
is fetched to check that every op ran.
"""

from __future__ import annotations

import time

from .common import Context, Figure


def run(ctx: Context) -> None:
    count = ctx.n(20_000, 5_000)
    duet = ctx.session("ops")
    x = duet.torch.zeros(4)
    duet.sync()
    start = time.perf_counter()
    for _ in range(count):
        x = x + 1
    issued = time.perf_counter() - start
    duet.sync()
    total = time.perf_counter() - start
    value = x.get().tolist()
    rate = count / total
    ctx.report(
        Figure(
            "fire-and-forget ops, sent and executed", rate, "ops/s",
            target=">= 20,000 ops/s", met=rate >= 20_000,
            baseline=f"issue rate {count / issued:,.0f} ops/s",
            note=f"{count} ops in {total:.2f} s; final value {value[0]:g} (expected {count})",
        )
    )  # fmt: skip
