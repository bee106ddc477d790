"""4. Tensor transfer: a 50 MB float32 tensor over the data channel vs plain TCP on loopback.

Download: ``get`` of a scientist-owned 50 MB tensor (made on the owner's side with
``duet.torch.randn``) and a handler-accepted get of the owner's published 50 MB tensor.
Upload: ``tensor.send(duet)`` of 50 MB then ``sync()``. Baseline: the same 50 MB pushed by a
plain socket server in another process on 127.0.0.1. MB is 10**6 bytes; time is from the call
to the value being here (decoded) or, for the upload, stored on the owner's side.
"""

from __future__ import annotations

import socket
import time

import torch

from .common import Context, Figure, median
from .data import BIG_ELEMENTS
from .procs import Process

MB = 1e6
SIZE = BIG_ELEMENTS * 4


def tcp_rates(reps: int) -> list[float]:
    from .tcp_peer import fetch

    server = Process("-m", "bench.tcp_peer", stdin=False)
    try:
        port = int(server.line(r"^port (\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port)) as conn:
            fetch(conn, SIZE)  # warm-up: the server allocates its payload
            return [SIZE / MB / fetch(conn, SIZE) for _ in range(reps)]
    finally:
        server.stop()


def run(ctx: Context) -> None:
    reps = ctx.n(3, 1)
    duet = ctx.session("transfer")
    # a fresh seed: after training on the owner's data (shuffles, dropout) the scientist's
    # generator depends on that data, and so would anything drawn from it
    duet.torch.manual_seed(1)
    mine = duet.torch.randn(BIG_ELEMENTS)
    duet.sync()
    own, handled, upload = [], [], []
    for _ in range(reps):
        start = time.perf_counter()
        value = mine.get()
        own.append(SIZE / MB / (time.perf_counter() - start))
        assert value.numel() == BIG_ELEMENTS
        del value
        start = time.perf_counter()
        value = duet.store["big"].get(request_block=True, name="big", timeout_secs=300)
        handled.append(SIZE / MB / (time.perf_counter() - start))
        del value
        local = torch.randn(BIG_ELEMENTS)
        start = time.perf_counter()
        pointer = local.send(duet)
        duet.sync()
        upload.append(SIZE / MB / (time.perf_counter() - start))
        pointer.delete()
        del local
    tcp = median(tcp_rates(reps))
    for name, rates, target in (
        ("50 MB get, scientist-owned tensor", own, True),
        ("50 MB get, handler-accepted owner tensor", handled, True),
        ("50 MB upload (send + sync)", upload, False),
    ):
        rate = median(rates)
        ctx.report(
            Figure(
                name, rate, "MB/s", baseline=f"TCP {tcp:,.0f} MB/s, ratio {rate / tcp:.4f}",
                target=">= 20 MB/s" if target else "", met=rate >= 20 if target else None,
                note=f"median of {reps}",
            )
        )  # fmt: skip
    ctx.report(Figure("plain TCP on loopback (50 MB)", tcp, "MB/s", note=f"median of {reps}"))
