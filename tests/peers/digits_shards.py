"""scikit-learn's 8x8 digits split the same way in every process: a held-out fifth for the
scientist, and the rest dealt into disjoint shards, one per owner."""

from __future__ import annotations

import torch

HELD_OUT = 0.2


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train inputs, train labels, held-out inputs, held-out labels): 64 features in [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(len(y) * (1 - HELD_OUT))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def shard(index: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Owner ``index`` of ``count``'s disjoint share of the training digits."""
    x, y, _, _ = digits()
    return x[index::count], y[index::count]
