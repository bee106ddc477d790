"""1. Training step: the tutorial CNN at batch 64, remote over WebRTC vs local in this process.

The owner publishes MNIST-shaped images and labels (16 batches of 64, random values) as two
tensors in its store. Every step, remote and local, indexes its batch from them
(``x[a:b]``, ``y[a:b]``) then runs zero_grad, forward, nll_loss, backward, step: 7 remote
actions per step. The model is built on the owner's side with ``duet.torch.nn.Sequential``
after ``manual_seed(0)``, the local one after ``torch.manual_seed(0)``; both use Adadelta
(lr=1.0) as in the tutorial, so after the same steps on the same batches the losses agree.

Remote rounds and local rounds alternate; a local round runs while the owner is idle (after a
sync), on a worker thread as the owner runs torch on its executor thread (``Context.local``).
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
    lx, ly = mnist_like()
    torch.manual_seed(0)
    local_model = build(torch.nn)
    local_opt = torch.optim.Adadelta(local_model.parameters(), lr=1.0)

    local_loss: list[Any] = [None]

    def local_steps(first: int, count: int) -> list[float]:
        times = []
        for j in range(first, first + count):
            start = time.perf_counter()
            local_loss[0] = step(torch, local_model, local_opt, lx, ly, j)
            times.append(time.perf_counter() - start)
        return times

    # remote and local rounds alternate (the owner idle after a sync while the local one runs):
    # the same steps on the same batches, and drift of the machine hits both alike
    i = 0
    for _ in range(warmup):
        step(remote, model, optimizer, x, y, i)
        i += 1
    duet.sync()
    ctx.local(local_steps, 0, warmup)
    pipelined, local_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for j in range(i, i + per_round):
            step(remote, model, optimizer, x, y, j)
        duet.sync()
        pipelined.append((time.perf_counter() - start) / per_round)
        local_times += ctx.local(local_steps, i, per_round)
        i += per_round
    synced_times = []
    for _ in range(synced):
        start = time.perf_counter()
        loss = step(remote, model, optimizer, x, y, i)
        duet.sync()
        synced_times.append(time.perf_counter() - start)
        local_times += ctx.local(local_steps, i, 1)
        i += 1
    remote_loss = loss.get(request_block=True, name="loss", timeout_secs=60).item()

    local = median(local_times)
    p, s = median(pipelined), median(synced_times)
    note = f"loss after {i} steps: remote {remote_loss:.6f}, local {local_loss[0].item():.6f}"
    ctx.report(
        Figure(
            "local step (median)", local * 1000, "ms",
            note=f"{len(local_times)} steps on a worker thread, alternating with remote rounds",
        )
    )  # fmt: skip
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
