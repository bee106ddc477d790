"""The models of the encrypted-inference tests over duets, 64 -> 32 -> 10 on scikit-learn's
digits: ``SquareNet`` (a square activation: additions and products only, which inference on
shares computes as is) and ``ReluNet`` (``relu`` on shares is the comparison protocol,
``duet.smpc.remote.comparison``, exact), each trained in plaintext by ``trained``."""

from __future__ import annotations

import torch
from torch import nn


class _Layers(nn.Module):
    """64 -> 32 -> 10: the layers both networks have (the activation is each one's)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)


class SquareNet(_Layers):
    """64 -> 32, squared, -> 10."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) ** 2)


class ReluNet(_Layers):
    """64 -> 32, ReLU, -> 10."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


#: how each is trained: full-batch Adam, seeded (steps, learning rate)
TRAINING: dict[type[_Layers], tuple[int, float]] = {SquareNet: (60, 0.01), ReluNet: (100, 0.02)}


def trained(net: type[_Layers], x: torch.Tensor, y: torch.Tensor) -> _Layers:
    """A ``net`` trained in plaintext on (x, y)."""
    steps, lr = TRAINING[net]
    torch.manual_seed(0)
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model
