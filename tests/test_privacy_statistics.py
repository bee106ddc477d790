"""DP statistics: OpenDP's noise, priced by its own privacy map, clamped to the owner's bounds;
bad inputs refused with clear errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from duet.errors import UsageError
from duet.privacy import Laplace, statistics

REPEATS = 30  # releases per spread measurement: fixed, so the test's cost is too
ROWS = np.random.default_rng(19).uniform(0.0, 10.0, 10_000)


def errors_of_mean(epsilon: float) -> np.ndarray:
    return np.array(
        [statistics.mean(ROWS, bounds=(0, 10), epsilon=epsilon)[0] - ROWS.mean()
         for _ in range(REPEATS)]
    )  # fmt: skip


def test_the_mean_of_ten_thousand_rows_is_close_for_large_epsilon_and_noisier_for_small():
    precise, noisy = errors_of_mean(10.0), errors_of_mean(0.01)
    # epsilon 10: the sum's noise has scale 10 / 5 over 10,000 rows, ~3e-4 on the mean
    assert np.abs(precise).max() < 0.01
    # epsilon 0.01: scale 2,000 on the sum, ~0.3 on the mean; clearly noisier, still bounded
    assert noisy.std() > 20 * precise.std()
    assert 0.05 < noisy.std() < 2.0


def test_each_statistic_is_priced_by_opendps_map_at_the_epsilon_asked():
    for _noisy, price in (
        statistics.mean(ROWS, bounds=(0, 10), epsilon=0.5),
        statistics.sum(ROWS, bounds=(0, 10), epsilon=0.5),
        statistics.count(ROWS, epsilon=0.5),
        statistics.histogram(ROWS, bounds=(0, 10), bins=4, epsilon=0.5),
    ):
        assert isinstance(price, Laplace)
        assert price.epsilon == pytest.approx(0.5, rel=1e-6)
        assert price.epsilon >= 0.5 * (1 - 1e-12)  # rounding is charged, never forgiven


def test_values_outside_the_bounds_are_clamped():
    wild = np.array([-1e6, 1e6] * 500)  # half far below, half far above (0, 1)
    mean, _ = statistics.mean(wild, bounds=(0, 1), epsilon=1000.0)
    assert mean == pytest.approx(0.5, abs=0.01)
    total, _ = statistics.sum(wild, bounds=(0, 1), epsilon=1000.0)
    assert total == pytest.approx(500, abs=5)
    counts, _ = statistics.histogram(wild, bounds=(0, 1), bins=2, epsilon=1000.0)
    assert counts[0] == pytest.approx(500, abs=5) and counts[1] == pytest.approx(500, abs=5)


def test_tensors_arrays_and_series_are_taken_and_give_the_same_kind_of_answer():
    as_series = pd.Series(ROWS, name="age")
    for data in (torch.tensor(ROWS), ROWS, as_series, torch.tensor(ROWS, dtype=torch.float32)):
        mean, _ = statistics.mean(data, bounds=(0, 10), epsilon=100.0)
        assert mean == pytest.approx(ROWS.mean(), abs=0.01)
    rows, _ = statistics.count(as_series, epsilon=100.0)
    assert isinstance(rows, int) and abs(rows - 10_000) < 50
    counts, _ = statistics.histogram(
        torch.tensor([0.0, 2.5, 5.0, 7.5, 10.0]), bounds=(0, 10), bins=4, epsilon=1000.0
    )
    assert counts == [1, 1, 1, 2]  # the last bin holds hi, as numpy's histogram does


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: statistics.mean(np.array([1.0, math.nan]), bounds=(0, 1), epsilon=1.0), "NaN"),
        (lambda: statistics.mean(ROWS, bounds=(10, 0), epsilon=1.0), "lo < hi"),
        (lambda: statistics.mean(ROWS, bounds=(1, 1), epsilon=1.0), "lo < hi"),
        (lambda: statistics.mean(ROWS, bounds=(0, math.inf), epsilon=1.0), "finite"),
        (lambda: statistics.mean(ROWS, bounds=(0,), epsilon=1.0), "pair"),
        (lambda: statistics.mean(ROWS, bounds=(0, 10), epsilon=0.0), "epsilon must be"),
        (lambda: statistics.mean(ROWS, bounds=(0, 10), epsilon=-1.0), "epsilon must be"),
        (lambda: statistics.sum(ROWS, bounds=(0, 10), epsilon=math.nan), "epsilon must be"),
        (lambda: statistics.sum(ROWS, bounds=(0, 10), epsilon="1"), "epsilon must be"),
        (lambda: statistics.count(np.array([]), epsilon=1.0), "empty"),
        (lambda: statistics.count(torch.zeros(2, 2), epsilon=1.0), "1-D"),
        (lambda: statistics.count(pd.Series(["a", "b"]), epsilon=1.0), "numbers"),
        (lambda: statistics.count([1.0, 2.0], epsilon=1.0), "not list"),
        (lambda: statistics.histogram(ROWS, bounds=(0, 10), bins=0, epsilon=1.0), "bins"),
    ],
)
def test_bad_inputs_are_refused_with_clear_errors(call, message):
    with pytest.raises(UsageError, match=message):
        call()
