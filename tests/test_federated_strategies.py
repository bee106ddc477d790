"""Strategies against hand computation: FedAvg's weighting, FedProx's term, FedAdam's step."""

from __future__ import annotations

import math

import pytest
import torch

from duet import UsageError
from duet.federated import FedAdam, FedAvg, FedProx, Update, proximal_term, weighted_average


def update(owner: str, samples: int, **tensors: list[float]) -> Update:
    return Update(owner, {k: torch.tensor(v) for k, v in tensors.items()}, samples)


def test_fedavg_weighs_each_owner_by_its_released_sample_count_exactly():
    updates = [update("a", 1, w=[1.0, 2.0], b=[0.0]), update("b", 3, w=[4.0, 8.0], b=[4.0])]
    new = FedAvg().aggregate({"w": torch.zeros(2), "b": torch.zeros(1)}, updates)
    # (1 * 1 + 3 * 4) / 4 = 3.25, (1 * 2 + 3 * 8) / 4 = 6.5, (0 + 3 * 4) / 4 = 3
    assert new["w"].tolist() == [3.25, 6.5] and new["b"].tolist() == [3.0]
    assert new["w"].dtype == torch.float32


def test_fedavg_of_equal_counts_is_the_plain_mean_and_integers_come_from_the_largest_owner():
    updates = [
        Update("a", {"w": torch.tensor([1.0]), "n": torch.tensor(5)}, 10),
        Update("b", {"w": torch.tensor([2.0]), "n": torch.tensor(7)}, 30),
        Update("c", {"w": torch.tensor([6.0]), "n": torch.tensor(9)}, 20),
    ]
    new = weighted_average(updates)
    assert new["w"].item() == pytest.approx((10 * 1 + 30 * 2 + 20 * 6) / 60)
    assert new["n"].item() == 7  # a BatchNorm's counter is not averaged: the largest owner's
    same = weighted_average([update("a", 2, w=[1.0]), update("b", 2, w=[3.0])])
    assert same["w"].item() == 2.0


def test_averaging_refuses_updates_of_another_shape_or_no_samples():
    with pytest.raises(UsageError, match=r"'b'.s update does not have the same tensors"):
        weighted_average([update("a", 1, w=[1.0, 2.0]), update("b", 1, w=[1.0])])
    with pytest.raises(UsageError, match="add up to 0"):
        weighted_average([update("a", 0, w=[1.0])])
    with pytest.raises(UsageError, match="nothing to average"):
        weighted_average([])


def test_fedprox_term_and_its_gradient_by_hand():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    v = torch.tensor([[0.5]], requires_grad=True)
    g, h = torch.tensor([0.0, 0.0]), torch.tensor([[1.5]])
    term = proximal_term([w, v], [g, h], mu=0.1)
    # 0.1 / 2 * ((1 + 4) + 1) = 0.3
    assert term.item() == pytest.approx(0.3)
    term.backward()
    assert w.grad.tolist() == pytest.approx([0.1, 0.2])  # mu * (w - g)
    assert v.grad.item() == pytest.approx(-0.1)
    assert FedProx(mu=0.1).proximal_mu == 0.1 and FedAvg().proximal_mu == 0.0
    with pytest.raises(UsageError, match="mu = 0 is FedAvg"):
        FedProx(mu=0)


def test_fedprox_aggregates_like_fedavg():
    updates = [update("a", 1, w=[1.0]), update("b", 3, w=[5.0])]
    assert FedProx(0.5).aggregate({"w": torch.zeros(1)}, updates)["w"].item() == 4.0


def test_fedadam_steps_by_hand_over_two_rounds():
    adam = FedAdam(lr=0.5, betas=(0.9, 0.99), tau=1e-3)
    x = {"w": torch.tensor([1.0, 1.0]), "steps": torch.tensor(3)}
    # round 1: the owners' average is [2, 0.5]: delta = [1, -0.5]
    one = [
        Update("a", {"w": torch.tensor([3.0, 0.5]), "steps": torch.tensor(4)}, 1),
        Update("b", {"w": torch.tensor([1.0, 0.5]), "steps": torch.tensor(5)}, 1),
    ]
    x1 = adam.aggregate(x, one)
    m = [0.1 * 1.0, 0.1 * -0.5]  # (1 - b1) * delta
    v = [0.01 * 1.0, 0.01 * 0.25]  # (1 - b2) * delta^2
    expected = [1.0 + 0.5 * m[i] / (math.sqrt(v[i]) + 1e-3) for i in range(2)]
    assert x1["w"].tolist() == pytest.approx(expected, rel=1e-6)
    assert x1["steps"].item() == 4  # not adapted: taken from the average (the largest owner)
    # round 2: one owner at x1 + [0.2, 0.2]: delta = [0.2, 0.2]
    two = [Update("a", {"w": x1["w"] + 0.2, "steps": torch.tensor(6)}, 1)]
    x2 = adam.aggregate(x1, two)
    m2 = [0.9 * m[i] + 0.1 * 0.2 for i in range(2)]
    v2 = [0.99 * v[i] + 0.01 * 0.04 for i in range(2)]
    expected2 = [expected[i] + 0.5 * m2[i] / (math.sqrt(v2[i]) + 1e-3) for i in range(2)]
    assert x2["w"].tolist() == pytest.approx(expected2, rel=1e-5)


def test_strategies_refuse_nonsense_settings():
    with pytest.raises(UsageError):
        FedAdam(lr=0)
    with pytest.raises(UsageError):
        FedAdam(betas=(1.0, 0.9))
    assert "FedAdam(lr=0.01" in repr(FedAdam())
