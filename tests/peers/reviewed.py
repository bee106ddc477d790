"""A scientist whose releases the owner decides by hand, on the review page of a node.

    python reviewed.py <session_id> <signaling_url> <owner_id> [--name NAME] [--epochs N]

Trains a small model on the node's published digits (tag ``digits``), prints ``trained``, asks
for the model (a request no handler decides) and prints ``model`` (whether it came, and its
accuracy on the digits scikit-learn ships), then waits for a line on stdin, asks for its last
loss under a hostile name and reason (NAME and REASON below) and prints ``answer`` (the value,
or None, and the warning it got); then leaves (``left``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch

import duet as sy

torch.set_num_threads(1)
WAIT = 240.0  # a person (the test's browser) decides: the owner's node bounds it too
#: what a hostile scientist could write into its request, for the page to show as text
NAME = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
REASON = "see\nhere\x1b[31m red \u202e</span><b>bold</b>"


def emit(**fields):
    print(json.dumps(fields, default=str), flush=True)


def accuracy(model: torch.nn.Module) -> float:
    from sklearn.datasets import load_digits

    digits = load_digits()
    data = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    with torch.no_grad():
        guess = model(data).argmax(dim=1)
    return float((guess == torch.tensor(digits.target)).float().mean())


def main(args: argparse.Namespace) -> None:
    duet = sy.join_duet(
        args.session_id, args.url, owner_id=args.owner_id, name=args.name, timeout_secs=60
    )
    emit(event="joined", client_id=duet.connection.identity.id)
    rt = duet.torch
    torch.manual_seed(0)
    remote = torch.nn.Sequential(torch.nn.Linear(64, 10)).send(duet)
    optimizer = rt.optim.Adam(remote.parameters(), lr=0.05)
    loader = rt.utils.data.DataLoader(duet.store["digits"], batch_size=256, shuffle=True)
    loss, steps = None, 0
    for _ in range(args.epochs):  # as the README's `duet serve` example does
        for data, target in loader:
            optimizer.zero_grad()
            loss = rt.nn.functional.cross_entropy(remote(data), target.long())
            loss.backward()
            optimizer.step()
            steps += 1
    duet.sync(timeout_secs=60)
    emit(event="trained", steps=steps)
    model = remote.get(request_block=True, name="model", reason="evaluate it", timeout_secs=WAIT)
    emit(event="model", released=model is not None,
         accuracy=None if model is None else accuracy(model))  # fmt: skip
    sys.stdin.readline()
    assert loss is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = loss.item().get(request_block=True, name=NAME, reason=REASON, timeout_secs=WAIT)
    emit(event="answer", value=value, warnings=[str(w.message) for w in caught])
    duet.close()
    emit(event="left")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("session_id")
    parser.add_argument("url")
    parser.add_argument("owner_id")
    parser.add_argument("--name", default="")
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()
    try:
        main(arguments)
    except sy.DuetError as exc:
        emit(event="error", error=f"{type(exc).__name__}: {exc}")
