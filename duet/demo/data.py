"""The demo's data: scikit-learn's 8x8 digits, scaled to MNIST's 28x28 and normalized."""

from __future__ import annotations

import torch

HELD_OUT = 0.2
SPLIT_SEED = 0


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, held-out images, held-out labels), the same every run."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        images, size=(28, 28), mode="bilinear", align_corners=False
    )
    images = (images - 0.1307) / 0.3081
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(len(labels) * (1 - HELD_OUT))
    train, test = order[:cut], order[cut:]
    return images[train], labels[train], images[test], labels[test]
