"""An owner node whose confirmation of strangers nobody answers, for the admission tests.

    python gate_owner.py <signaling_url> <max_scientists> [--expect ID ...]

Its confirm function says yes at once to the IDs given with ``--expect`` (the owner was told
them) and, for anyone else, waits for a person who never comes: it blocks until the test types
``release`` (or ``quit``), then says no. Prints ``ready`` (session ID), ``published`` (owner
ID), ``asked`` when its confirm function is called and ``answered`` when that call returns, and
one JSON line per audit event (``connect``, ``refused``, ``leave``, with the name the owner
shows). Reads ``release``, ``known`` (the scientists this identity knows) and ``quit`` on stdin.
"""

from __future__ import annotations

import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import duet as sy

NOBODY_SECS = 600.0  # how long the person who never comes is waited for


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields):
    line = json.dumps(fields, default=str) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


released = threading.Event()


def main(url: str, max_scientists: int, expected: set[str]) -> None:
    def confirm(client_id: str) -> bool:
        emit(event="asked", client_id=client_id)
        ok = client_id in expected or (released.wait(NOBODY_SECS) and False)
        emit(event="answered", client_id=client_id, ok=ok)
        return ok

    owner = sy.launch_duet(
        url,
        confirm=confirm,
        max_scientists=max_scientists,
        wait=False,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    owner.audit.add_listener(
        lambda e: emit(event=e["kind"], scientist=e["scientist"], name=e["name"],
                       reason=e.get("reason", ""))
    )  # fmt: skip
    emit(event="published", owner_id=owner.identity.id)
    for line in sys.stdin:
        command = line.strip()
        if command == "release":
            released.set()
        elif command == "known":
            emit(event="known", ids=owner.scientists.known["id"].tolist())
        elif command == "quit":
            break
    released.set()
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    args = sys.argv[1:]
    expect = {a for i, a in enumerate(args) if i > 0 and args[i - 1] == "--expect"}
    main(args[0], int(args[1]), expect)
