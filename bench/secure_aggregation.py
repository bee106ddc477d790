"""Secure aggregation's cost over a plain FedAvg round, side by side in one run (issue 20).

    PYTHONPATH=. python -m bench.secure_aggregation

1. Rounds over duets: three owners in this process (in-memory channels, real frames, each
   owner's worker a thread of this process), the same data and training, a plain federation
   and a secure one (``secure_aggregation=True``), for the tests' model (64-16-10, 1,210
   weights) and for a 1M-weight model, and eight owners for the 1M-weight model; medians of
   rounds 2 onwards (round 1 sets up), and the CPU a round took in this process (every
   thread: owners, scientist, network), which the machine's other load does not inflate.
2. The protocol alone (``duet.secure.Relay``, no wire): one round of a 1M-element update with
   3 and 8 owners: what the cryptography and the masks cost, per round.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from torch import nn

import duet as sy
from duet import federated as fl
from duet.identity import Identity
from duet.secure import Layout, OwnerRound, Quantiser, Relay, RoundSpec, model_digest

ROUNDS = 4


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def large() -> nn.Module:  # 999,985 weights
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 13_333), nn.ReLU(), nn.Linear(13_333, 10))


def data(seed: int, n: int = 256) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 64, generator=g)
    return torch.utils.data.TensorDataset(x, torch.randint(0, 10, (n,), generator=g))


def federation(make: type | object, *, secure: bool, owners: int = 3) -> fl.Federation:
    model = make()  # type: ignore[operator]
    elements = sum(p.numel() for p in model.state_dict().values())
    nodes = [sy.OwnerSession() for _ in range(owners)]
    ids = [n.identity.id for n in nodes]
    sessions = {}
    for i, node in enumerate(nodes):
        node.publish(data(i), tags=["data"], description="bench")
        if secure:
            fl.allow_federated_training(node, "data", model_elements=elements,
                                        secure_aggregation=True, owners=ids)  # fmt: skip
        else:
            fl.allow_federated_training(node, "data", model_elements=elements)
        _, scientist = sy.duet_pair(owner=node, identity=Identity.ephemeral("scientist"),
                                    max_bytes=1 << 30)  # fmt: skip
        sessions[f"owner{i}"] = scientist
    training = fl.LocalTraining(epochs=1, batch_size=64, optimizer_options={"lr": 0.01},
                                release_loss=False)  # fmt: skip
    return fl.Federation(model, sessions, data="data", training=training, show="none",
                         secure_aggregation=secure, round_timeout_secs=600)  # fmt: skip


def rounds(make: object, secure: bool, owners: int = 3) -> tuple[float, float]:
    """Median wall seconds of rounds 2 onwards, and the CPU seconds (every thread of this
    process: owners, scientist, network) a round took on average over them."""
    fed = federation(make, secure=secure, owners=owners)
    try:
        history = fed.fit(rounds=1)  # sets up
        cpu = time.process_time()
        history = fed.fit(rounds=ROUNDS - 1)
        cpu = (time.process_time() - cpu) / (ROUNDS - 1)
    finally:
        for member in fed.members:
            member.session.close()
    assert all(r.counted for r in history), [r.summary() for r in history]
    return statistics.median(r.secs for r in history[1:]), cpu


def protocol_only(owners: int, size: int = 1_000_000) -> float:
    identities = [Identity.ephemeral("owner") for _ in range(owners)]
    roster = tuple(i.id for i in identities)
    update = torch.zeros(size, dtype=torch.float64)
    digest = model_digest({"w": update})
    spec = RoundSpec("bench", roster, digest, Quantiser(clip=1e4), owners // 2 + 1)
    updates = {i.id: torch.randn(size, dtype=torch.float64) for i in identities}  # not timed
    started = time.perf_counter()
    parties = [OwnerRound(i, spec, expected_owners=roster, model_digest=digest)
               for i in identities]  # fmt: skip
    Relay(spec, Layout.of(update)).run(parties, updates)
    return time.perf_counter() - started


def main() -> None:
    torch.set_num_threads(1)
    print(
        "round over in-process duets (rounds 2-4): wall median plain | secure | ratio; "
        "CPU per round plain | secure | ratio"
    )
    cases = (("64-16-10, 1,210 weights", small, 3), ("1M weights (999,985)", large, 3),
             ("1M weights (999,985)", large, 8))  # fmt: skip
    for name, make, owners in cases:
        plain, plain_cpu = rounds(make, secure=False, owners=owners)
        secure, secure_cpu = rounds(make, secure=True, owners=owners)
        print(f"  {name:24s} {owners} owners {plain * 1000:6.0f} | {secure * 1000:6.0f} ms | "
              f"{secure / plain:.2f}x; CPU {plain_cpu * 1000:6.0f} | {secure_cpu * 1000:6.0f} ms | "
              f"{secure_cpu / plain_cpu:.2f}x", flush=True)  # fmt: skip
    for owners in (3, 8):
        secs = protocol_only(owners)
        print(
            f"protocol alone, 1M-element update, {owners} owners: {secs:.2f} s a round "
            "(all owners' work and the aggregator's, one thread)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
