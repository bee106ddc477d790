"""An owner node for the multi-scientist tests: serves up to N scientists at once.

    python node_owner.py <signaling_url> <max_scientists> [--compute-only ID ...]

Publishes scikit-learn's digits (tag "digits") and handlers releasing float losses computed
from them and their length (a loop over a loader of them asks for it). An unknown scientist is confirmed when the test types ``allow <ID>`` within a few
seconds (``asked`` is printed when one is asked for); known ones (from the audit log in this
process's duet home) join without being asked. Prints ``ready`` (session ID), one JSON line per
scientist joining, leaving and per decision; reads commands on stdin: ``allow ID``, ``stats``
(who is connected, what the audit log holds), ``quit``.
"""

from __future__ import annotations

import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch
from sklearn.datasets import load_digits

import duet as sy

torch.set_num_threads(1)
CONFIRM_SECS = 5.0


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields):
    line = json.dumps(fields, default=str) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


allowed: set[str] = set()
changed = threading.Condition()


def confirm(client_id: str) -> bool:
    emit(event="asked", client_id=client_id)
    with changed:
        return changed.wait_for(lambda: client_id in allowed, CONFIRM_SECS)


def main(url: str, max_scientists: int, compute_only: list[str]) -> None:
    owner = sy.launch_duet(
        url,
        confirm=confirm,
        max_scientists=max_scientists,
        wait=False,
        on_ready=lambda sid, u: emit(event="ready", session_id=sid),
    )
    owner.audit.add_listener(
        lambda e: emit(event=e["kind"], scientist=e["scientist"], name=e["name"],
                       status=e.get("status", ""), reason=e.get("reason", ""))
    )  # fmt: skip
    for scientist in compute_only:
        owner.access.allow(scientist, requests=False)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    owner.publish(torch.utils.data.TensorDataset(x, y), tags=["digits"], description="digits")
    owner.requests.add_handler(
        tags=["digits", "item"], kind="float", derived_inputs=True, action="accept"
    )  # a loss: the item at the end of a computation from the digits
    owner.requests.add_handler(tags=["digits", "__len__"], kind="int", action="accept")
    emit(event="published", owner_id=owner.identity.id)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "allow":
            with changed:
                allowed.add(argument)
                changed.notify_all()
        elif command == "stats":
            events = owner.audit.events()
            emit(
                event="stats",
                connected=sorted(owner.links),
                kinds=[e["kind"] for e in events],
                decisions=[(e["scientist"], e["status"]) for e in owner.audit.events("decision")],
                refused=[
                    (e["scientist"], e.get("reason", "")) for e in owner.audit.events("refused")
                ],
                left=[e["scientist"] for e in owner.audit.events("leave")],
            )
        elif command == "quit":
            break
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    args = sys.argv[1:]
    only = [a for i, a in enumerate(args) if i > 0 and args[i - 1] == "--compute-only"]
    main(args[0], int(args[1]), only)
