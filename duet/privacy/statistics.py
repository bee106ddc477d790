"""DP statistics the owner computes on its own data: sum, count, mean and histogram.

The noise and its privacy map are OpenDP's (``opendp.prelude``: clamp, sum, count,
count-by-categories, then a Laplace measurement); nothing here samples noise. Each function
returns the noisy value and the ``Laplace`` mechanism priced by the measurement's own privacy
map at one row added or removed, so the ledger charges exactly what ran.

Neighbouring relation: add or remove one row (OpenDP's symmetric distance 1), the relation
DP-SGD with Poisson sampling uses, so every charge on a dataset composes in one accountant.
Under it the dataset's size is private, which is why:

* values are clamped to ``bounds`` first (OpenDP's clamp), and the sum's sensitivity follows
  from them: max(|lo|, |hi|) (plus OpenDP's allowance for floating-point rounding);
* ``count`` is noisy too (sensitivity 1, integer Laplace noise);
* ``mean`` is a noisy sum over a noisy count, each with half the epsilon, composed by OpenDP
  (``make_composition``); the quotient is then clipped to the bounds (post-processing, free);
* ``histogram`` bins the clamped values into ``bins`` equal bins over ``bounds`` (a per-row map,
  so one row still moves one count by one), then adds integer Laplace noise to every count.

Inputs: a 1-D torch tensor, numpy array or pandas Series of numbers. NaN, empty data, reversed
bounds, epsilon <= 0 raise UsageError. The checks about the data (NaN, emptiness) look at the
owner's private values: whoever wires this to a scientist must treat those refusals as private.
"""

from __future__ import annotations

import builtins
import math

import numpy as np
import opendp.prelude as dp
import pandas as pd
import torch

from ..errors import UsageError
from .accounting import Laplace, check_positive

__all__ = ["KINDS", "count", "histogram", "mean", "price_statistic", "sum"]

MAX_BINS = 10_000

# OpenDP gates its constructions that are not yet vetted by its proof review ("contrib");
# clamp, sum, count and Laplace are among them in 0.16.
dp.enable_features("contrib")


def _values(values: object) -> list[float]:
    """The data as a list of floats (what OpenDP's float vector domain takes)."""
    if isinstance(values, torch.Tensor):
        array = values.detach().cpu().numpy()
    elif isinstance(values, pd.Series):
        array = values.to_numpy()
    elif isinstance(values, np.ndarray):
        array = values
    else:
        raise UsageError(
            "DP statistics take a 1-D torch tensor, numpy array or pandas Series,"
            f" not {type(values).__name__}"
        )
    if array.ndim != 1:
        raise UsageError(
            f"DP statistics take 1-D data (one value per row), not shape {array.shape}"
        )
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise UsageError(f"DP statistics take numbers, not {array.dtype} values")
    if array.size == 0:
        raise UsageError("DP statistics need at least one row; the data is empty")
    floats = array.astype(np.float64)
    if np.isnan(floats).any():
        raise UsageError("the data holds NaN: drop or fill missing values before a DP statistic")
    return [float(v) for v in floats]


def _bounds(bounds: object) -> tuple[float, float]:
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise UsageError(f"bounds must be a pair (lo, hi), not {bounds!r}")
    lo, hi = bounds
    for value in (lo, hi):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise UsageError(f"bounds must be two finite numbers, not {bounds!r}")
    if not lo < hi:
        raise UsageError(f"bounds must be (lo, hi) with lo < hi, not {bounds!r}")
    return float(lo), float(hi)


def _floats() -> tuple[dp.Domain, dp.Metric]:
    return dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()


def _laplace(transformation: dp.Transformation, epsilon: float) -> dp.Measurement:
    """``transformation`` then Laplace noise scaled to its sensitivity at one row over
    ``epsilon`` (the measurement's map says what it really costs, rounding included)."""
    sensitivity = float(transformation.map(1))
    return transformation >> dp.m.then_laplace(scale=sensitivity / epsilon)


def _priced(measurement: dp.Measurement) -> Laplace:
    return Laplace(float(measurement.map(1)))


def _sum_measurement(lo: float, hi: float, epsilon: float) -> dp.Measurement:
    return _laplace(_floats() >> dp.t.then_clamp(bounds=(lo, hi)) >> dp.t.then_sum(), epsilon)


def _count_measurement(epsilon: float) -> dp.Measurement:
    return _laplace(_floats() >> dp.t.then_count(), epsilon)


