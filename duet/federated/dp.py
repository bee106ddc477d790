"""Federated DP-SGD: each owner's round is a DP training job under that owner's privacy budget.

The scientist gives the federation a ``DpRound`` (``Federation(..., dp=DpRound(...))``): each
round, every owner is sent the global model with those settings as a DP-SGD job
(``duet.privacy.train``, awaited through ``AsyncSession.privacy``). The owner prices it, charges
it to the scientist's budget on its dataset, runs it with Opacus and releases the trained
weights and the epsilon, without a request: the budget is the decision. The scientist drives
no loop and asks for no raw update or loss, so there is nothing it can shape into a release
but the model it sends. An owner whose budget cannot take the job is left out of the round
("over budget", with the owner's numbers); one that refuses the job, "refused".

The owner allows such a federation with ``allow_federated_training(owner, data, dp=...)``:
only the sample count (FedAvg's weights) is released by a handler; updates leave only as DP
jobs. ``dp=PrivacyBudget(epsilon=, delta=)`` also sets the federation's scientist's budget.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pydantic import ValidationError
from torch import nn

from ..errors import (
    BudgetExceeded,
    ConnectionLost,
    DuetError,
    DuetTimeout,
    NotAllowed,
    PermissionDenied,
    QuotaExceeded,
    RemoteError,
    UsageError,
)
from ..protocol.dp_messages import DpTraining
from ..sessions.aio import AsyncSession
from .history import LeftOut, Outcome

#: the owner's progress notice of a job, "DP training: step 40 of 100" (from the wire: read
#: only as two bounded numbers)
_STEP = re.compile(r"step (\d{1,9}) of (\d{1,9})$")


@dataclass(frozen=True)
class DpRound:
    """The DP-SGD job each owner runs in a round (Opacus, on the owner's machine): ``epochs``
    over its data in Poisson-sampled batches of ``batch_size`` on average, each sample's
    gradient clipped to ``max_grad_norm``, Gaussian noise of ``noise_multiplier`` times that;
    or give ``epsilon`` instead of ``noise_multiplier`` to have each owner pick the noise that
    spends that epsilon a round (at its budget's delta). ``optimizer`` ("sgd", "adam") at
    ``lr`` on ``loss`` ("cross_entropy", "nll", "mse"): names the owner's allowlist knows.

        dp = sy.federated.DpRound(noise_multiplier=1.1, max_grad_norm=1.0, batch_size=32,
                                  epochs=1, lr=0.5)
        fed = sy.federated.Federation(model, owners, data="digits", dp=dp)
    """

    max_grad_norm: float
    batch_size: int
    noise_multiplier: float | None = None
    epsilon: float | None = None
    epochs: int = 1
    lr: float = 0.1
    optimizer: str = "sgd"
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.epsilon is None):
            raise UsageError("DpRound: give exactly one of noise_multiplier and epsilon")
        _checked(self.settings("data"))  # every setting as the owner will read it

    def settings(self, data: str) -> dict[str, object]:
        """``session.privacy.train``'s arguments for one owner's job on ``data``."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return {"data": data, **fields}


@dataclass(frozen=True)
class PrivacyBudget:
    """The privacy budget an owner gives a DP federation's scientist on its dataset:
    ``epsilon`` at ``delta``, over all rounds (``allow_federated_training(..., dp=...)`` sets
    it with ``owner.privacy.set_budget``)."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise UsageError(f"a privacy budget's epsilon is above 0, not {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise UsageError(f"a privacy budget's delta is between 0 and 1, not {self.delta!r}")


def _checked(settings: dict[str, object]) -> None:
    """Refuse settings the owner would refuse anyway, here, before any round starts."""
    try:
        DpTraining.model_validate({"rid": 1, "model": "check", **settings})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise UsageError(f"DpRound: {where}: {first.get('msg')}") from None


async def run_job(
    aio: AsyncSession,
    global_model: nn.Module,
    dp: DpRound,
    *,
    data: str,
    timeout_secs: float,
    on_step: Callable[[int, int], None],
) -> tuple[nn.Module, dict[str, object]]:
    """Train ``global_model`` (a copy is sent) by a DP job on one owner; returns the trained
    model and the numbers the owner released with it (``epsilon``, ``charged``,
    ``remaining``...). Raises LeftOut (over budget, refused), DuetTimeout, ConnectionLost,
    RemoteError."""

    def told(text: str) -> None:  # on duet's loop: the owner's progress notices
        step = _STEP.search(text[-40:])
        if step:
            on_step(int(step.group(1)), int(step.group(2)))

    job = aio.privacy.submit(copy.deepcopy(global_model), **dp.settings(data))
    job.on_progress = told
    try:
        trained, _ = await job.wait(timeout_secs=timeout_secs)
    except BudgetExceeded as exc:
        raise LeftOut(Outcome.OVER_BUDGET, str(exc)) from exc
    except (UsageError, QuotaExceeded, PermissionDenied, NotAllowed) as exc:
        raise LeftOut(Outcome.REFUSED, f"the owner refused its DP job: {exc}") from exc
    except (ConnectionLost, DuetTimeout, RemoteError):
        raise  # lost, late or failed there: told as for any round
    except DuetError as exc:  # what the owner released is not a model and an epsilon
        raise LeftOut(Outcome.FAILED, f"its DP job's release cannot be used: {exc}") from exc
    assert job.result is not None  # set with the model
    if not isinstance(trained, nn.Module):  # a local model was sent: its class comes back
        raise LeftOut(Outcome.FAILED, "its DP job released no model")
    return trained, job.result


def number(released: dict[str, object], key: str) -> float | None:
    """A finite number the owner released under ``key``, or None (nothing is trusted)."""
    value = released.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


__all__ = ["DpRound", "PrivacyBudget", "number", "run_job"]
