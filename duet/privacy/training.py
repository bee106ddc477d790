"""DP-SGD jobs the owner runs with Opacus, priced before they start exactly as they will run.

Why a job and not a loop the scientist drives: a DP guarantee covers what Opacus's optimizer
releases (clipped, noised, Poisson-sampled steps); a scientist who could reach the loader, the
loss, per-sample gradients or the noise could release anything. Here the owner builds every
piece from names on a small allowlist and hands back only the trained model and the epsilon.

How the price matches the run (Opacus 1.6, ``make_private`` with Poisson sampling):

* a ``DataLoader(dataset, batch_size=B)`` has ``k = ceil(N / B)`` batches;
* Opacus's DPDataLoader samples each row with probability ``1 / k`` and yields
  ``int(1 / (1 / k))`` batches an epoch (= k), and its accountant charges each optimizer step at
  sample rate ``1 / len(dp_loader)``;
* so ``sample_rate = 1 / k`` (= B / N when B divides N; slightly more than B / N otherwise) and
  ``steps = epochs * k``. ``price_training`` computes these with the same float expressions, and
  ``train_dp`` refuses to start if Opacus's loader disagrees, so a quote cannot drift from the run.

Noise: ``noise_multiplier`` as given, or with ``epsilon`` the one Opacus's ``get_noise_multiplier``
finds for these steps (at most epsilon, from below). Opacus draws the noise and the Poisson
samples from a torch generator of the job's own, seeded from the OS (``secrets``), so nothing a
scientist does to torch's global generator on the owner reaches it. It is not Opacus's
``secure_mode`` (that needs torchcsprng, which does not build for this torch): adequate against a
remote scientist who sees only the trained model, not against floating-point attacks on the
noise itself.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Sized
from typing import Protocol, TypeVar

import torch
from opacus import PrivacyEngine
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import UsageError
from .accounting import DpSgd, check_delta, check_positive, noise_for, quiet_opacus

__all__ = ["LOSSES", "OPTIMIZERS", "price_training", "train_dp"]

LOSSES: dict[str, Callable[[], nn.Module]] = {
    "cross_entropy": nn.CrossEntropyLoss,
    "nll": nn.NLLLoss,
    "mse": nn.MSELoss,
}


class _OptimizerClass(Protocol):
    def __call__(self, params: Iterator[nn.Parameter], *, lr: float) -> torch.optim.Optimizer: ...


OPTIMIZERS: dict[str, _OptimizerClass] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}


class Progress(Protocol):
    """Told after each optimizer step: how many steps ran and how many the job has. Only
    counts: the loss is a function of the owner's data and is not the job's to release."""

    def __call__(self, step: int, steps: int) -> None: ...


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a whole number >= 1, not {value!r}")
    return value


def _size(dataset: object) -> int:
    if not isinstance(dataset, Sized):
        raise UsageError(f"a DP job needs a dataset with a length, not {type(dataset).__name__}")
    return _whole("the dataset's length", len(dataset))


def price_training(
    dataset: object,
    *,
    batch_size: int,
    epochs: int,
    delta: float,
    noise_multiplier: float | None = None,
    epsilon: float | None = None,
) -> DpSgd:
    """The DP-SGD mechanism ``train_dp`` will run with these settings (give exactly one of
    ``noise_multiplier`` and ``epsilon``). Its epsilon at ``delta`` is
    ``rdp_epsilon(**vars(job), delta=delta)``, the number Opacus reports after the run."""
    rows = _size(dataset)
    batch_size = _whole("batch_size", batch_size)
    epochs = _whole("epochs", epochs)
    delta = check_delta(delta)
    batches = math.ceil(rows / batch_size)  # len(DataLoader(dataset, batch_size)), drop_last off
    loader_rate = 1 / batches  # DPDataLoader.from_data_loader
    per_epoch = int(1 / loader_rate)  # UniformWithReplacementSampler's steps
    sample_rate = 1 / per_epoch  # make_private: 1 / len(dp_loader), the accountant's rate
    steps = epochs * per_epoch
    if (noise_multiplier is None) == (epsilon is None):
        raise UsageError("give exactly one of noise_multiplier and epsilon")
    if epsilon is not None:
        noise_multiplier = noise_for(
            epsilon=epsilon, delta=delta, sample_rate=sample_rate, steps=steps
        )
    assert noise_multiplier is not None
    return DpSgd(check_positive("noise_multiplier", noise_multiplier), sample_rate, steps)


T = TypeVar("T")


def _named(kind: str, name: object, table: dict[str, T]) -> T:
    if not isinstance(name, str) or name not in table:
        raise UsageError(f"{kind} {name!r} is not one a DP job runs; choose one of {sorted(table)}")
    return table[name]


def train_dp(
    model: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    loss: str = "cross_entropy",
    optimizer: str = "sgd",
    lr: float,
    batch_size: int,
    epochs: int,
    max_grad_norm: float,
    noise_multiplier: float | None = None,
    epsilon: float | None = None,
    delta: float,
    progress: Progress | None = None,
) -> tuple[nn.Module, float]:
    """Train ``model`` on ``dataset`` with DP-SGD (Opacus) and return the trained model and the
    epsilon Opacus's RDP accountant reports at ``delta``.

    The model is first made Opacus-compatible (``ModuleValidator.fix``: BatchNorm becomes
    GroupNorm, for example); the returned model is that one, trained, without Opacus's hooks.
    Raises UsageError for a loss or optimizer off the allowlist, bad numbers, or a model Opacus
    cannot train privately. Charging the ledger is the caller's (price with ``price_training``,
    reserve, run, commit).
    """
    criterion = _named("loss", loss, LOSSES)()
    optimizer_class = _named("optimizer", optimizer, OPTIMIZERS)
    lr = check_positive("lr", lr)
    max_grad_norm = check_positive("max_grad_norm", max_grad_norm)
    job = price_training(
        dataset,
        batch_size=batch_size,
        epochs=epochs,
        delta=delta,
        noise_multiplier=noise_multiplier,
        epsilon=epsilon,
    )
    fixed = ModuleValidator.fix(model)
    problems = ModuleValidator.validate(fixed, strict=False)
    if problems:
        raise UsageError(f"Opacus cannot train this model privately: {problems}")
    # the job's own generator, seeded from the OS: noise and sampling that no scientist's
    # torch.manual_seed on the owner (nor anything else drawing from torch's global generator)
    # can predict or replay
    generator = torch.Generator().manual_seed(secrets.randbits(64))
    quiet_opacus()  # its notes on every job (secure_mode off, backward hooks), process-wide
    engine = PrivacyEngine(accountant="rdp")
    private_model, private_optimizer, private_loader = engine.make_private(
        module=fixed,
        optimizer=optimizer_class(fixed.parameters(), lr=lr),
        data_loader=DataLoader(dataset, batch_size=batch_size, generator=generator),
        noise_multiplier=job.noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=True,
        noise_generator=generator,
    )
    if len(private_loader) * epochs != job.steps:
        raise UsageError(
            f"Opacus would run {len(private_loader) * epochs} steps, priced {job.steps}: this"
            " Opacus samples differently from the one duet was written for; nothing was run"
        )
    step = 0
    for _ in range(job.steps // len(private_loader)):
        for inputs, targets in private_loader:
            private_optimizer.zero_grad()
            criterion(private_model(inputs), targets).backward()
            private_optimizer.step()
            step += 1
            if progress is not None:
                progress(step, job.steps)
    quiet_opacus()
    spent = float(engine.get_epsilon(delta))
    trained = private_model.to_standard_module()
    return trained, spent
