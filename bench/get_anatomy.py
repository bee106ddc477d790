"""``python -m bench.get_anatomy``: where the owner's worker spends a handler-accepted get.

The owner's side of a session in this process (``duet_pair``, an audit log in a file as
``launch_duet`` keeps it, a handler that accepts the request): one ``Get`` with
``request=True`` is handed to the scientist's worker again and again, each phase timed around
its call (inclusive: a phase's figure contains the phases it calls). Twice:

- hot: one get after the other, as a loop of gets in one process runs;
- idle between: the worker sleeps 1 ms before each get, as it does in ``bench --only gets``
  (the get's round trip, the network loop and the scientist's process run meanwhile). Its
  caches are cold then and every phase costs 2-4x: these figures are the ones that add up to
  the worker's part of the benchmark's round trip.

Medians in microseconds; compare phases with each other, and the same machine side by side.
"""

from __future__ import annotations

import collections
import functools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import duet as sy
from duet.owner import labels
from duet.protocol import messages as wire
from duet.protocol.messages import Get
from duet.sessions.owner import OwnerSession

PHASES = [  # (what, the object, its method): in the order a get meets them
    ("resolve the id", "executor", "visible"),
    ("walk the value", "walk", "add"),
    ("its label", "executor", "label_of"),
    ("may this scientist ask", "policy", "check_release"),
    ("request and snapshot (encode)", "releases", "_request"),
    ("audit: the request event", "releases", "record_request"),
    ("handler match", "requests", "_match"),
    ("decision: event, reply, release event", "requests", "_decide"),
    ("  reply built, release event (digest)", "releases", "on_decided"),
    ("audit: one commit of the three events", "audit", "_write"),
    ("reply packed (the frame)", "service", "send_replies"),
    ("the worker's whole frame", "service", "_run_frame"),
]


def main(count: int = 1000) -> None:
    torch.set_num_threads(1)
    home = Path(tempfile.mkdtemp(prefix="duet-get-anatomy-"))
    owner = OwnerSession(audit=home / "audit.sqlite3", max_scientists=10)
    owner, scientist = sy.duet_pair(owner=owner)
    owner.publish(torch.randn(16, 1, 28, 28), tags=["x"])
    owner.requests.add_handler(name="small", tags=["x"], action="accept")
    small = scientist.store["x"][0, 0, 0, :4] * 2
    scientist.sync()
    service = next(iter(owner.links.values())).service
    assert service is not None
    service.on_worker = lambda: True  # type: ignore[method-assign]  # this thread is the worker
    replies: list[Any] = []

    def send(messages: list[wire.Message], buffers: list[memoryview]) -> None:
        wire.pack(messages, buffers)  # as the connection does on this thread
        replies.extend(messages)

    service._send = send
    times: dict[str, list[float]] = collections.defaultdict(list)
    where = {
        "executor": service.executor, "policy": service.policy, "releases": service.releases,
        "requests": service.requests, "audit": service.audit, "service": service,
    }  # fmt: skip
    walk_add = labels.Walk.add
    for name, holder, method in PHASES:
        if holder == "walk":
            labels.Walk.add = _timed(walk_add, times[name])  # type: ignore[method-assign]
        else:
            setattr(where[holder], method, _timed(getattr(where[holder], method), times[name]))
    message = Get(rid=0, id=small.id, request=True, name="small", timeout_secs=30)
    results = {}
    try:
        for idle in (0.0, 0.001):
            for rid in range(count + 100):
                if rid == 100:  # the first ones warm up
                    for samples in times.values():
                        samples.clear()
                if idle:
                    time.sleep(idle)
                service._run_frame([message.model_copy(update={"rid": rid})], [])
            results[idle] = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    finally:
        labels.Walk.add = walk_add  # type: ignore[method-assign]
    assert replies and all(r.status == "accepted" for r in replies[-count:]), replies[-1]
    print(f"a handler-accepted get on the owner's worker ({count} gets; medians, microseconds)")
    print(f"  {'phase':<42} {'hot':>8} {'idle 1 ms between':>18}")
    for name, _, _ in PHASES:
        print(f"  {name:<42} {results[0.0][name]:8.1f} {results[0.001][name]:18.1f}")
    scientist.close()
    owner.close()


def _timed(fn: Callable[..., Any], samples: list[float]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - start)

    return timed


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
