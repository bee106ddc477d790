"""How a round's local models become the next global model: ``Strategy`` and its three kinds.

Everything here is local arithmetic on state dicts the owners released; no I/O.

- ``FedAvg`` (McMahan et al., 2017): the average of the owners' models, each weighted by the
  number of samples it trained on (a number each owner released through a request).
- ``FedProx`` (Li et al., 2020): FedAvg's average, and a proximal term
  ``mu / 2 * ||w - w_global||^2`` added to every owner's local objective, so that owners whose
  data differ do not drift far from the global model within a round.
- ``FedAdam`` (Reddi et al., 2021, "Adaptive Federated Optimization"): the weighted average
  defines a pseudo-gradient ``delta = average - global``; the server applies Adam to it
  (``m = b1 m + (1 - b1) delta``, ``v = b2 v + (1 - b2) delta^2``,
  ``global += lr * m / (sqrt(v) + tau)``, without bias correction, as in the paper).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UsageError

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Update:
    """One owner's contribution to a round: its trained weights, released through its request
    queue (or by a DP job under its privacy budget), and the number of samples it trained on
    (released too). A DP job's: ``epsilon`` (its own, as Opacus's accountant reports it),
    ``charged`` (what it added to the scientist's spend on the owner's data: jobs compose
    below the sum of their epsilons) and ``remaining`` (the budget left after it)."""

    owner: str
    state: Mapping[str, torch.Tensor]
    samples: int
    loss: float | None = None
    epsilon: float | None = None
    charged: float | None = None
    remaining: float | None = None


class Strategy(ABC):
    """Decides the local objective's extra term and how updates are aggregated.

    ``proximal_mu`` > 0 adds ``proximal_mu / 2 * ||w - w_global||^2`` to each owner's local
    loss (FedProx). ``aggregate`` returns the next global state from the current one and the
    round's updates (at least one; all with the global state's names and shapes).
    """

    proximal_mu: float = 0.0

    @abstractmethod
    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Update]
    ) -> StateDict:
        """The next global state dict."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def weighted_average(updates: Sequence[Update]) -> StateDict:
    """The average of the updates' states, each weighted by its sample count.

    Floating point tensors are averaged; other tensors (a BatchNorm's batch counter) are taken
    from the update with the most samples. Raises UsageError with no updates, no samples, or
    states whose names or shapes differ.
    """
    if not updates:
        raise UsageError("there is nothing to average: no update in this round")
    total = sum(u.samples for u in updates)
    if total <= 0:
        raise UsageError("the updates' sample counts add up to 0")
    first = updates[0].state
    for update in updates[1:]:
        if update.state.keys() != first.keys() or any(
            update.state[k].shape != first[k].shape for k in first
        ):
            raise UsageError(
                f"{update.owner!r}'s update does not have the same tensors as {updates[0].owner!r}'s"
            )
    largest = max(updates, key=lambda u: u.samples)
    averaged: StateDict = {}
    with torch.no_grad():
        for key, value in first.items():
            if not value.is_floating_point():
                averaged[key] = largest.state[key].clone()
                continue
            acc = torch.zeros_like(value, dtype=torch.float64)
            for update in updates:
                acc += update.state[key].to(torch.float64) * (update.samples / total)
            averaged[key] = acc.to(value.dtype)
    return averaged


# Any: local tensors or pointers, and the same kind out; a pointer's arithmetic is set on the
# Pointer class at run time (setattr), which the type checker cannot see
def proximal_term(params: Sequence[Any], global_params: Sequence[Any], mu: float) -> Any:
    """``mu / 2 * sum ||p - g||^2`` over matching tensors: local tensors, or pointers (then the
    term is computed on the owner's side, and recorded into a plan when called in one)."""
    if len(params) != len(global_params):
        raise UsageError(f"{len(params)} parameters but {len(global_params)} global ones")
    term = None
    for p, g in zip(params, global_params, strict=True):
        square = ((p - g) ** 2).sum()
        term = square if term is None else term + square
    if term is None:
        raise UsageError("the model has no parameters")
    return term * (mu / 2.0)


class FedAvg(Strategy):
    """Federated averaging: the sample-weighted average of the owners' models."""

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Update]
    ) -> StateDict:
        return weighted_average(updates)


class FedProx(FedAvg):
    """FedAvg's aggregation, with ``mu / 2 * ||w - w_global||^2`` in every local objective."""

    def __init__(self, mu: float = 0.01):
        if not mu > 0 or not math.isfinite(mu):
            raise UsageError(f"FedProx needs mu > 0, not {mu!r} (mu = 0 is FedAvg)")
        self.proximal_mu = float(mu)

    @property
    def mu(self) -> float:
        return self.proximal_mu


class FedAdam(Strategy):
    """Adam on the server: the round's averaged change is a pseudo-gradient for the global model.

    ``lr`` is the server's learning rate, ``betas`` Adam's moment decays, ``tau`` the
    adaptivity (Reddi et al.'s epsilon; larger is closer to plain averaging with momentum).
    Non-floating point tensors are taken from the average as they are.
    """

    def __init__(
        self, lr: float = 0.01, betas: tuple[float, float] = (0.9, 0.99), tau: float = 1e-3
    ):
        if not lr > 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or not tau > 0:
            raise UsageError(
                f"FedAdam needs lr > 0, betas in [0, 1) and tau > 0, not {lr}, {betas}, {tau}"
            )
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.tau = float(tau)
        self._m: StateDict = {}
        self._v: StateDict = {}

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Update]
    ) -> StateDict:
        averaged = weighted_average(updates)
        beta1, beta2 = self.betas
        new: StateDict = {}
        with torch.no_grad():
            for key, current in global_state.items():
                if not current.is_floating_point():
                    new[key] = averaged[key]
                    continue
                delta = averaged[key] - current
                m = self._m.get(key, torch.zeros_like(current))
                v = self._v.get(key, torch.zeros_like(current))
                m = beta1 * m + (1 - beta1) * delta
                v = beta2 * v + (1 - beta2) * delta * delta
                self._m[key], self._v[key] = m, v
                new[key] = current + self.lr * m / (v.sqrt() + self.tau)
        return new


__all__ = [
    "FedAdam",
    "FedAvg",
    "FedProx",
    "Strategy",
    "Update",
    "proximal_term",
    "weighted_average",
]
