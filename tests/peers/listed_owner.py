"""An owner node on a network, as a real process: one shard of the digits, listed or not.

    python listed_owner.py <signaling_url> <shard> <shards> <scientist ID> [--tags a,b]
        [--unlisted] [--secret]

Launches a node (``wait=False``) for the scientist with that ID, publishes its shard of the
digits as a TensorDataset tagged ``--tags`` (default "digits") and allows federated training
on it for that scientist. ``--unlisted``: the shard is published but not listed on the network;
``--secret``: a second dataset, tagged "secret", is published unlisted next to it. Prints JSON
lines: ``listed`` (owner ID, session ID, the listed datasets' ids) once the registration is
done; ``quit`` on stdin closes the node (withdrawing its listing) and prints ``closed``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch
from digits_shards import shard

import duet as sy
from duet import federated

torch.set_num_threads(1)


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields, default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("shard", type=int)
    parser.add_argument("shards", type=int)
    parser.add_argument("scientist")
    parser.add_argument("--tags", default="digits")
    parser.add_argument("--unlisted", action="store_true")
    parser.add_argument("--secret", action="store_true")
    args = parser.parse_args()

    sessions: list[str] = []
    owner = sy.launch_duet(
        args.url, confirm=args.scientist, max_scientists=2, wait=False, audit=False,
        identity=sy.Identity.load_or_create("owner", name=f"owner {args.shard}"),
        on_ready=lambda sid, _url: sessions.append(sid),
    )  # fmt: skip
    x, y = shard(args.shard, args.shards)
    tags = args.tags.split(",")
    owner.publish(
        torch.utils.data.TensorDataset(x, y), tags=tags, listed=not args.unlisted,
        description=f"shard {args.shard} of the 8x8 digits",
    )  # fmt: skip
    if args.secret:
        owner.publish(torch.zeros(3, 3), tags=["secret"], description="not for the network")
    federated.allow_federated_training(
        owner, tags[0], model_elements=100_000, scientist=args.scientist
    )
    assert owner.listing is not None
    owner.listing.settle()
    emit(event="listed", owner_id=owner.identity.id, session_id=sessions[0],
         datasets=[e.id for e in owner.listed()], error=str(owner.listing.last_error or ""))  # fmt: skip
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    main()
