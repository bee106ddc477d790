"""What a release costs in epsilon: mechanisms as data, and their composition.

Nothing here draws noise or computes a privacy bound by hand. The numbers come from libraries
whose accounting is reviewed and tested elsewhere: Opacus's RDP accountant for one DP-SGD run
(so the owner's quote is the very number Opacus reports after the run), and dp-accounting's RDP
accountant for composing everything a scientist has spent on one dataset.

Every mechanism is a small frozen dataclass with a JSON form, because the ledger stores each
charge's parameters (never a bare epsilon) so that the spend can always be recomputed, and
recomputed again if an accountant improves.

How the spend is counted (the number a budget is checked against):

* A DP-SGD run is ``steps`` self-compositions of a Poisson-subsampled Gaussian (dp-accounting's
  ``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps)``), the same
  event Opacus accounts for.
* A pure epsilon-DP release (OpenDP's Laplace measurements; its epsilon is the measurement's own
  privacy map) enters the RDP accountant as ``(epsilon**2 / 2)``-zCDP, a bound Bun and Steinke
  prove for *every* pure epsilon-DP mechanism, so it holds for OpenDP's discretised samplers too
  (the Laplace-specific RDP curve would be an assumption about the sampler).
* A rho-zCDP release (OpenDP's Gaussian measurements) enters as ``ZCDpEvent(rho)``.
* ``spent`` is the smaller of two valid (epsilon, delta) bounds at the budget's delta: the RDP
  accountant over everything, and basic composition (the pure parts' epsilons added to the RDP
  accountant's epsilon over the rest). Both grow when a mechanism is added, so the spend never
  goes down and is never below any single part; a lone Laplace release costs exactly its
  epsilon, and two DP-SGD runs compose below the sum of their epsilons.

The neighbouring relation throughout is add/remove one row, the one Opacus's Poisson sampling
and the statistics module use.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import dp_accounting
import numpy as np
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS, compute_epsilon

from ..errors import UsageError

__all__ = [
    "DpSgd",
    "Gaussian",
    "Laplace",
    "Mechanism",
    "mechanism_from_json",
    "noise_for",
    "rdp_epsilon",
    "spent",
]


def check_positive(name: str, value: object, *, at_most: float | None = None) -> float:
    """``value`` as a float if it is a finite real number > 0 (and <= ``at_most``), else a
    UsageError naming it. Booleans and strings are refused: a budget typed as "1.0" or True is a
    mistake to report, not a number to guess."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{name} must be a number, not {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{name} must be a finite number > 0, not {value!r}")
    if at_most is not None and number > at_most:
        raise UsageError(f"{name} must be at most {at_most}, not {value!r}")
    return number


def check_delta(delta: object) -> float:
    """A delta strictly between 0 and 1 (0 would make every RDP bound infinite)."""
    number = check_positive("delta", delta)
    if number >= 1:
        raise UsageError(f"delta must be below 1, not {delta!r}")
    return number


def check_steps(steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be a whole number >= 1, not {steps!r}")
    return steps


class _Mechanism:
    """What every mechanism offers: its JSON form (what the ledger stores) and its dp-accounting
    event (what the accountant composes)."""

    def to_json(self) -> str:
        raise NotImplementedError

    def event(self) -> dp_accounting.DpEvent:
        raise NotImplementedError

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The mechanism ``to_json`` wrote; UsageError for any other text (another kind too)."""
        mechanism = mechanism_from_json(text)
        if not isinstance(mechanism, cls):
            raise UsageError(f"not a {cls.__name__} mechanism: {text!r}")
        return mechanism


@dataclass(frozen=True)
class DpSgd(_Mechanism):
    """One DP-SGD run as Opacus runs it: ``steps`` Poisson-sampled batches (each row taken with
    probability ``sample_rate``), each gradient clipped and given Gaussian noise of
    ``noise_multiplier`` times the clipping norm."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        check_positive("noise_multiplier", self.noise_multiplier)
        check_positive("sample_rate", self.sample_rate, at_most=1.0)
        check_steps(self.steps)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "dp_sgd",
                "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate,
                "steps": self.steps,
            },
            sort_keys=True,
        )

    def event(self) -> dp_accounting.DpEvent:
        step = dp_accounting.PoissonSampledDpEvent(
            self.sample_rate, dp_accounting.GaussianDpEvent(self.noise_multiplier)
        )
        return dp_accounting.SelfComposedDpEvent(step, self.steps)


