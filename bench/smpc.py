"""Encrypted inference's latency over real duets (issue 20): ``python -m bench --only smpc``.

Three owner processes (``notebooks/smpc/owner.py``: the model owner with a 64-32-10 network with
a square activation, the data owner with the 360 held-out digits, the crypto provider), each
with its signaling server on 127.0.0.1; this process is the scientist and relays. Timed, medians:

- the forward pass on shares, ``((x @ w1.t() + b1) ** 2) @ w2.t() + b2`` as the notebook
  writes it (three Beaver products, each a dealing and two rounds between the holders through
  the scientist; two transposes and two additions, one round each: 13 round trips), for the
  whole held-out batch and for one example, shares made beforehand;
- sharing the inputs, and the reveal of the logits to the data owner (its handler accepts);
- plaintext inference of the same network here, for the ratio;
- the same layers with ReLU in place of the square, ``(x @ w1.t() + b1).relu() @ w2.t() + b2``
  (the comparison protocol between the holders, ``duet.smpc.remote.comparison``: a dealing and
  10 exchanges, every part of the batch at once; its latency does not depend on the weights), for
  the batch (once: it is long) and for one example.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import torch

import duet as sy
from duet import federated as fl
from duet.smpc.remote import SecureComputation

from .common import Context, Figure
from .procs import ROOT

ROLES = ["model", "data", "provider"]


def _owner_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("smpc_owner", ROOT / "notebooks/smpc/owner.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(fn, count: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(count):
        begun = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - begun)
    return statistics.median(times), out


def run(ctx: Context) -> None:
    owner = _owner_script()
    me = sy.Identity.load_or_create().id
    parties = {role: owner.start(role, me, timeout_secs=120) for role in ROLES}
    sessions: dict = {}
    try:
        roster = [parties[role].address["owner_id"] for role in ROLES]
        for party in parties.values():
            party.send("roster " + ",".join(roster))
        for party in parties.values():
            party.wait_for("allowed", 60)
        addresses = [fl.OwnerAddress(**p.address) for p in parties.values()]
        sessions = fl.join_owners(addresses, timeout_secs=60)
        model_owner, data_owner, provider = (sessions[role] for role in ROLES)
        comp = SecureComputation(model_owner, data_owner, crypto_provider=provider)
        pointer, model = data_owner.store["digits-heldout"], model_owner.store["digits-model"]
        w1, b1 = comp.share(model, part="fc1.weight"), comp.share(model, part="fc1.bias")
        w2, b2 = comp.share(model, part="fc2.weight"), comp.share(model, part="fc2.bias")

        def forward(x):  # type: ignore[no-untyped-def]
            return ((x @ w1.t() + b1) ** 2) @ w2.t() + b2

        repeats = ctx.n(7, 2)
        share_secs, batch = _timed(lambda: comp.share(pointer), repeats)
        batch_secs, logits = _timed(lambda: forward(batch), repeats)
        examples = batch.shape[0]  # type: ignore[attr-defined]
        reveal_secs, _ = _timed(
            lambda: logits.reveal_to(data_owner, name="predictions"),  # type: ignore[attr-defined]
            1,
        )
        one = comp.share(pointer, rows=slice(0, 1))
        single_secs, _ = _timed(lambda: forward(one), ctx.n(15, 3))
        plain = owner.square_net()
        _, _, held_x, _ = owner.digits()
        with torch.no_grad():
            local_secs, _ = _timed(lambda: plain(held_x), 20)
            local_one, _ = _timed(lambda: plain(held_x[:1]), 50)
        ctx.report(Figure(
            f"encrypted inference, batch of {examples}: per example", batch_secs / examples * 1000,
            "ms", baseline=f"plaintext {local_secs / examples * 1e6:,.1f} us per example",
            note=f"{batch_secs:.2f} s the batch; sharing it {share_secs * 1000:.0f} ms; the "
                 f"logits revealed to the data owner {reveal_secs * 1000:.0f} ms",
        ))  # fmt: skip

        def forward_relu(x):  # type: ignore[no-untyped-def]
            return (x @ w1.t() + b1).relu() @ w2.t() + b2

        relu_batch_secs, _ = _timed(lambda: forward_relu(batch), 1)
        relu_single_secs, _ = _timed(lambda: forward_relu(one), ctx.n(7, 2))
        ctx.report(Figure(
            f"encrypted inference with ReLU, batch of {examples}: per example",
            relu_batch_secs / examples * 1000, "ms",
            baseline=f"square activation {batch_secs / examples * 1000:.2f} ms",
            note=f"{relu_batch_secs:.1f} s the batch ({examples * 32} comparisons, in parts of "
                 "1,024 elements; one run)",
        ))  # fmt: skip
        ctx.report(Figure(
            "encrypted inference with ReLU, one example", relu_single_secs * 1000, "ms",
            baseline=f"square activation {single_secs * 1000:.0f} ms",
            note="24 round trips through the scientist (the square's 13, less one product, "
                 "plus a dealing, a start and 10 exchanges for the comparison)",
        ))  # fmt: skip
        ctx.report(Figure(
            "encrypted inference, one example", single_secs * 1000, "ms",
            baseline=f"plaintext {local_one * 1e6:,.0f} us",
            note=f"{single_secs / (batch_secs / examples):.0f}x the batch's per-example time; "
                 "13 round trips (3 Beaver products of 3 each, 2 transposes, 2 additions)",
        ))  # fmt: skip
    finally:
        for session in sessions.values():
            session.close()
        for party in parties.values():
            party.stop()
