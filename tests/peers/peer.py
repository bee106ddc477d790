"""A real owner or scientist process for the cross-process tests.

    python peer.py owner <signaling_url> [--loopback]   publishes data, serves until the scientist
                                                        leaves (types the client ID read on stdin,
                                                        unless --loopback)
    python peer.py scientist <session_id> <url> [<owner_id>]
                                                        runs the scenario named on stdin, one per
                                                        line (checks the owner's ID if given)

Both print one JSON object per line for the test to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy

BIG_ELEMENTS = 50_000_000 // 4  # a 50 MB float32 tensor


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields):
    line = json.dumps(fields) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


def big_tensor() -> torch.Tensor:
    return torch.arange(BIG_ELEMENTS, dtype=torch.float32) * 0.5


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


def owner(url: str, loopback: bool = False) -> None:
    duet = sy.launch_duet(
        url,
        confirm=True,
        loopback=loopback,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    emit(event="connected", client_id=duet.client_id)
    torch.tensor([1.0, 2.0, 3.0]).send(duet, tags=["ages"], description="ages")
    big_tensor().send(duet, tags=["big"], description="50 MB")
    duet.requests.add_handler(name="handled", tags=["ages"], kind="tensor", action="accept")
    duet.requests.add_handler(name="big", tags=["big"], action="accept")
    duet.requests.add_handler(name="denied", action="deny")
    emit(event="published")
    while duet.connected:
        request = duet.requests.wait_for_request(timeout_secs=1.0)
        if request is not None and request.name == "by hand":
            emit(event="request", name=request.name, reason=request.reason)
            request.accept()
    ages = duet.store["ages"].value
    emit(
        event="closed",
        store=len(duet.store),
        ages=ages.tolist(),
        big=digest(duet.store["big"].value),
    )


def scientist(session_id: str, url: str, owner_id: str | None = None) -> None:
    duet = sy.join_duet(session_id, url, owner_id=owner_id)
    emit(event="connected")
    for line in sys.stdin:
        step = line.strip()
        try:
            if step == "list":
                emit(
                    step=step,
                    tags=[p.meta.get("tags") for p in duet.store],
                    table=duet.store.pandas["Description"].tolist(),
                )
            elif step == "ops":
                mine = duet.torch.arange(4.0)
                emit(step=step, value=((mine * 2 + 1).sum()).get().item())
            elif step == "handled":
                emit(
                    step=step,
                    value=(duet.store["ages"] * 2)
                    .get(request_block=True, name="handled", timeout_secs=30)
                    .tolist(),
                )
            elif step == "denied":
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    value = (
                        duet.store["ages"]
                        .sum()
                        .get(request_block=True, name="denied", timeout_secs=30)
                    )
                emit(step=step, value=value, warning=str(caught[0].message) if caught else "")
            elif step == "by hand":
                emit(
                    step=step,
                    value=duet.store["ages"]
                    .mean()
                    .get(request_block=True, name="by hand", reason="mean age", timeout_secs=60)
                    .item(),
                )
            elif step == "big":
                emit(
                    step=step,
                    digest=digest(
                        duet.store["big"].get(request_block=True, name="big", timeout_secs=120)
                    ),
                )
            elif step == "wait-forever":
                emit(step=step, started=True)
                duet.store["ages"].get(request_block=True, name="never", timeout_secs=120)
            elif step == "close":
                duet.close()
                emit(step=step, closed=True)
                return
        except sy.DuetError as exc:
            emit(step=step, error=type(exc).__name__, message=str(exc))


if __name__ == "__main__":
    if sys.argv[1] == "owner":
        owner(sys.argv[2], loopback="--loopback" in sys.argv[3:])
    else:
        scientist(sys.argv[2], sys.argv[3], *sys.argv[4:5])