@dataclass(frozen=True)
class Laplace(_Mechanism):
    """A release that is ``epsilon``-DP (pure), as OpenDP's Laplace measurements are; epsilon is
    the measurement's privacy map at one added or removed row."""

    epsilon: float

    def __post_init__(self) -> None:
        check_positive("epsilon", self.epsilon)

    def to_json(self) -> str:
        return json.dumps({"kind": "laplace", "epsilon": self.epsilon}, sort_keys=True)

    def event(self) -> dp_accounting.DpEvent:
        # every pure epsilon-DP mechanism is (epsilon^2 / 2)-zCDP (Bun & Steinke 2016, Prop. 1.4)
        return dp_accounting.ZCDpEvent(rho=self.epsilon**2 / 2)


@dataclass(frozen=True)
class Gaussian(_Mechanism):
    """A release that is ``rho``-zCDP, as OpenDP's Gaussian measurements are (rho from the
    measurement's privacy map at one added or removed row)."""

    rho: float

    def __post_init__(self) -> None:
        check_positive("rho", self.rho)

    def to_json(self) -> str:
        return json.dumps({"kind": "gaussian", "rho": self.rho}, sort_keys=True)

    def event(self) -> dp_accounting.DpEvent:
        return dp_accounting.ZCDpEvent(rho=self.rho)


Mechanism = DpSgd | Laplace | Gaussian

_FIELDS: dict[str, tuple[type[DpSgd] | type[Laplace] | type[Gaussian], tuple[str, ...]]] = {
    "dp_sgd": (DpSgd, ("noise_multiplier", "sample_rate", "steps")),
    "laplace": (Laplace, ("epsilon",)),
    "gaussian": (Gaussian, ("rho",)),
}


def mechanism_from_json(text: str) -> Mechanism:
    """The mechanism ``text`` describes; UsageError for anything else (unknown kind, missing or
    extra fields, a value out of range). Strict on purpose: the ledger treats an entry it cannot
    read as a refusal, never as a charge of zero."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"not a mechanism's JSON: {text!r}") from exc
    if not isinstance(data, Mapping) or data.get("kind") not in _FIELDS:
        raise UsageError(f"not a known mechanism: {text!r}")
    cls, fields = _FIELDS[data["kind"]]
    if set(data) != {"kind", *fields}:
        raise UsageError(f"a {data['kind']} mechanism has exactly the fields {fields}: {text!r}")
    return cls(**{name: data[name] for name in fields})


#: notes Opacus and torch give on every DP job, nothing to act on: the best RDP order is the
#: largest (the epsilon reported is still a valid bound, only a looser one, and the number
#: Opacus's own PrivacyEngine reports); secure_mode (torchcsprng) is off (said in
#: training.py's docstring); full backward hooks fire on module outputs (how Opacus computes
#: per-sample gradients)
OPACUS_NOTES = ("Optimal order is the", "Secure RNG turned off", "Full backward hook is firing")


def quiet_opacus() -> None:
    """Silence OPACUS_NOTES in this process (called before each accounting and job). Not
    ``warnings.catch_warnings``: it is not thread-safe, and two scientists' DP jobs on two
    worker threads would restore each other's filters mid-job. Adding a filter that is in place
    already only moves it to the front."""
    for note in OPACUS_NOTES:
        warnings.filterwarnings("ignore", message=note, category=UserWarning)


def rdp_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The epsilon Opacus's RDP accountant reports at ``delta`` after ``steps`` DP-SGD steps.

    >>> round(rdp_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5), 6)
    7.329111
    """
    job = DpSgd(noise_multiplier, sample_rate, steps)
    delta = check_delta(delta)
    # imported here: opacus imports torch, seconds the ledger (which only composes) need not pay
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    # the history Opacus itself keeps after `steps` optimizer steps with these settings
    accountant.history = [(job.noise_multiplier, job.sample_rate, job.steps)]
    quiet_opacus()
    return float(accountant.get_epsilon(delta=delta))


