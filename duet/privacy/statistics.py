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

__all__ = ["count", "histogram", "mean", "sum"]

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


def sum(values: object, *, bounds: tuple[float, float], epsilon: float) -> tuple[float, Laplace]:
    """The sum of ``values`` clamped to ``bounds``, with Laplace noise for ``epsilon``-DP.

    >>> noisy, price = sum(np.array([1.0, 2.0]), bounds=(0, 10), epsilon=1.0)
    """
    lo, hi = _bounds(bounds)
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    measurement = _laplace(
        _floats() >> dp.t.then_clamp(bounds=(lo, hi)) >> dp.t.then_sum(), epsilon
    )
    return float(measurement(data)), _priced(measurement)


def count(values: object, *, epsilon: float) -> tuple[int, Laplace]:
    """The number of rows, with integer Laplace noise for ``epsilon``-DP (may come out below
    zero: clip it where a count must be a count)."""
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    measurement = _laplace(_floats() >> dp.t.then_count(), epsilon)
    return int(measurement(data)), _priced(measurement)


def mean(values: object, *, bounds: tuple[float, float], epsilon: float) -> tuple[float, Laplace]:
    """The mean of ``values`` clamped to ``bounds``: a noisy sum over a noisy count, each
    ``epsilon / 2``, composed by OpenDP; clipped to ``bounds``."""
    lo, hi = _bounds(bounds)
    epsilon = check_positive("epsilon", epsilon)
    data = _values(values)
    space = _floats()
    noisy_sum = _laplace(space >> dp.t.then_clamp(bounds=(lo, hi)) >> dp.t.then_sum(), epsilon / 2)
    noisy_count = _laplace(space >> dp.t.then_count(), epsilon / 2)
    both = dp.c.make_composition([noisy_sum, noisy_count])
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
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise UsageError(f"bins must be a whole number from 1 to {MAX_BINS}, not {bins!r}")
    data = np.clip(np.asarray(_values(values)), lo, hi)
    edges = np.linspace(lo, hi, bins + 1)
    index = np.clip(np.searchsorted(edges, data, side="right") - 1, 0, bins - 1)
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance()
    categories = list(range(bins))
    transformation = space >> dp.t.then_count_by_categories(
        categories=categories, null_category=False
    )
    measurement = _laplace(transformation, epsilon)
    counts = measurement([int(i) for i in index])
    return [int(c) for c in counts], _priced(measurement)
