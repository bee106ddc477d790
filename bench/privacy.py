"""10. Differential privacy (issue 19): what a DP-SGD job costs over plain training, and what
pricing and reserving one request costs against a ledger that already holds 10,000 entries.

(a) The same small model (64 -> 64 -> 10 MLP) on the same data (scikit-learn's digits, 1,797
rows), the same epochs, batch size, loss and optimizer (SGD, lr 0.1): once with
``duet.privacy.train_dp`` as the owner runs a job (Opacus: Poisson sampling, per-sample
gradients clipped to 1.0, noise multiplier 1.1), once with a plain torch loop over a shuffled
DataLoader. Rounds alternate DP and plain on the same worker thread (``Context.local``), in this
process: no session, the cost measured is Opacus's, not the wire's.

(b) A ledger (SQLite, WAL, ``synchronous=FULL``) holding 10,000 entries, written in one
transaction straight into its table (as ``reserve`` would write them, one fsync instead of
10,000); then ``reserve`` of one Laplace charge, timed, repeated. Each reserve reads the budget
and every charge not aborted on that (scientist, dataset), composes them with dp-accounting and
inserts its row, in one ``BEGIN IMMEDIATE`` transaction with an fsync. Two layouts: the 10,000
entries spread over 100 scientists (the one measured has 100), and all 10,000 on the one
scientist and dataset measured (the worst case: every one composed, each with its own epsilon).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from duet import privacy

from .common import Context, Figure, median, percentile

BATCH, LR, NOISE, CLIP, DELTA = 64, 0.1, 1.1, 1.0, 1e-5
ENTRIES = 10_000


def digits() -> TensorDataset:
    from sklearn.datasets import load_digits

    data = load_digits()
    features = torch.tensor(data.data / 16.0, dtype=torch.float32)
    return TensorDataset(features, torch.tensor(data.target, dtype=torch.long))


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy(trained: nn.Module, dataset: TensorDataset) -> float:
    features, labels = dataset.tensors
    with torch.no_grad():
        return float((trained(features).argmax(1) == labels).float().mean())


def plain(dataset: TensorDataset, epochs: int) -> tuple[float, float]:
    """Non-private training: seconds, accuracy."""
    start = time.perf_counter()
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for features, labels in DataLoader(dataset, batch_size=BATCH, shuffle=True):
            optimizer.zero_grad()
            criterion(net(features), labels).backward()
            optimizer.step()
    return time.perf_counter() - start, accuracy(net, dataset)


def private(dataset: TensorDataset, epochs: int) -> tuple[float, float, float]:
    """A DP-SGD job as the owner runs it: seconds, accuracy, epsilon."""
    start = time.perf_counter()
    trained, epsilon = privacy.train_dp(
        model(), dataset, loss="cross_entropy", optimizer="sgd", lr=LR, batch_size=BATCH,
        epochs=epochs, max_grad_norm=CLIP, noise_multiplier=NOISE, delta=DELTA,
    )  # fmt: skip
    return time.perf_counter() - start, accuracy(trained, dataset), epsilon


def training(ctx: Context) -> None:
    dataset = digits()
    epochs, rounds = ctx.n(5, 1), ctx.n(5, 2)
    ctx.local(private, dataset, 1)  # warm-up: Opacus's imports and hooks, torch's kernels
    ctx.local(plain, dataset, 1)
    dp_times, plain_times, dp_acc, plain_acc = [], [], [], []
    epsilon = 0.0
    for _ in range(rounds):  # alternating: drift of the machine hits both alike
        seconds, acc, epsilon = ctx.local(private, dataset, epochs)
        dp_times.append(seconds)
        dp_acc.append(acc)
        seconds, acc = ctx.local(plain, dataset, epochs)
        plain_times.append(seconds)
        plain_acc.append(acc)
    dp, base = median(dp_times), median(plain_times)
    setting = f"{epochs} epochs of {len(dataset):,} rows, batch {BATCH}, median of {rounds}"
    ctx.report(Figure("plain training (median)", base * 1000, "ms", note=setting))
    ctx.report(
        Figure(
            "DP-SGD job, train_dp (median)", dp * 1000, "ms",
            baseline=f"ratio {dp / base:.2f} vs plain",
            note=f"epsilon {epsilon:.3g} at delta {DELTA:g}; accuracy DP "
            f"{statistics.mean(dp_acc):.3f}, plain {statistics.mean(plain_acc):.3f} (train set)",
        )
    )  # fmt: skip


def filled_ledger(path: Path, *, scientists: int, sgd_every: int = 0) -> privacy.Ledger:
    """A ledger with ENTRIES committed entries over ``scientists`` scientists on one dataset,
    each its own epsilon (identical charges are grouped by the accountant: distinct ones are the
    worst case); every ``sgd_every``-th a DP-SGD run (0: none)."""
    ledger = privacy.Ledger(path)
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    names = [f"scientist-{i:03d}" for i in range(scientists)]
    for name in names:
        ledger.set_budget(name, "ages", epsilon=1e9, delta=DELTA)
    rows = []
    for i in range(ENTRIES):
        mechanism: privacy.Mechanism = (
            privacy.DpSgd(noise_multiplier=1.0 + i / ENTRIES, sample_rate=0.01, steps=100)
            if sgd_every and i % sgd_every == 0
            else privacy.Laplace(0.01 * (1 + i / ENTRIES))
        )
        rows.append((names[i % scientists], "ages", mechanism.to_json(), at))
    db = ledger._db  # one transaction for the setup, not 10,000 fsyncs: not the API measured
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO entries (scientist, dataset, mechanism, at) VALUES (?, ?, ?, ?)", rows
    )
    db.execute("INSERT INTO outcomes (entry_id, state, at) SELECT id, 'committed', ? FROM entries",
               (at,))  # fmt: skip
    db.execute("COMMIT")
    return ledger


LAYOUTS = [
    # (name, scientists, every n-th entry a DP-SGD run, reserves full / quick)
    ("statistics, 100 scientists", 100, 0, (200, 30)),
    ("statistics, all on one", 1, 0, (200, 30)),
    ("10% DP-SGD, 100 scientists", 100, 10, (5, 2)),
]


def reserves(ctx: Context) -> None:
    for layout, scientists, sgd_every, counts in LAYOUTS:
        count = ctx.n(*counts)
        with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
            start = time.perf_counter()
            ledger = filled_ledger(
                Path(tmp) / "privacy.sqlite3", scientists=scientists, sgd_every=sgd_every
            )
            setup = time.perf_counter() - start
            try:
                ledger.reserve("scientist-000", "ages", privacy.Laplace(0.001))  # warm-up
                held = len(ledger.history("scientist-000"))
                times = []
                for i in range(count):
                    charge = privacy.Laplace(0.001 * (2 + i / count))
                    begun = time.perf_counter()
                    ledger.reserve("scientist-000", "ages", charge)
                    times.append(time.perf_counter() - begun)
                composed = len(ledger.history("scientist-000"))
            finally:
                ledger.close()
        ctx.report(
            Figure(
                f"reserve, 10k entries: {layout}", median(times) * 1000, "ms",
                baseline=f"p99 {percentile(times, 99) * 1000:,.1f} ms",
                note=f"{count} reserves, composing {held:,} to {composed - 1:,} charges"
                f" ({held // sgd_every if sgd_every else 0} DP-SGD);"
                f" setup {setup:.2f} s in one transaction",
            )
        )  # fmt: skip


def run(ctx: Context) -> None:
    training(ctx)
    reserves(ctx)