def noise_for(*, epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier Opacus picks so that ``steps`` steps at ``sample_rate`` spend at most
    ``epsilon`` at ``delta`` (its binary search, to within 0.01 of epsilon, from below)."""
    epsilon = check_positive("epsilon", epsilon)
    delta = check_delta(delta)
    sample_rate = check_positive("sample_rate", sample_rate, at_most=1.0)
    steps = check_steps(steps)
    from opacus.accountants.utils import get_noise_multiplier

    quiet_opacus()
    try:
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="rdp",
            )
        )
    except ValueError as exc:  # Opacus: "The privacy budget is too low."
        raise UsageError(
            f"no noise multiplier reaches epsilon {epsilon:g} at delta {delta:g} in {steps} steps"
            f" at sample rate {sample_rate:g}: {exc}"
        ) from exc


def _grouped(mechanisms: Sequence[Mechanism]) -> list[dp_accounting.DpEvent]:
    """The same composition in few events: a ledger of thousands of entries is priced in
    milliseconds. Exact, not an approximation: runs with the same noise and sample rate compose
    as one run of their summed steps, and zCDP's rho adds up."""
    steps: dict[tuple[float, float], int] = {}
    rho = 0.0
    for m in mechanisms:
        if isinstance(m, DpSgd):
            key = (m.noise_multiplier, m.sample_rate)
            steps[key] = steps.get(key, 0) + m.steps
        else:
            rho += m.event().rho  # both are zCDP events
    events = [DpSgd(sigma, q, n).event() for (sigma, q), n in steps.items()]
    if rho:
        events.append(dp_accounting.ZCDpEvent(rho=rho))
    return events


@functools.lru_cache(maxsize=4096)
def _step_curve(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    """One DP-SGD step's RDP at each of the accountant's orders, as dp-accounting's RDP
    accountant composes it (add/remove one row, the relation Poisson sampling needs). Computed
    once a process for each (noise, sample rate): the series behind it takes a second or so in
    pure Python, and a ledger's every reserve composes every job the scientist ran; composing
    a run of ``steps`` is ``steps`` times this curve, as the accountant itself does it."""
    accountant = RdpAccountant()
    # orders whose series does not converge are left out of the curve by the accountant (an
    # infinite RDP there, never a smaller one) and logged as warnings through absl: that is
    # the accountant's own care, not news for the owner's console
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        accountant.compose(DpSgd(noise_multiplier, sample_rate, 1).event())
    finally:
        absl.setLevel(level)
    return tuple(float(v) for v in accountant._rdp)  # its composed curve (no public reader)


def _rdp_accountant_epsilon(mechanisms: Sequence[Mechanism], delta: float) -> float:
    """What ``RdpAccountant().compose(ComposedDpEvent(_grouped(mechanisms))).get_epsilon(delta)``
    gives, with each DP-SGD step's curve computed once (``_step_curve``): the same sums in the
    same order, so the same number."""
    if not mechanisms:
        return 0.0
    orders = np.array(DEFAULT_RDP_ORDERS)
    rdp = np.zeros_like(orders, dtype=np.float64)
    for event in _grouped(mechanisms):
        if isinstance(event, dp_accounting.ZCDpEvent):
            rdp += event.xi + event.rho * orders
        else:
            assert isinstance(event, dp_accounting.SelfComposedDpEvent)
            step = event.event
            assert isinstance(step, dp_accounting.PoissonSampledDpEvent)
            assert isinstance(step.event, dp_accounting.GaussianDpEvent)
            curve = _step_curve(step.event.noise_multiplier, step.sampling_probability)
            rdp += event.count * np.array(curve)
    epsilon = float(compute_epsilon(orders, rdp, delta)[0])
    if math.isnan(epsilon):
        return math.inf  # an accountant that cannot tell is a spend that cannot be afforded
    return epsilon


def spent(mechanisms: Iterable[Mechanism], delta: float) -> float:
    """The epsilon, at ``delta``, of running all ``mechanisms`` on one dataset (see the module's
    docstring for how they compose). 0.0 for none."""
    delta = check_delta(delta)
    parts = list(mechanisms)
    for part in parts:
        if not isinstance(part, DpSgd | Laplace | Gaussian):
            raise UsageError(f"not a mechanism: {part!r}")
    pure = [p for p in parts if isinstance(p, Laplace)]
    rest = [p for p in parts if not isinstance(p, Laplace)]
    through_rdp = _rdp_accountant_epsilon(parts, delta)
    if not pure:
        return through_rdp  # basic composition would be the same accountant on the same parts
    basic = math.fsum(p.epsilon for p in pure) + _rdp_accountant_epsilon(rest, delta)
    return min(through_rdp, basic)
