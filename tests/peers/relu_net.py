"""The ReLU model of the encrypted-inference tests over duets: ``relu`` on shares is the
comparison protocol (``duet.smpc.remote.comparison``), exact, so inference on shares follows
plaintext up to fixed point's rounding."""

from __future__ import annotations

import torch
from torch import nn


class ReluNet(nn.Module):
    """64 -> 32, ReLU, -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def trained(x: torch.Tensor, y: torch.Tensor) -> ReluNet:
    """Trained in plaintext on (x, y): full-batch Adam, 100 steps, seeded."""
    torch.manual_seed(0)
    model = ReluNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model
