"""A scientist for the isolation tests: it draws random numbers on the owner, or asks for values.

    python isolation_scientist.py <session_id> <signaling_url>

Runs the commands read on stdin, one per line, and prints one JSON object per command:

- ``join``: join the owner (this process's own identity); ``leave``: close the session;
- ``seed N``: seed its generator on the owner with N; ``seed-data``: with the owner's
  ``ages[0]`` (a value it may not see);
- ``draw N``: N draws of ``torch.randn(16)`` on the owner, sent at once, then each fetched with
  ``.get()``: the sha-256 of each draw got (its first 16 hex digits), and how many were refused
  with PermissionDenied;
- ``visit ELEMENTS``: join, ask for two values of ELEMENTS float32 each made from ``ages``
  (named "by handler", then "by hand"), one after the other, and leave;
- ``flood N BATCH``: N requests for ``ages.sum()`` named "by handler", BATCH sent at a time
  and all of them waited for before the next.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import warnings

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy

WAIT = 60.0
SHAPE = (16,)


def emit(**fields):
    print(json.dumps(fields, default=str), flush=True)


def digest(value: torch.Tensor) -> str:
    return hashlib.sha256(value.numpy().tobytes()).hexdigest()[:16]


def join(session_id: str, url: str) -> sy.ScientistSession:
    return sy.join_duet(session_id, url, timeout_secs=WAIT)


def draw(duet: sy.ScientistSession, count: int) -> dict:
    started = time.monotonic()
    pointers = [duet.torch.randn(*SHAPE) for _ in range(count)]
    digests, denied, errors = [], 0, []
    for pointer in pointers:
        try:
            digests.append(digest(pointer.get(timeout_secs=WAIT)))
        except sy.PermissionDenied:
            denied += 1
        except sy.DuetError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return {
        "digests": digests,
        "denied": denied,
        "errors": errors[:5],
        "secs": time.monotonic() - started,
    }


def ask(pointer, name: str) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        return pointer.get(request_block=True, name=name, timeout_secs=WAIT)


def visit(session_id: str, url: str, elements: int) -> dict:
    duet = join(session_id, url)
    ages = duet.store["ages"]
    repeats = elements // 3
    first = ages.repeat(repeats)
    answers = [ask(first, "by handler")]
    first.delete()
    second = ages.repeat(repeats)
    answers.append(ask(second, "by hand"))
    client_id = duet.connection.identity.id
    duet.close()
    return {"client_id": client_id, "answers": [None if a is None else "value" for a in answers]}


def flood(duet: sy.ScientistSession, count: int, batch: int) -> dict:
    total = duet.store["ages"].sum()
    started = time.monotonic()
    answered, denied = 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        while answered < count:
            handles = [
                total.request(name="by handler") for _ in range(min(batch, count - answered))
            ]
            for handle in handles:
                denied += handle.wait(timeout_secs=WAIT) is None
            answered += len(handles)
    return {"requests": answered, "denied": denied, "secs": time.monotonic() - started}


def main(session_id: str, url: str) -> None:
    duet: sy.ScientistSession | None = None
    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command == "join":
                duet = join(session_id, url)
                emit(step=command, client_id=duet.connection.identity.id)
            elif command == "seed":
                duet.torch.manual_seed(int(args[0]))
                duet.sync(timeout_secs=WAIT)
                emit(step=command, seed=int(args[0]))
            elif command == "seed-data":
                duet.torch.manual_seed(duet.store["ages"][0].long().item())
                duet.sync(timeout_secs=WAIT)
                emit(step=command)
            elif command == "draw":
                emit(step=command, **draw(duet, int(args[0])))
            elif command == "visit":
                emit(step=command, **visit(session_id, url, int(args[0])))
            elif command == "flood":
                emit(step=command, **flood(duet, int(args[0]), int(args[1])))
            elif command == "leave":
                duet.close()
                emit(step=command)
                return
        except sy.DuetError as exc:
            emit(step=command, error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
