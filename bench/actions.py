"""``python -m bench.actions``: the owner's bookkeeping per action of a tutorial step.

The tutorial's step (``tutorial.py``: a remote ``DataLoader``, ``SyNet``'s forward, ``nll_loss``,
``backward``, Adadelta's ``step``) runs against an owner in this process (``duet_pair``, no
network), epoch after epoch. Every call on the owner's worker is timed whole, and inside it the
time spent in the op itself (the allowlist's ``impl``, what a local loop runs too); deletes are
timed whole. What is left is the owner's bookkeeping: naming, labels, checks, storing the
result, between the same kernels a training step runs (so with the caches as they are there).

It prints, per kind of action, how many a step sends, its median bookkeeping and op time, and
the bookkeeping per step (median times count), beside the local step (the same model and loop
in plain torch, on a worker thread, in the same process). A step's bookkeeping over the local
step is what the tutorial's remote/local ratio pays beyond 1 at best (frames, replies and pauses
come on top). Medians move far less from run to run than that ratio (its epochs alternate with
local ones on a noisy machine, and a collection or a page fault falls in some and not others):
compare changes here first. Op times are not comparable with local ones here (the scientist's
threads share this process and its interpreter lock); the bookkeeping is.

Figures are for this machine and this moment. The wrappers add 0.2 us to each op and 0.4 us to
each call (measured back to back).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

import duet as sy
from duet.demo.scientist import SyNet
from duet.owner import service as service_module
from duet.protocol import allowlist
from duet.protocol.messages import Call, Delete

from .data import BATCH, MNIST_SAMPLES, mnist_like
from .tutorial import train_epoch as epoch  # the tutorial's loop, as tutorial.py runs it

# the op's own time inside the call being timed, per worker thread (one owner here)
_inside = [0.0]


def _timed_impl(impl: Callable[..., object]) -> Callable[..., object]:
    def run(*args: Any, **kwargs: Any) -> object:
        start = time.perf_counter()
        try:
            return impl(*args, **kwargs)
        finally:
            _inside[0] += time.perf_counter() - start

    return run


@contextlib.contextmanager
def timing(samples: dict[str, list[tuple[float, float]]]) -> Iterator[None]:
    """While active, every call and delete the owner's workers handle adds (whole, op) seconds
    to ``samples`` under its op (or "delete")."""
    tables = [*allowlist.TABLES.values(), allowlist.FUNCTIONS]
    kept = [(op, op.impl) for table in tables for op in table.values() if op.impl is not None]
    handle = service_module.PeerService._handle

    def timed_handle(self: Any, message: Any, *args: Any) -> None:
        if not isinstance(message, Call | Delete):
            return handle(self, message, *args)
        _inside[0] = 0.0
        start = time.perf_counter()
        try:
            return handle(self, message, *args)
        finally:
            name = message.op if isinstance(message, Call) else "delete"
            samples[name].append((time.perf_counter() - start, _inside[0]))

    for op, impl in kept:
        object.__setattr__(op, "impl", _timed_impl(impl))
    service_module.PeerService._handle = timed_handle  # type: ignore[method-assign]
    try:
        yield
    finally:
        service_module.PeerService._handle = handle  # type: ignore[method-assign]
        for op, impl in kept:
            object.__setattr__(op, "impl", impl)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="timed epochs of 16 steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    owner, scientist = sy.duet_pair()
    images, labels = mnist_like()
    owner.publish(torch.utils.data.TensorDataset(images, labels), tags=["train"])
    owner.requests.add_handler(
        name="train_size", tags=["train", "__len__"], kind="int", action="accept"
    )
    rt = scientist.torch
    torch.manual_seed(0)
    local_model = SyNet(torch)
    twin = copy.deepcopy(local_model)
    model = local_model.send(scientist)
    loader = rt.utils.data.DataLoader(scientist.store["train"], batch_size=BATCH, shuffle=True)
    optimizer = rt.optim.Adadelta(model.parameters(), lr=1.0)
    local_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=BATCH, shuffle=True
    )
    local_optimizer = torch.optim.Adadelta(twin.parameters(), lr=1.0)
    worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-local")
    steps = MNIST_SAMPLES // BATCH

    epoch(model, rt, loader, optimizer)  # warm-up: imports, the optimizer's state
    scientist.sync(timeout_secs=600)
    samples: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    local_steps = []
    for _ in range(args.epochs):
        with timing(samples):
            epoch(model, rt, loader, optimizer)
            scientist.sync(timeout_secs=600)
        start = time.perf_counter()
        worker.submit(epoch, twin, torch, local_loader, local_optimizer).result()
        local_steps.append((time.perf_counter() - start) / steps)
    timed_steps = args.epochs * steps
    scientist.close()
    owner.close()
    worker.shutdown()

    print(
        f"the owner's bookkeeping per action of a tutorial step: {args.epochs} epochs of "
        f"{steps} steps, in this process (microseconds; medians, then their sum per step)"
    )
    print(f"  {'action':<20} {'per step':>8} {'bookkeeping':>12} {'op':>10} {'per step':>10}")
    typical = mean = 0.0
    rows = []
    for name, timed in samples.items():
        per_step = len(timed) / timed_steps
        book = statistics.median(whole - inside for whole, inside in timed)
        op = statistics.median(inside for _, inside in timed)
        mean += sum(whole - inside for whole, inside in timed) / timed_steps
        typical += book * per_step
        rows.append((book * per_step, name, per_step, book, op))
    for book_per_step, name, per_step, book, op in sorted(rows, reverse=True):
        if per_step < 0.5:
            continue  # once an epoch (the loader's length and iterator)
        short = name.removeprefix("torch.nn.functional.")
        print(
            f"  {short:<20} {per_step:8.1f} {book * 1e6:12.1f} {op * 1e6:10.1f} "
            f"{book_per_step * 1e6:10.1f}"
        )
    local = statistics.median(local_steps)
    print(
        f"  a step's bookkeeping: {typical * 1e3:.2f} ms from the medians, {mean * 1e3:.2f} ms "
        f"on average (pauses included); the local step: {local * 1e3:.1f} ms (median of "
        f"epochs); remote / local at best: {1 + typical / local:.3f}"
    )


if __name__ == "__main__":
    main()
