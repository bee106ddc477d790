"""DP statistics by group: counts, sums and means of a table's rows for each group key a
scientist names, with OpenDP's measurements and OpenDP's privacy maps (nothing here samples
noise or adds up epsilons by hand).

The groups are the rows whose key column equals each key the scientist gave; a row whose key
is none of them counts nowhere. Which keys the owner's data holds is itself the owner's data,
so the keys are never taken from the data: the reply has one number for every key given,
present or not.

Neighbouring relation: one row added or removed (statistics.py's), so the charges compose with
every other release on the dataset.

* ``count``: OpenDP's ``count_by_categories`` over the rows' group positions, then Laplace
  noise on every count. Its privacy map is OpenDP's: one row moves one count by one, so the
  counts of all groups together cost ``epsilon`` (parallel composition, by OpenDP's own
  stability map over disjoint groups).
* ``sum`` and ``mean``: OpenDP's vector API has no grouped sum, so each group is its own
  measurement (statistics.py's sum, or its mean: a noisy sum and a noisy count) at ``epsilon /
  K`` for K keys, run on that group's rows (selecting them is a per-row filter: a row added to
  the table adds at most one row to one group). The charge is OpenDP's *sequential*
  composition of the K measurements (``make_composition``): ``epsilon`` in all. Under the
  add/remove relation parallel composition would allow each group the whole ``epsilon``; we
  do not claim it by hand and charge the sequential bound instead, so the noise of each group
  is K times what it could be (fail closed: the charge is never below what OpenDP proves).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence

import numpy as np
import opendp.prelude as dp
import pandas as pd

from ..errors import UsageError
from .accounting import Laplace, check_positive
from .statistics import (
    _bounds,
    _histogram_measurement,
    _mean_measurement,
    _priced,
    _sum_measurement,
)

__all__ = ["GROUPED_KINDS", "MAX_KEYS", "check_keys", "grouped", "price_grouped"]

MAX_KEYS = 10_000
#: the statistics that can be asked for by group
GROUPED_KINDS = ("count", "sum", "mean")


def check_keys(keys: object) -> list[float]:
    """The scientist's group keys as floats: 1 to MAX_KEYS finite numbers, no two equal."""
    if not isinstance(keys, list | tuple) or not 1 <= len(keys) <= MAX_KEYS:
        raise UsageError(
            f"keys must be a list of 1 to {MAX_KEYS:,} group keys (numbers), the groups you ask "
            "about: which groups the owner's data holds is not shown"
        )
    out = []
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, int | float) or not math.isfinite(key):
            raise UsageError(f"group keys are finite numbers, not {str(key)[:100]!r}")
        out.append(float(key))
    if len(set(out)) != len(out):
        raise UsageError("the group keys repeat a key; give each key once")
    return out


def _measurements(
    kind: str, groups: int, bounds: tuple[float, float] | None, epsilon: float
) -> list[dp.Measurement]:
    """The measurement for each group (sum, mean), or the one for all of them (count)."""
    if kind == "count":
        if bounds is not None:
            raise UsageError("a DP count takes no bounds")
        return [_histogram_measurement(groups, epsilon)]
    if kind not in GROUPED_KINDS:
        raise UsageError(f"a DP {kind} cannot be grouped; grouped: {list(GROUPED_KINDS)}")
    if bounds is None:
        raise UsageError(f"a DP {kind} needs bounds=(lo, hi): values are clamped to them")
    lo, hi = _bounds(bounds)
    share = epsilon / groups
    build = _sum_measurement if kind == "sum" else _mean_measurement
    return [build(lo, hi, share)] * groups  # one measurement, run once a group


def _composed(parts: list[dp.Measurement]) -> Laplace:
    if len(parts) == 1:
        return _priced(parts[0])
    return _priced(dp.c.make_composition(parts))  # OpenDP's sequential composition


def price_grouped(
    kind: str, *, keys: object, bounds: tuple[float, float] | None = None, epsilon: float
) -> Laplace:
    """What the grouped statistic ``kind`` over ``keys`` costs, without any data: the
    measurements ``grouped`` runs, priced by OpenDP's maps (their composition's for sums and
    means). Raises UsageError for settings it refuses."""
    epsilon = check_positive("epsilon", epsilon)
    groups = len(check_keys(keys))
    return _composed(_measurements(kind, groups, bounds, epsilon))


def grouped(
    kind: str,
    values: np.ndarray | None,
    by: np.ndarray,
    *,
    keys: Sequence[float],
    bounds: tuple[float, float] | None = None,
    epsilon: float,
) -> tuple[list[float] | list[int], Laplace]:
    """The statistic ``kind`` of ``values`` (a count takes none) for the rows whose ``by``
    equals each of ``keys``, in the order of ``keys``, and its price. A mean is clipped to
    ``bounds`` (post-processing); a group with no rows still gets its noisy number."""
    epsilon = check_positive("epsilon", epsilon)
    wanted = check_keys(list(keys))
    parts = _measurements(kind, len(wanted), bounds, epsilon)
    # each row's group: its key's position in ``keys``, or -1 (no group: counted nowhere)
    position = pd.Index(wanted).get_indexer(np.asarray(by, dtype=np.float64))
    if kind == "count":
        counts = parts[0]([int(p) for p in position])
        return [int(c) for c in counts], _composed(parts)
    assert values is not None and bounds is not None  # _measurements refused them missing
    floats = np.asarray(values, dtype=np.float64)
    out: list[float] = []
    lo, hi = _bounds(bounds)
    # the rows of each group, found in one pass (not one scan of the table a key)
    order = np.argsort(position, kind="stable")
    edges = np.searchsorted(position[order], np.arange(len(parts) + 1), side="left")
    for group, measurement in enumerate(parts):
        rows = floats[order[edges[group] : edges[group + 1]]].tolist()
        if kind == "sum":
            out.append(float(measurement(rows)))
            continue
        total, count = measurement(rows)
        mean = float(total) / builtins.max(int(count), 1)
        out.append(builtins.min(builtins.max(mean, lo), hi))
    return out, _composed(parts)
