"""An owner taking part in a federation, as a real process: one shard of the digits.

    python federated_owner.py <signaling_url> <shard> <shards> <scientist ID> [options]

Launches a node for one scientist (the one with that ID, confirmed without a prompt), publishes
its shard of scikit-learn's digits as a TensorDataset tagged "digits" and allows federated
training with ``sy.federated.allow_federated_training`` (constrained handlers). Options:
``--deny-rounds 2,3``: deny those rounds' updates (a handler named for each round, first);
``--rounds 1,2``: allow only those rounds' updates; ``--delay SECS``: every sample takes that
long to read (a slow owner), after the first ``--quick N`` samples; ``--dp EPSILON``: allow
the federation only as DP jobs (``allow_federated_training(..., dp=PrivacyBudget(EPSILON,
1e-5))``, the scientist's budget in the ledger of the process's duet home). Prints JSON lines:
``ready`` (session ID), ``published`` (owner ID, samples), one ``decision`` per request
decided; ``privacy`` on stdin prints the scientist's budget and the ledger's charges
(``privacy``), ``quit`` ends it.

``--secure``: secure aggregation only: the owner waits for ``roster ID,ID,ID`` on stdin (the
federation's owners, as the test tells every owner), allows it
(``allow_federated_training(..., secure_aggregation=True, owners=...)``) and prints
``allowed``. ``--record DIR``: writes each update it fixes for a secure round (and the trained
weights it came from) to DIR/shard<i>-<n>.pt, so the test can compute plain FedAvg of the
very same updates. ``--die-at-input``: the process exits at once (os._exit, no reply) when a
round asks for its masked input: killed after the keys were agreed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

os.environ.setdefault("DUET_ICE_HOSTS", "127.0.0.1")

import torch
from digits_shards import shard

import duet as sy
from duet import federated

torch.set_num_threads(1)
MODEL_ELEMENTS = 100_000  # at most this many weights in a released model


_emitting = threading.Lock()  # confirmations and listeners print from several threads


def emit(**fields: object) -> None:
    line = json.dumps(fields, default=str) + "\n"
    with _emitting:  # one whole line at a time
        sys.stdout.write(line)
        sys.stdout.flush()


class SlowDigits(torch.utils.data.TensorDataset):
    """Reading a sample takes ``delay`` seconds, once ``quick`` samples have been read."""

    delay = 0.0
    quick = 0

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        if self.quick > 0:
            self.quick -= 1
        else:
            time.sleep(self.delay)
        return super().__getitem__(index)


def rounds(text: str) -> list[int]:
    return [int(r) for r in text.split(",") if r]


def instrument(record: str | None, die_at_input: bool, shard: int) -> None:
    """The test's window on the owner's side of secure rounds (see the module's docstring)."""
    from duet.owner import secure_rounds

    fixed = secure_rounds._update
    count = [0]

    def recorded(start, trained, rule, samples):  # type: ignore[no-untyped-def]
        update = fixed(start, trained, rule, samples)
        if record:
            count[0] += 1
            weights = {k: v.detach().clone() for k, v in trained.state_dict().items()}
            path = os.path.join(record, f"shard{shard}-{count[0]}.pt")
            torch.save({"update": update, "trained": weights, "samples": samples}, path)
        return update

    secure_rounds._update = recorded
    if die_at_input:

        def die(self, live, message):  # type: ignore[no-untyped-def]
            os._exit(3)

        secure_rounds.SecureRounds._input = die


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("shard", type=int)
    parser.add_argument("shards", type=int)
    parser.add_argument("scientist")
    parser.add_argument("--deny-rounds", type=rounds, default=[])
    parser.add_argument("--rounds", type=rounds, default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--quick", type=int, default=0)
    parser.add_argument("--dp", type=float, default=None)
    parser.add_argument("--secure", action="store_true")
    parser.add_argument("--record", default=None)
    parser.add_argument("--die-at-input", action="store_true")
    args = parser.parse_args()
    if args.record or args.die_at_input:
        instrument(args.record, args.die_at_input, args.shard)

    owner = sy.launch_duet(
        args.url,
        confirm=args.scientist,
        max_scientists=1,
        wait=False,
        audit=False,
        on_ready=lambda sid, _url: emit(event="ready", session_id=sid),
    )
    x, y = shard(args.shard, args.shards)
    dataset = SlowDigits(x, y)
    dataset.delay, dataset.quick = args.delay, args.quick
    owner.publish(dataset, tags=["digits"], description=f"shard {args.shard} of the digits")
    names = federated.RequestNames()
    for round_ in args.deny_rounds:
        owner.requests.add_handler(name=names.update(round_), action="deny")
    if args.secure:
        pass  # allowed once the roster arrives on stdin
    elif args.dp is None:
        federated.allow_federated_training(
            owner, "digits", model_elements=MODEL_ELEMENTS, rounds=args.rounds,
            scientist=args.scientist,
        )  # fmt: skip
    else:
        federated.allow_federated_training(
            owner, "digits", rounds=args.rounds, scientist=args.scientist,
            dp=federated.PrivacyBudget(epsilon=args.dp, delta=1e-5),
        )  # fmt: skip
    owner.requests.add_listener(
        lambda r: emit(event="decision", name=r.name, status=r.status.value, by=r.decided_by)
    )
    emit(event="published", owner_id=owner.identity.id, samples=len(y))
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        if line.startswith("roster "):
            federated.allow_federated_training(
                owner, "digits", model_elements=MODEL_ELEMENTS, scientist=args.scientist,
                secure_aggregation=True, owners=line.split()[1].split(","), min_owners=3,
            )  # fmt: skip
            emit(event="allowed")
        if line.strip() == "privacy":
            budget = owner.privacy.budget(args.scientist, "digits")
            emit(event="privacy", budget=budget, charges=owner.privacy.history(),
                 pending=[r.name for r in owner.requests])  # fmt: skip
    owner.close()
    emit(event="closed")


if __name__ == "__main__":
    main()
