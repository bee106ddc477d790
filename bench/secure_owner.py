"""An owner of the secure aggregation benchmark over processes (started by
``bench/secure_aggregation.py --processes``).

    python -m bench.secure_owner --url WS --seed S --elements N [--threads T]

Publishes the in-process benchmark's dataset for its seed (``secure_aggregation.data``: 256
samples of 64 features, 10 classes, tag ``data``) and allows a plain federation named
``plain`` at once (a model of at most N weights, no loss released). Once the driver sends
``roster ID,ID,...`` on stdin (every owner's identity ID, as each printed it in
``published``), it allows a secure one named ``secure`` over that roster
(``allow_federated_training(..., secure_aggregation=True, owners=...)``). Prints JSON lines:
``ready`` (session ID), ``published`` (owner ID), ``allowed``; serves until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from bench.procs import pin_malloc
from bench.secure_aggregation import data
from duet import federated


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--elements", type=int, required=True, help="the model's weights")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if os.environ.get("BENCH_MALLOC", "pinned") == "pinned":
        pin_malloc()
    torch.set_num_threads(args.threads)
    owner = sy.launch_duet(
        args.url, confirm=False, max_scientists=1, wait=False, audit=False, review=False,
        on_ready=lambda sid, url: emit("ready", session_id=sid),
    )  # fmt: skip
    owner.publish(data(args.seed), tags=["data"], description="bench")
    federated.allow_federated_training(
        owner, "data", model_elements=args.elements, federation="plain", release_loss=False
    )
    emit("published", owner_id=owner.identity.id)
    for line in sys.stdin:  # until the driver closes our stdin
        if line.startswith("roster "):
            federated.allow_federated_training(
                owner, "data", model_elements=args.elements, federation="secure",
                secure_aggregation=True, owners=line.split()[1].split(","),
            )  # fmt: skip
            emit("allowed")
    owner.close()


if __name__ == "__main__":
    main()
