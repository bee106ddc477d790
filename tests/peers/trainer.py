"""A scientist process that trains its own model on a node's published digits.

    python trainer.py <session_id> <signaling_url> <owner_id> [--steps N] [--name NAME]
                      [--probe OBJECT_ID] [--pause-at STEP]

Prints ``joined`` (its client ID and the id of a secret of its own it sent), ``probe`` (what
happened when it used, got, overwrote and deleted another scientist's object by that id),
``step`` lines as it trains, then ``done`` with its final loss (released by the owner's
handler) and its secret read back, or ``error``. With ``--pause-at``, it prints ``paused``
after that many steps and waits for a line on stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy
from duet.protocol.messages import Delete, Get, Put

torch.set_num_threads(1)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def probe(duet, object_id: str) -> dict[str, str]:
    """Everything a scientist could try with an id that is another's."""
    seen: dict[str, str] = {}
    reply, _ = duet.client.request(
        lambda rid: Get(rid=rid, id=object_id), timeout_secs=30, what="get"
    )
    seen["get"] = reply.error.message if reply.status == "error" else "released"
    try:
        (duet.client.pointer(object_id, "Tensor", {}, owned=False) + 1).get(timeout_secs=30)
        seen["use"] = "used"
    except sy.DuetError as exc:
        seen["use"] = str(exc)
    duet.client.enqueue(lambda enc: Put(id=object_id, value=enc.encode(torch.zeros(1))))
    duet.client.enqueue(lambda enc: Delete(ids=[object_id]))
    duet.sync(timeout_secs=30)
    seen["listed"] = str(len(duet.store))
    return seen


def main(args: argparse.Namespace) -> None:
    duet = sy.join_duet(
        args.session_id, args.url, owner_id=args.owner_id, name=args.name, timeout_secs=60
    )
    secret = torch.tensor([float(len(args.name))]).send(duet)
    duet.sync(timeout_secs=30)
    emit(event="joined", client_id=duet.connection.identity.id, secret_id=secret.id)
    if args.probe:
        emit(event="probe", **probe(duet, args.probe))
    rt = duet.torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    remote = model.send(duet)
    optimizer = rt.optim.Adam(remote.parameters(), lr=0.01)
    loader = rt.utils.data.DataLoader(duet.store["digits"], batch_size=128, shuffle=True)
    step, loss = 0, None
    while step < args.steps:  # epochs, until enough steps
        for data, target in loader:
            optimizer.zero_grad()
            loss = rt.nn.functional.cross_entropy(remote(data), target)
            loss.backward()
            optimizer.step()
            duet.sync(timeout_secs=60)
            emit(event="step", step=step)
            step += 1
            if step == args.pause_at:
                emit(event="paused", step=step)
                sys.stdin.readline()  # until the test says go on
            if step == args.steps:
                break
    assert loss is not None
    value = loss.item().get(request_block=True, name="loss", timeout_secs=60)
    emit(event="done", loss=value, secret=secret.get(timeout_secs=30).tolist())
    duet.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("session_id")
    parser.add_argument("url")
    parser.add_argument("owner_id")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--name", default="")
    parser.add_argument("--probe", default="")
    parser.add_argument("--pause-at", type=int, default=-1)
    arguments = parser.parse_args()
    try:
        main(arguments)
    except sy.DuetError as exc:
        emit(event="error", error=f"{type(exc).__name__}: {exc}")
