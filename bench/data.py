"""Deterministic data both the owner and the driver can rebuild bit for bit (same torch)."""

from __future__ import annotations

import torch

BATCH = 64
MNIST_SAMPLES = 16 * BATCH  # 16 batches of MNIST-shaped images (1x28x28), random values
SMALL_SAMPLES = 16 * BATCH
SMALL_FEATURES = 64
BIG_ELEMENTS = 50_000_000 // 4  # a 50 MB float32 tensor


def mnist_like() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(MNIST_SAMPLES, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (MNIST_SAMPLES,), generator=g)
    return x, y


def small_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SMALL_SAMPLES, SMALL_FEATURES, generator=g)
    y = torch.randint(0, 10, (SMALL_SAMPLES,), generator=g)
    return x, y


def batch_slice(step: int, samples: int) -> slice:
    start = (step * BATCH) % samples
    return slice(start, start + BATCH)
