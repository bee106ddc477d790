"""An owner taking part in encrypted inference (issue 20), as a real process.

    python smpc_owner.py <signaling_url> <role> <scientist ID> [--record DIR] [--net relu]

``role``: ``model`` trains a small network with a square activation (``SquareNet``) on
scikit-learn's digits (the training part, in plaintext) and publishes it tagged
"digits-model"; ``data`` publishes the held-out digits' inputs tagged "digits-heldout" (and
their labels, "digits-labels", under no rule); ``provider`` publishes nothing and deals.
Prints JSON lines: ``ready`` (session ID), ``published`` (owner ID), ``allowed`` once
``roster MODEL,DATA,PROVIDER`` arrives on stdin (then it calls
``owner.allow_secure_computation``), one ``decision`` per request decided, and (data owner)
``result`` with each result revealed to it (its values, the predictions and their accuracy
against the labels it holds). Handlers: the model owner accepts reveals named "predictions"
or "total" of its model's computations; the data owner accepts "total" (one number) and
nothing else. ``--record DIR``: the model owner writes its weights to DIR/model.pt (the
test's window, to compute plaintext inference). ``--net relu``: the model owner's network is
``ReluNet`` (ReLU instead of the square). ``quit`` ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch
from digits_nets import ReluNet, SquareNet, trained
from digits_shards import digits

import duet as sy

torch.set_num_threads(1)
_emitting = threading.Lock()


def emit(**fields: object) -> None:
    line = json.dumps(fields, default=str) + "\n"
    with _emitting:
        sys.stdout.write(line)
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("role", choices=["model", "data", "provider"])
    parser.add_argument("scientist")
    parser.add_argument("--record", default=None)
    parser.add_argument("--net", choices=["square", "relu"], default="square")
    args = parser.parse_args()

    owner = sy.launch_duet(
        args.url,
        confirm=args.scientist,
        max_scientists=1,
        wait=False,
        audit=False,
        on_ready=lambda sid, _url: emit(event="ready", session_id=sid),
    )
    _, _, held_x, held_y = digits()
    data = None
    if args.role == "model":
        train_x, train_y, _, _ = digits()
        model = trained(ReluNet if args.net == "relu" else SquareNet, train_x, train_y)
        if args.record:
            torch.save(model.state_dict(), os.path.join(args.record, "model.pt"))
        owner.publish(model, tags=["digits-model"], description="a digits classifier")
        data = "digits-model"
        for name in ("predictions", "total"):
            owner.requests.add_handler(name=name, tags=["digits-model"], action="accept")
    elif args.role == "data":
        owner.publish(held_x, tags=["digits-heldout"], description="held-out digits")
        owner.publish(held_y, tags=["digits-labels"], description="their labels")
        data = "digits-heldout"
        owner.requests.add_handler(
            name="total", tags=["digits-heldout"], max_elements=1, action="accept"
        )

        def on_result(name: str, value: torch.Tensor) -> None:
            predictions = value.argmax(dim=1)
            accuracy = float((predictions == held_y).float().mean())
            emit(event="result", name=name, values=value.tolist(), accuracy=accuracy)

        owner.secure_computation.listeners.append(on_result)
    owner.requests.add_listener(
        lambda r: emit(event="decision", name=r.name, status=r.status.value, op=r.op)
    )
    emit(event="published", owner_id=owner.identity.id)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        if line.startswith("roster "):
            parties = line.split()[1].split(",")
            owner.allow_secure_computation(
                data, parties=parties, provider=parties[2], scientist=args.scientist
            )
            emit(event="allowed")
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    main()
