"""DP-SGD jobs run by the owner with Opacus: the quote is the epsilon the run reports."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import TensorDataset

from duet.errors import UsageError
from duet.privacy import DpSgd, price_training, rdp_epsilon, spent, train_dp

DELTA = 1e-5


@pytest.fixture(scope="module")
def digits() -> TensorDataset:
    images, labels = load_digits(return_X_y=True)
    return TensorDataset(
        torch.tensor(images / 16.0, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    )


def tiny() -> nn.Module:
    torch.manual_seed(19)
    return nn.Sequential(nn.Linear(64, 10))


def test_the_quote_is_the_epsilon_opacus_reports_after_the_real_run(digits):
    settings = dict(batch_size=64, epochs=1, delta=DELTA)
    quote = price_training(digits, noise_multiplier=1.1, **settings)
    # 1,797 rows in batches of 64: ceil(1797 / 64) = 29 Poisson batches of rate 1/29 per epoch
    assert quote == DpSgd(noise_multiplier=1.1, sample_rate=1 / 29, steps=29)
    quoted = rdp_epsilon(
        noise_multiplier=quote.noise_multiplier,
        sample_rate=quote.sample_rate,
        steps=quote.steps,
        delta=DELTA,
    )
    seen: list[tuple[int, int]] = []
    before = [p.detach().clone() for p in tiny().parameters()]
    model, epsilon = train_dp(
        tiny(), digits, lr=0.5, max_grad_norm=1.0, noise_multiplier=1.1,
        progress=lambda step, steps: seen.append((step, steps)), **settings,
    )  # fmt: skip
    assert epsilon == pytest.approx(quoted, rel=1e-12)
    # the ledger composes with dp-accounting: the same event, within its numerics
    assert spent([quote], DELTA) == pytest.approx(epsilon, rel=1e-3)
    assert seen == [(step, 29) for step in range(1, 30)]
    assert not hasattr(model, "_module")  # Opacus's wrapper and hooks are gone
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert model(digits.tensors[0][:5]).shape == (5, 10)


def test_a_job_asked_for_epsilon_gets_opacus_noise_and_spends_at_most_that(digits):
    _, epsilon = train_dp(
        tiny(), digits, lr=0.5, batch_size=128, epochs=1, max_grad_norm=1.0, epsilon=2.0,
        delta=DELTA, optimizer="adam",
    )  # fmt: skip
    assert 1.9 < epsilon <= 2.0
    quote = price_training(digits, batch_size=128, epochs=1, epsilon=2.0, delta=DELTA)
    # 1,797 / 128 does not divide: Opacus samples at 1 / ceil(1797 / 128) = 1/15, not 128/1797
    assert quote.sample_rate == 1 / 15 and quote.steps == 15
    assert rdp_epsilon(**vars(quote), delta=DELTA) == pytest.approx(epsilon, rel=1e-12)


def test_a_model_with_batch_norm_is_fixed_by_opacus_before_it_trains(digits):
    torch.manual_seed(19)
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    trained, _ = train_dp(
        model, digits, lr=0.1, batch_size=256, epochs=1, max_grad_norm=1.0,
        noise_multiplier=1.0, delta=DELTA,
    )  # fmt: skip
    assert not any(isinstance(m, nn.BatchNorm1d) for m in trained.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in trained.modules())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "hinge"}, "loss 'hinge' is not one a DP job runs"),
        ({"loss": "torch.nn.functional.cross_entropy"}, "choose one of"),
        ({"optimizer": "lbfgs"}, "optimizer 'lbfgs' is not one"),
        ({"noise_multiplier": None}, "exactly one of noise_multiplier and epsilon"),
        ({"epsilon": 1.0}, "exactly one of noise_multiplier and epsilon"),
        ({"lr": math.nan}, "lr must be"),
        ({"max_grad_norm": -1.0}, "max_grad_norm must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"epochs": 1.5}, "epochs must be"),
        ({"delta": 0.0}, "delta must be"),
        ({"noise_multiplier": "1.1"}, "noise_multiplier must be a number"),
    ],
)
def test_settings_off_the_allowlist_or_out_of_range_are_refused_before_anything_runs(
    digits, options, message
):
    settings = dict(
        lr=0.1, batch_size=64, epochs=1, max_grad_norm=1.0, noise_multiplier=1.1, delta=DELTA
    )
    with pytest.raises(UsageError, match=message):
        train_dp(tiny(), digits, **{**settings, **options})
