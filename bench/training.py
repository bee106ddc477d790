"""1. Training step: the tutorial CNN at batch 64, remote over WebRTC vs local in this process.

The owner publishes MNIST-shaped images and labels (16 batches of 64, random values) as two
tensors in its store. Every step, remote and local, indexes its batch from them
(``x[a:b]``, ``y[a:b]``) then runs zero_grad, forward, nll_loss, backward, step: 7 remote
actions per step. The model is built on the owner's side with ``duet.torch.nn.Sequential``
after ``manual_seed(0)``, the local one after ``torch.manual_seed(0)``; both use Adadelta
(lr=1.0) as in the tutorial, so after the same steps on the same batches the losses agree.

The local steps run after the remote ones, while the owner is idle (after a sync), so the two
never share the 2 cores.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from .common import Context, Figure, median
from .data import MNIST_SAMPLES, batch_slice, mnist_like


def build(nn: Any) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, 1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(9216, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
        nn.LogSoftmax(dim=1),
    )


def step(lib: Any, model: Any, optimizer: Any, x: Any, y: Any, i: int) -> Any:
    batch = batch_slice(i, MNIST_SAMPLES)
    optimizer.zero_grad()
    output = model(x[batch])
    loss = lib.nn.functional.nll_loss(output, y[batch])
    loss.backward()
    optimizer.step()
    return loss


def run(ctx: Context) -> None:
    warmup, rounds, per_round, synced = 3, ctx.n(5, 2), ctx.n(20, 5), ctx.n(30, 5)
    duet = ctx.session("training")
    remote = duet.torch
    x, y = duet.store["x"], duet.store["y"]
    remote.manual_seed(0)
    model = build(remote.nn)
    optimizer = remote.optim.Adadelta(model.parameters(), lr=1.0)
    i = 0
    for _ in range(warmup):
        step(remote, model, optimizer, x, y, i)
        i += 1
    duet.sync()

    pipelined = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            loss = step(remote, model, optimizer, x, y, i)
            i += 1
        duet.sync()
        pipelined.append((time.perf_counter() - start) / per_round)
    synced_times = []
    for _ in range(synced):
        start = time.perf_counter()
        loss = step(remote, model, optimizer, x, y, i)
        duet.sync()
        synced_times.append(time.perf_counter() - start)
        i += 1
    remote_loss = loss.get(request_block=True, name="loss", timeout_secs=60).item()

    # local, same data, same init, same batches, owner idle
    lx, ly = mnist_like()
    torch.manual_seed(0)
    local_model = build(torch.nn)
    local_opt = torch.optim.Adadelta(local_model.parameters(), lr=1.0)
    local_times = []
    for j in range(i):
        start = time.perf_counter()
        local_loss = step(torch, local_model, local_opt, lx, ly, j)
        if j >= warmup:
            local_times.append(time.perf_counter() - start)
    local = median(local_times)
    p, s = median(pipelined), median(synced_times)
    note = f"loss after {i} steps: remote {remote_loss:.6f}, local {local_loss.item():.6f}"
    ctx.report(Figure("local step (median)", local * 1000, "ms", note=f"{len(local_times)} steps"))
    ctx.report(
        Figure(
            "remote step, pipelined (median of rounds)", p * 1000, "ms",
            baseline=f"ratio {p / local:.2f} vs local", target="ratio <= 1.15",
            met=p / local <= 1.15, note=f"{rounds} rounds x {per_round} steps + sync",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "remote step, synced every step (median)", s * 1000, "ms",
            baseline=f"ratio {s / local:.2f} vs local", target="ratio <= 1.15",
            met=s / local <= 1.15, note=note,
        )
    )  # fmt: skip
