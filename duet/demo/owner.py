"""The demo's data owner: publishes the training digits and decides requests as they come.

Run by ``duet demo`` as ``python -m duet.demo.owner <signaling url>``; prints JSON lines the
runner shows as the owner's side of the story.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from duet.demo.data import digits


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def add_handlers(requests: sy.RequestQueue) -> None:
    """The demo owner's handlers. They say what they release, not only the name a scientist
    gives a request: the machine's CUDA flag (a bool), the number of batches of the digits (an
    int made by ``__len__``), and a model computed from the digits alone."""
    requests.add_handler(
        name="cuda_is_available", tags=["torch.cuda.is_available"], kind="bool", action="accept"
    )
    requests.add_handler(
        name="train_size", tags=["digits-train", "__len__"], kind="int", action="accept"
    )
    requests.add_handler(name="loss", action="deny", print_local=True)
    requests.add_handler(
        name="model_download", tags=["digits-train"], kind="module", action="accept"
    )


def main(url: str) -> None:
    torch.set_num_threads(1)
    train_x, train_y, _, _ = digits()
    duet = sy.launch_duet(
        url, loopback=True, on_ready=lambda sid, _url: say(event="ready", session_id=sid)
    )
    dataset = torch.utils.data.TensorDataset(train_x, train_y)
    duet.publish(
        dataset, tags=["digits-train"], description=f"{len(train_y)} handwritten digits, 28x28"
    )
    requests = duet.requests
    requests.printer = lambda text: say(event="print_local", text=text)
    # listening before the handlers are added: a request that arrived meanwhile is decided
    # by add_handler, and its decision is shown too
    requests.add_listener(
        lambda r: say(
            event="decision", name=r.name, status=r.status.value, by=r.decided_by, reason=r.reason
        )
    )
    add_handlers(requests)
    say(event="published", items=len(train_y))
    duet.wait_closed()
    say(event="closed", requests=len(requests.history))


if __name__ == "__main__":
    main(sys.argv[1])
