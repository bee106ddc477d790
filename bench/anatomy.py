"""``python -m bench.anatomy``: where the owner's time goes for one action, phase by phase.

The owner's side of a session in this process (``duet_pair``, no network): each phase of an
action is timed on its own, many times, and the median of several rounds printed in
microseconds; then whole actions, the fast lane and the general way, for three kinds of call:

- ``x + 1`` on the scientist's own 4-element tensor (what ``bench ops`` sends 20,000 of);
- ``p + 1`` on the owner's published tensor (labels to read and join, a reach to keep);
- ``conv(p)``: a layer of the scientist's own called on the owner's images (the tutorial's
  most common action);

and last, three torch functions on a tensor of the scientist's that holds the owner's data
(``F.relu``, ``F.log_softmax``, ``torch.flatten``: the function lane and the general way), back
to back and "cold": each call after a pass over 32 MB and a convolution (not timed), as between
a training step's kernels. The same bookkeeping costs 3-5 times more cold: it is bound by the
caches, not by the lines it runs.

The frame's decoding (``unpack``) is the owner's network loop's work, the rest its worker's.
Figures are for this machine and this moment: compare phases with each other, not with other
machines.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

import torch

import duet as sy
from duet.owner import calls, sizes
from duet.owner import executor as executor_module
from duet.owner.labels import Walk
from duet.owner.policy import CallCheck
from duet.owner.store import StoredObject
from duet.protocol import allowlist
from duet.protocol import messages as wire
from duet.protocol.messages import Call, Delete

ROUNDS = 5


def per_call(fn: Callable[[], Any], number: int) -> float:
    """Median microseconds per call of ``fn`` over ROUNDS rounds of ``number`` calls."""
    return statistics.median(timeit.repeat(fn, number=number, repeat=ROUNDS)) / number * 1e6


def per_call_after(fn: Callable[[], Any], before: Callable[[], Any], number: int) -> float:
    """Median microseconds per call of ``fn``, each call after ``before()`` (not timed)."""
    rounds = []
    for _ in range(ROUNDS):
        total = 0.0
        for _ in range(number):
            before()
            start = time.perf_counter()
            fn()
            total += time.perf_counter() - start
        rounds.append(total / number * 1e6)
    return statistics.median(rounds)


def main() -> None:
    torch.set_num_threads(1)
    owner, scientist = sy.duet_pair()
    owner.publish(torch.arange(4.0), tags=["p"])
    owner.publish(torch.randn(16, 1, 28, 28), tags=["images"])
    owner.publish(torch.randn(64, 32), tags=["table"])
    x = scientist.torch.zeros(4)
    conv = torch.nn.Conv2d(1, 8, 3).send(scientist)
    scientist.sync()
    service = next(iter(owner.links.values())).service
    ex = service.executor
    p_id = scientist.store["p"].id
    images_id = scientist.store["images"].id
    counter = iter(range(10**9))

    private = scientist.torch.mul(scientist.store["table"], 1.0)  # the scientist's, labeled
    scientist.sync()

    def call(
        op: str, target: str | None, args: list[Any], kwargs: dict[str, Any] | None = None
    ) -> None:
        result = f"a{next(counter)}"
        ex.call(Call(op=op, target=target, args=args, kwargs=kwargs or {}, result=result), [])
        service.store.remove(ex.key(result))

    def general(fn: Callable[[], None]) -> Callable[[], None]:
        lanes = ("_plain_call", "_function_call")

        def run() -> None:
            kept = [getattr(executor_module.Executor, lane) for lane in lanes]
            for lane in lanes:
                setattr(executor_module.Executor, lane, lambda self, m: calls.NOT_PLAIN)
            try:
                fn()
            finally:
                for lane, method in zip(lanes, kept, strict=True):
                    setattr(executor_module.Executor, lane, method)

        return run

    tensor = torch.zeros(4)
    op = allowlist.TABLES["Tensor"]["__add__"]
    inputs = calls.Inputs()
    inputs.walk.add(tensor)
    frame = wire.pack(
        [m for i in range(1000) for m in (
            Call(op="__add__", target=f"s{i}", args=[1], kwargs={}, result=f"s{i + 1}"),
            Delete(ids=[f"s{i}"]),
        )]
    )  # fmt: skip
    phases = [
        ("decode (unpack a Call and a Delete)", lambda: wire.unpack(frame, max_frame_bytes=1 << 30), 1000),
        ("resolve (the handle, visible)", lambda: ex.visible(x.id), 1),
        ("labels (read: walk and label)", lambda: ex._input_label(inputs), 1),
        ("walk a result", lambda: Walk().add(tensor), 1),
        ("sizes (the estimate)", lambda: sizes.planned_bytes(op, tensor, [1], {}), 1),
        ("policy (quota, access)", lambda: ex.policy.check_call(CallCheck("s", op, tensor, 16, False)), 1),
        ("run (torch: x + 1)", lambda: op.impl(tensor, 1), 1),  # type: ignore[misc]
        ("quota charge and release (a new storage)", lambda: ex.quota.hold(torch.empty(4).untyped_storage(), 16, False), 1),
        ("record (StoredObject)", lambda: StoredObject(id="a:b", value=tensor, owner="a", op="add"), 1),
    ]  # fmt: skip
    print(f"duet owner, one action's phases (median of {ROUNDS} rounds, microseconds)")
    for name, fn, per in phases:
        print(f"  {name:<44} {per_call(fn, 20_000 // per) / per:8.2f}")
    print("\nwhole actions (the owner's worker), microseconds")
    actions = [
        ("x + 1, own tensor: fast lane", lambda: call("__add__", x.id, [1])),
        ("x + 1, own tensor: general way", general(lambda: call("__add__", x.id, [1]))),
        ("p + 1, the owner's tensor", lambda: call("__add__", p_id, [1])),
        ("conv(images), own layer on the owner's data",
         lambda: call("__call__", conv.id, [{"$": "ref", "id": images_id}])),
        ("delete a result", lambda: service._delete(Delete(ids=["nothing"]), [])),
    ]  # fmt: skip
    for name, fn in actions:
        print(f"  {name:<44} {per_call(fn, 2_000):8.2f}")
    raw = torch.nn.Conv2d(1, 8, 3)
    images = torch.randn(16, 1, 28, 28)
    print(f"  {'conv(images) in plain torch':<44} {per_call(lambda: raw(images), 2_000):8.2f}")

    big = torch.randn(8 << 20)  # 32 MB: more than the caches hold
    layer, batch = torch.nn.Conv2d(32, 64, 3), torch.randn(64, 32, 12, 12)

    def fill_caches() -> None:
        big.mul_(1.0)
        with torch.no_grad():
            layer(batch)

    ref = {"$": "ref", "id": private.id}
    functions = [
        ("F.relu", "torch.nn.functional.relu", [ref], {}),
        ("F.log_softmax(dim=1)", "torch.nn.functional.log_softmax", [ref], {"dim": 1}),
        ("torch.flatten(x, 1)", "torch.flatten", [ref, 1], {}),
    ]
    print(
        "\nthe owner's data in the scientist's tensor, the call and its deletion: back to back / cold"
    )
    for name, op_path, args, kwargs in functions:

        def one(
            op_path: str = op_path, args: list[Any] = args, kwargs: dict[str, Any] = kwargs
        ) -> None:
            call(op_path, None, args, kwargs)

        for way, fn in (("function lane", one), ("general way", general(one))):
            hot = per_call_after(fn, lambda: None, 1_000)
            cold = per_call_after(fn, fill_caches, 300)
            print(f"  {name + ', ' + way:<44} {hot:8.2f} / {cold:8.2f}")
    scientist.close()
    owner.close()


if __name__ == "__main__":
    main()