def _mean_measurement(lo: float, hi: float, epsilon: float) -> dp.Measurement:
    """A noisy sum and a noisy count, each ``epsilon / 2``, composed by OpenDP."""
    space = _floats()
    noisy_sum = _laplace(space >> dp.t.then_clamp(bounds=(lo, hi)) >> dp.t.then_sum(), epsilon / 2)
    noisy_count = _laplace(space >> dp.t.then_count(), epsilon / 2)
    return dp.c.make_composition([noisy_sum, noisy_count])


def _histogram_measurement(bins: int, epsilon: float) -> dp.Measurement:
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance()
    transformation = space >> dp.t.then_count_by_categories(
        categories=list(range(bins)), null_category=False
    )
    return _laplace(transformation, epsilon)


def _bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise UsageError(f"bins must be a whole number from 1 to {MAX_BINS}, not {bins!r}")
    return bins


#: the statistics a scientist may ask for, by name
KINDS = ("mean", "sum", "count", "histogram")


def price_statistic(
    kind: str,
    *,
    bounds: tuple[float, float] | None = None,
    epsilon: float,
    bins: int | None = None,
) -> Laplace:
    """What the statistic ``kind`` with these settings costs, without any data: the very
    measurement ``mean``/``sum``/``count``/``histogram`` run, priced by its privacy map (so a
    charge reserved before the run is the charge the run makes). Raises UsageError for a kind
    off ``KINDS`` or settings a statistic refuses (reversed bounds, bins out of range, epsilon
    <= 0, bounds or bins given where the statistic takes none)."""
    epsilon = check_positive("epsilon", epsilon)
    if kind == "count":
        if bounds is not None or bins is not None:
            raise UsageError("a DP count takes neither bounds nor bins")
        return _priced(_count_measurement(epsilon))
    if kind not in KINDS:
        raise UsageError(f"{kind!r} is not a DP statistic; choose one of {list(KINDS)}")
    if bounds is None:
        raise UsageError(f"a DP {kind} needs bounds=(lo, hi): values are clamped to them")
    lo, hi = _bounds(bounds)
    if kind == "histogram":
        return _priced(_histogram_measurement(_bins(10 if bins is None else bins), epsilon))
    if bins is not None:
        raise UsageError(f"a DP {kind} takes no bins")
    if kind == "sum":
        return _priced(_sum_measurement(lo, hi, epsilon))
    return _priced(_mean_measurement(lo, hi, epsilon))


def sum(values: object, *, bounds: tuple[float, float], epsilon: float) -> tuple[float, Laplace]:
    """The sum of ``values`` clamped to ``bounds``, with Laplace noise for ``epsilon``-DP.

    >>> noisy, price = sum(np.array([1.0, 2.0]), bounds=(0, 10), epsilon=1.0)
    """
    lo, hi = _bounds(bounds)
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    measurement = _sum_measurement(lo, hi, epsilon)
    return float(measurement(data)), _priced(measurement)


def count(values: object, *, epsilon: float) -> tuple[int, Laplace]:
    """The number of rows, with integer Laplace noise for ``epsilon``-DP (may come out below
    zero: clip it where a count must be a count)."""
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    measurement = _count_measurement(epsilon)
    return int(measurement(data)), _priced(measurement)


def mean(values: object, *, bounds: tuple[float, float], epsilon: float) -> tuple[float, Laplace]:
    """The mean of ``values`` clamped to ``bounds``: a noisy sum over a noisy count, each
    ``epsilon / 2``, composed by OpenDP; clipped to ``bounds``."""
    lo, hi = _bounds(bounds)
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    both = _mean_measurement(lo, hi, epsilon)
    total, rows = both(data)
    value = float(total) / builtins.max(int(rows), 1)
    return builtins.min(builtins.max(value, lo), hi), _priced(both)


def histogram(
    values: object, *, bounds: tuple[float, float], bins: int = 10, epsilon: float
) -> tuple[list[int], Laplace]:
    """Counts of ``values`` (clamped to ``bounds``) in ``bins`` equal bins over ``bounds``
    (numpy's rule: each bin half-open but the last, which holds ``hi``), each with integer
    Laplace noise for ``epsilon``-DP in all (one row moves one count)."""
    lo, hi = _bounds(bounds)
    epsilon = check_positive("epsilon", epsilon)
    bins = _bins(bins)
    data = np.clip(np.asarray(_values(values)), lo, hi)
    edges = np.linspace(lo, hi, bins + 1)
    index = np.clip(np.searchsorted(edges, data, side="right") - 1, 0, bins - 1)
    measurement = _histogram_measurement(bins, epsilon)
    counts = measurement([int(i) for i in index])
    return [int(c) for c in counts], _priced(measurement)
