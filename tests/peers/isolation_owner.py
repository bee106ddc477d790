"""An owner node for the isolation tests: scientists' generators, and what requests leave behind.

    python isolation_owner.py <signaling_url> <max_scientists> <max_bytes>

Lets anyone in (``confirm=False``) and publishes ``ages`` (tag "ages": 37, 52, 41). A handler
denies every request named "by handler"; any other request waits for a person, and this process
denies it by hand. It notes which scientist's state torch's generator held each time an op drew
from it (the order in which the scientists' draws ran here).

Prints one JSON object per line: ``ready`` (session ID), ``connect`` and ``leave`` (scientist
ID), ``waiting`` and ``denied`` (a request it denies by hand: before, and once ``deny()``
returned). Reads commands on stdin: ``draws``
(how the scientists' draws interleaved), ``requests`` (the requests kept in memory, and how
many of the decided ones still hold their values), ``quit``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import sys
import threading
import time

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from duet.owner import executor

torch.set_num_threads(1)
AGES = [37.0, 52.0, 41.0]


_printing = threading.Lock()


def emit(**fields):
    # from the loop, the audit's and the deciding thread: one whole line at a time
    with _printing:
        sys.stdout.write(json.dumps(fields, default=str) + "\n")
        sys.stdout.flush()


# which scientist's state the generator held, op after op (appended while it holds it)
drew: collections.deque[str] = collections.deque(maxlen=200_000)
_own_rng = executor.Executor.own_rng


@contextlib.contextmanager
def _noted_rng(self):
    with _own_rng(self):
        drew.append(self.peer)
        yield


executor.Executor.own_rng = _noted_rng


def interleaving() -> dict:
    """How many ops drew per scientist, and how often the generator passed from one scientist
    to another (run one after the other, three scientists make 2 such passes)."""
    order = list(drew)
    passes = sum(1 for a, b in itertools.pairwise(order) if a != b)
    return {"per_scientist": collections.Counter(order), "passes": passes}


def kept_requests(owner) -> dict:
    history = owner.requests.history
    decided = [r for r in history if r.status.value != "pending"]
    holding = []
    for request in decided:
        try:
            request.value  # noqa: B018 (reading it is the check)
            holding.append(f"{request.name!r} {request.status.value} by {request.decided_by}")
        except sy.UsageError:
            pass
    return {
        "kept": len(history),
        "decided": len(decided),
        "holding_values": len(holding),
        "holding": holding[-3:],
    }


def main(url: str, max_scientists: int, max_bytes: int) -> None:
    owner = sy.launch_duet(
        url,
        confirm=False,
        max_scientists=max_scientists,
        max_bytes=max_bytes,
        wait=False,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    owner.audit.add_listener(
        lambda e: e["kind"] in ("connect", "leave") and emit(event=e["kind"], scientist=e["scientist"])
    )  # fmt: skip
    owner.publish(torch.tensor(AGES), tags=["ages"], description="ages")
    owner.requests.add_handler(name="by handler", action="deny")
    emit(event="published")
    stopping = threading.Event()

    def deny_by_hand() -> None:
        while not stopping.is_set():
            request = owner.requests.wait_for_request(timeout_secs=0.5)
            if request is not None and request.status.value == "pending":
                emit(event="waiting", name=request.name, scientist=request.peer)
                started = time.monotonic()
                try:
                    request.deny()
                except sy.UsageError:  # decided meanwhile
                    pass
                emit(event="denied", name=request.name, secs=time.monotonic() - started)

    hand = threading.Thread(target=deny_by_hand, daemon=True)
    hand.start()
    for line in sys.stdin:
        command = line.strip()
        if command == "draws":
            emit(event="draws", **interleaving())
        elif command == "requests":
            emit(event="requests", **kept_requests(owner))
        elif command == "quit":
            break
    stopping.set()
    hand.join(10)
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
