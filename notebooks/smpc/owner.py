"""One party of the encrypted-inference notebook, as a process of its own (on a machine of its
own, in real life): the model owner, the data owner or the crypto provider.

    python owner.py model|data|provider <scientist ID> [--record DIR]

It launches a duet for that scientist (its own signaling server on 127.0.0.1, its own duet
home: a fresh identity), prints its address as one JSON line (``{"address": {...}}``) and
waits for the three parties' IDs on stdin (``roster MODEL,DATA,PROVIDER``), then allows the
computation with ``owner.allow_secure_computation``:

- model: trains a small digits classifier with a square activation (``SquareNet``) in
  plaintext, publishes it ("digits-model") and accepts reveals named "predictions" of
  computations on it (a handler: what it releases is its share, sealed to the data owner);
- data: publishes the held-out digits ("digits-heldout"); keeps their labels to itself;
  prints the accuracy of each set of predictions revealed to it (``--record DIR``: also saves
  the logits to DIR/<name>.pt);
- provider: deals Beaver triples, holds nothing.

``start(role, scientist_id)`` runs one from Python and returns it with its address.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def digits() -> tuple:
    """scikit-learn's digits in [0, 1], split in the same way in every process: the first
    four fifths (after a seeded shuffle) to train on, the rest held out."""
    import torch
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(len(y) * 0.8)
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def square_net():  # type: ignore[no-untyped-def]
    """64 -> 32, squared, -> 10, trained in plaintext (full-batch Adam, 60 steps, seeded)."""
    import torch
    from torch import nn

    class SquareNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(x) ** 2)

    x, y, _, _ = digits()
    torch.manual_seed(0)
    model = SquareNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


class Party:
    """A party's process, started by ``start``: ``address`` for ``join_owners``, ``said``
    what it printed (its screen), ``send`` a line to it, ``stop`` it."""

    def __init__(self, role: str, popen: subprocess.Popen[str]) -> None:
        import queue

        self.role, self.popen = role, popen
        self.address: dict = {}
        self.said: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.said.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout_secs: float) -> str:
        """The next line it prints that holds ``text`` (at most ``timeout_secs``)."""
        import queue
        import time

        deadline = time.monotonic() + timeout_secs
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(
                    f"the {self.role} party did not print {text!r} in time"
                ) from None
            if line is None:
                raise RuntimeError(f"the {self.role} party ended before printing {text!r}")
            if text in line:
                return line

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self, timeout_secs: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                self.send("quit")
                self.popen.wait(timeout_secs)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait(timeout_secs)


def start(role: str, scientist_id: str, *, record: str | None = None, timeout_secs: float = 120):
    """Start the ``role`` party for ``scientist_id`` and wait (at most ``timeout_secs``) for
    its address."""
    home = tempfile.mkdtemp(prefix=f"duet-{role}-")
    env = {**os.environ, "DUET_HOME": home, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(HERE / "owner.py"), role, scientist_id]
    popen = subprocess.Popen(
        command + (["--record", record] if record else []),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    party = Party(role, popen)
    try:
        party.address = json.loads(party.wait_for('{"address"', timeout_secs))["address"]
    except BaseException:
        party.stop()
        raise
    return party


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["model", "data", "provider"])
    parser.add_argument("scientist")
    parser.add_argument("--record", default=None)
    args = parser.parse_args()
    os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")
    import torch

    import duet as sy

    torch.set_num_threads(1)
    data = None
    owner = sy.launch_duet(confirm=args.scientist, max_scientists=1, wait=False, audit=False,
                           on_ready=lambda sid, url: ready.update(session_id=sid, url=url))  # fmt: skip
    if args.role == "model":
        owner.publish(square_net(), tags=["digits-model"], description="a digits classifier")
        for name in ("predictions", "prediction"):  # a batch, one example
            owner.requests.add_handler(name=name, tags=["digits-model"], action="accept")
        data = "digits-model"
    elif args.role == "data":
        _, _, held_x, held_y = digits()
        owner.publish(held_x, tags=["digits-heldout"], description="held-out digits, no labels")
        data = "digits-heldout"

        def on_result(name: str, logits: torch.Tensor) -> None:
            accuracy = float((logits.argmax(dim=1) == held_y).float().mean())
            print(f"data owner: {name} for {len(logits)} digits revealed to me, "
                  f"accuracy {100 * accuracy:.1f}%", flush=True)  # fmt: skip
            if args.record:
                torch.save(logits, os.path.join(args.record, f"{name}.pt"))

        owner.secure_computation.listeners.append(on_result)
    print(json.dumps({"address": {"name": args.role, "session_id": ready["session_id"],
                      "signaling_url": ready["url"], "owner_id": owner.identity.id}}),
          flush=True)  # fmt: skip
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        if line.startswith("roster "):
            parties = line.split()[1].split(",")
            owner.allow_secure_computation(data, parties=parties, provider=parties[2],
                                           scientist=args.scientist)  # fmt: skip
            print(f"{args.role}: secure computation allowed", flush=True)
    owner.close()


ready: dict[str, str] = {}

if __name__ == "__main__":
    main()
