"""The model of the encrypted-inference tests and notebook: a network with a square activation,
which inference on shares computes exactly (additions and products only)."""

from __future__ import annotations

import torch
from torch import nn


class SquareNet(nn.Module):
    """64 -> 32, squared, -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) ** 2)


def trained(x: torch.Tensor, y: torch.Tensor) -> SquareNet:
    """Trained in plaintext on (x, y): full-batch Adam, 60 steps, seeded."""
    torch.manual_seed(0)
    model = SquareNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model
