"""1b. Training the tutorial's way: a remote DataLoader and an ``sy.Module`` with its own forward.

The owner publishes the MNIST-shaped images and labels as one ``TensorDataset`` (tag
``"train"``) and accepts the ``train_size`` request. The scientist writes what the Duet tutorial
writes::

    train_loader = remote_torch.utils.data.DataLoader(dataset_ptr, batch_size=64, shuffle=True)
    model = SyNet(torch).send(duet)          # forward runs here, built from torch_ref calls
    optimizer = remote_torch.optim.Adadelta(model.parameters(), lr=1.0)
    for data, target in train_loader:
        optimizer.zero_grad()
        output = model(data)
        loss = remote_torch.nn.functional.nll_loss(output, target)
        loss.backward()
        optimizer.step()

19 remote actions per step (``next`` and the two fields of the batch, zero_grad, 12 in
``forward``, nll_loss, backward, step) where ``training.py`` sends 7. The local baseline is the
same model (same initial weights), the same loop over a local ``DataLoader`` of the same data
with the same seed, so remote and local losses agree after the same epochs.

Remote and local epochs alternate (a remote epoch ends with a sync, so the owner is idle while
the local one runs): slow drift of the machine hits both alike. Local epochs run on a worker
thread, as the owner runs torch on its executor thread (see ``Context.local``).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch

from duet.demo.scientist import SyNet  # the tutorial's CNN, as the demo trains it

from .common import Context, Figure, ThreadUsage, median
from .data import BATCH, MNIST_SAMPLES, mnist_like


def train_epoch(
    model: Any, torch_ref: Any, train_loader: Any, optimizer: Any, *, sync: Any = None
) -> tuple[list[float], Any]:
    """One epoch, the tutorial's loop: each step's time (its batch's ``next`` included) and the
    last loss. ``sync`` (remote only) is called after every step."""
    times, loss = [], None
    start = time.perf_counter()
    for data, target in train_loader:
        optimizer.zero_grad()
        output = model(data)
        loss = torch_ref.nn.functional.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if sync is not None:
            sync()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return times, loss


def run(ctx: Context) -> None:
    rounds, synced_epochs = ctx.n(8, 2), ctx.n(2, 1)
    steps_per_epoch = MNIST_SAMPLES // BATCH
    duet = ctx.session("tutorial")
    remote_torch = duet.torch

    torch.manual_seed(0)
    local_model = SyNet(torch)
    twin = copy.deepcopy(local_model)  # the local baseline starts from the same weights
    spare = copy.deepcopy(local_model)  # for the main-thread figure, trained apart
    model = local_model.send(duet)
    remote_torch.manual_seed(0)  # shuffling and dropout draw from it, as locally below
    train_loader = remote_torch.utils.data.DataLoader(
        duet.store["train"], batch_size=BATCH, shuffle=True
    )
    optimizer = remote_torch.optim.Adadelta(model.parameters(), lr=1.0)

    local_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*mnist_like()), batch_size=BATCH, shuffle=True
    )
    local_opt = torch.optim.Adadelta(twin.parameters(), lr=1.0)
    torch.manual_seed(0)

    usage = ThreadUsage(ctx)

    idle = [0.0]  # the owner's worker waiting for work during remote epochs

    def remote_epoch(**kwargs: Any) -> tuple[float, list[float], Any]:
        with usage.measure():
            # (read right beside the timed epoch: the owner idles while the CPUs are read)
            idle_before = ctx.owner_idle()
            start = time.perf_counter()
            times, loss = train_epoch(model, remote_torch, train_loader, optimizer, **kwargs)
            duet.sync()
            elapsed = time.perf_counter() - start
            idle[0] += ctx.owner_idle() - idle_before
        return elapsed / steps_per_epoch, times, loss

    def local_epoch() -> tuple[float, list[float], Any]:
        with usage.measure():
            start = time.perf_counter()
            times, loss = ctx.local(train_epoch, twin, torch, local_loader, local_opt)
            elapsed = time.perf_counter() - start
        return elapsed / steps_per_epoch, times, loss

    len(train_loader)  # the train_size request, once, before anything is timed
    remote_epoch(), local_epoch()  # warm-up
    usage.reset()
    idle[0] = 0.0
    client = duet.client
    actions = client.actions_sent
    pipelined, local, local_steps = [], [], []
    for _ in range(rounds):
        pipelined.append(remote_epoch()[0])
        per_step, times, _ = local_epoch()
        local.append(per_step)
        local_steps += times
    timed_steps = rounds * steps_per_epoch
    messages = (client.actions_sent - actions) / timed_steps
    executor = usage.cpu["owner executor"] / timed_steps
    waited = usage.waited["owner executor"] / timed_steps  # runnable, but no CPU free
    starved = idle[0] / timed_steps  # the owner's worker waiting for the scientist's actions
    local_role = next((r for r in usage.cpu if r.startswith("scientist bench-local")), "")
    local_cpu = usage.cpu[local_role] / timed_steps
    local_waited = usage.waited[local_role] / timed_steps
    where = usage.per_step(
        timed_steps,
        ["owner executor", "owner duet-loop", "scientist MainThread", "scientist duet-loop"],
    )

    synced = []
    for _ in range(synced_epochs):
        _, times, loss = remote_epoch(sync=duet.sync)
        synced += times
        _, times, local_loss = local_epoch()
        local_steps += times
    epochs = 1 + rounds + synced_epochs
    remote_loss = loss.get(request_block=True, name="loss", timeout_secs=60).item()

    main_opt = torch.optim.Adadelta(spare.parameters(), lr=1.0)
    main_thread = [
        median(train_epoch(spare, torch, local_loader, main_opt)[0]) for _ in range(ctx.n(3, 1))
    ]

    lo, p = median(local), median(pipelined)
    s, ls = median(synced), median(local_steps)
    ctx.report(
        Figure(
            "tutorial: local step (median of epochs)", lo * 1000, "ms",
            note=f"{rounds} epochs of {steps_per_epoch} steps on a worker thread; "
            f"{median(main_thread) * 1000:.1f} ms on the main thread",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "tutorial: remote step, pipelined (epochs)", p * 1000, "ms",
            baseline=f"ratio {p / lo:.2f} vs local", target="ratio <= 1.05", met=p / lo <= 1.05,
            note=f"{rounds} epochs, a sync after each, alternating with local ones; mean "
            f"{statistics.mean(pipelined) * 1000:.1f} ms (GC pauses); {messages:.1f} messages/step",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "tutorial: owner executor CPU per step", executor * 1000, "ms",
            baseline=f"local step {lo * 1000:.1f} ms",
            note=f"the executor waited {starved * 1000:.2f} ms a step for actions and "
            f"{waited * 1000:.2f} ms for a CPU (the local "
            f"thread: {local_cpu * 1000:.1f} ms CPU, waited {local_waited * 1000:.2f} ms); "
            f"CPU per step: {where}",
        )
    )  # fmt: skip
    ctx.report(
        Figure(
            "tutorial: remote step, synced every step", s * 1000, "ms",
            baseline=f"ratio {s / ls:.2f} vs local step {ls * 1000:.1f} ms",
            target="ratio <= 1.15", met=s / ls <= 1.15,
            note=f"loss after {epochs} epochs: remote {remote_loss:.6f}, "
            f"local {local_loss.item():.6f}",
        )
    )  # fmt: skip
