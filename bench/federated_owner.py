"""An owner of the federated benchmark (started by ``bench/federated.py``).

    python -m bench.federated_owner --url WS --threads T --seed S

Publishes a small dataset (64 samples of 64 features, 10 classes, tag ``data``), allows
federated training of a small model (``allow_federated_training``) and serves until stdin
closes. Prints ``{"event": "ready", "session_id": ...}`` and ``{"event": "published", ...}``.
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
from duet import federated

SAMPLES, FEATURES, CLASSES = 64, 64, 10


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if os.environ.get("BENCH_MALLOC", "pinned") == "pinned":
        pin_malloc()
    torch.set_num_threads(args.threads)
    owner = sy.launch_duet(
        args.url, confirm=False, max_scientists=1, wait=False, audit=False,
        on_ready=lambda sid, url: emit("ready", session_id=sid),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(SAMPLES, FEATURES, generator=generator)
    y = torch.randint(0, CLASSES, (SAMPLES,), generator=generator)
    owner.publish(torch.utils.data.TensorDataset(x, y), tags=["data"], description="features")
    federated.allow_federated_training(owner, "data", model_elements=FEATURES * CLASSES + CLASSES)
    emit("published", owner_id=owner.identity.id, pid=os.getpid())
    for _ in sys.stdin:  # until the driver closes our stdin
        pass
    owner.close()


if __name__ == "__main__":
    main()
