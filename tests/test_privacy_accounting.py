"""Accounting: Opacus's numbers for one DP-SGD run, dp-accounting's composition for many,
mechanisms as JSON the ledger can trust."""

from __future__ import annotations

import itertools
import math

import pytest

import duet.privacy
from duet.errors import UsageError
from duet.privacy import (
    DpSgd,
    Gaussian,
    Laplace,
    mechanism_from_json,
    noise_for,
    rdp_epsilon,
    spent,
)

DELTA = 1e-5


def test_rdp_epsilon_matches_opacus_own_reference_value():
    epsilon = rdp_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)
    assert epsilon == pytest.approx(7.32911117143, rel=1e-9)


def test_noise_for_reaches_at_most_the_epsilon_asked_and_matches_opacus():
    assert noise_for(epsilon=8, delta=DELTA, sample_rate=0.04, steps=2250) == pytest.approx(
        1.416, abs=0.01
    )
    sigma = noise_for(epsilon=1.0, delta=DELTA, sample_rate=0.05, steps=100)
    reached = rdp_epsilon(noise_multiplier=sigma, sample_rate=0.05, steps=100, delta=DELTA)
    assert 0.99 - 0.01 <= reached <= 1.0


def test_two_jobs_compose_below_the_sum_of_their_epsilons():
    a = DpSgd(noise_multiplier=1.1, sample_rate=0.05, steps=200)
    b = DpSgd(noise_multiplier=2.0, sample_rate=0.01, steps=500)
    alone_a, alone_b = spent([a], DELTA), spent([b], DELTA)
    together = spent([a, b], DELTA)
    assert max(alone_a, alone_b) < together < alone_a + alone_b
    # one job alone is the number Opacus reports, within dp-accounting's numerics
    assert alone_a == pytest.approx(rdp_epsilon(**vars(a), delta=DELTA), rel=1e-3)


MECHANISMS = [
    DpSgd(1.1, 0.05, 200),
    DpSgd(0.8, 0.2, 10),
    Laplace(0.5),
    Laplace(0.05),
    Gaussian(0.02),
    Gaussian(0.5),
]


ALONE = {m: spent([m], DELTA) for m in MECHANISMS}
# every pair (with repeats), and triples of four kinds: each spend costs dp-accounting ~0.1 s
GROUPS = [
    *itertools.combinations_with_replacement(MECHANISMS, 2),
    *itertools.combinations(MECHANISMS[1:5], 3),
]


def test_composition_never_reports_less_than_its_largest_part_nor_more_than_their_sum():
    for parts in GROUPS:
        total = spent(parts, DELTA)
        alone = [ALONE[p] for p in parts]
        assert max(alone) <= total <= math.fsum(alone) + 1e-9, parts
        # adding a part never lowers the spend
        assert spent(parts[:-1], DELTA) <= total


def test_a_lone_pure_release_costs_its_epsilon_and_many_compose_below_their_sum():
    assert spent([Laplace(0.5)], DELTA) == 0.5
    many = spent([Laplace(0.05)] * 100, DELTA)
    assert many < 5.0
    assert spent([], DELTA) == 0.0


def test_the_spend_is_counted_at_the_delta_asked():
    job = DpSgd(1.1, 0.05, 200)
    assert spent([job], 1e-3) < spent([job], 1e-5) < spent([job], 1e-7)


def test_grouping_identical_jobs_is_the_same_as_one_job_of_their_steps():
    job = DpSgd(1.1, 0.05, 200)
    assert spent([job] * 5, DELTA) == pytest.approx(spent([DpSgd(1.1, 0.05, 1000)], DELTA))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_mechanisms_round_trip_through_json(mechanism):
    text = mechanism.to_json()
    assert mechanism_from_json(text) == mechanism
    assert type(mechanism).from_json(text) == mechanism


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"kind": "laplace", "epsilon": 0.5, "extra": 1}',
        '{"kind": "laplace", "epsilon": NaN}',
        '{"kind": "laplace", "epsilon": Infinity}',
        '{"kind": "laplace", "epsilon": true}',
        '{"kind": "dp_sgd", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 1.5}',
        '{"kind": "dp_sgd", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0}',
        '{"kind": "gaussian", "rho": -0.1}',
        '{"kind": "exec", "code": "import os"}',
    ],
)
def test_mechanism_json_that_is_not_exactly_a_mechanism_is_refused(text):
    with pytest.raises(UsageError):
        mechanism_from_json(text)


def test_from_json_of_one_kind_refuses_another():
    with pytest.raises(UsageError, match="not a DpSgd mechanism"):
        DpSgd.from_json(Laplace(0.5).to_json())


@pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, math.nan, math.inf, "1e-5"])
def test_bad_deltas_are_refused(delta):
    with pytest.raises(UsageError, match="delta must be"):
        spent([Laplace(0.5)], delta)
    with pytest.raises(UsageError, match="delta must be"):
        rdp_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=10, delta=delta)


@pytest.mark.parametrize(
    "settings",
    [
        {"noise_multiplier": 0.0, "sample_rate": 0.1, "steps": 10},
        {"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 10},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 0},
        {"noise_multiplier": math.nan, "sample_rate": 0.1, "steps": 10},
    ],
)
def test_jobs_with_impossible_settings_are_refused(settings):
    with pytest.raises(UsageError):
        DpSgd(**settings)


def test_spent_refuses_what_is_not_a_mechanism():
    with pytest.raises(UsageError, match="not a mechanism"):
        spent([0.5], DELTA)  # type: ignore[list-item]


def test_the_public_api_is_what_all_names():
    for name in duet.privacy.__all__:
        assert hasattr(duet.privacy, name), name
    assert {"Ledger", "BudgetExceeded", "train_dp", "price_training", "mean", "Table"} <= set(
        duet.privacy.__all__
    )


def test_composition_with_each_steps_curve_computed_once_is_the_accountants_own_number():
    # the ledger prices every reserve by composing all a scientist ran: each DP-SGD step's RDP
    # curve is computed once a process, and the sums are the accountant's, to the last bit
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    from duet.privacy import accounting

    parts = [
        accounting.DpSgd(1.1, 1 / 29, 29),
        accounting.Laplace(0.3),
        accounting.DpSgd(0.8, 0.01, 500),
        accounting.DpSgd(1.1, 1 / 29, 58),
        accounting.Gaussian(0.05),
    ]
    for delta in (1e-5, 1e-7):
        fresh = RdpAccountant()
        fresh.compose(dp_accounting.ComposedDpEvent(accounting._grouped(parts)))
        assert accounting._rdp_accountant_epsilon(parts, delta) == fresh.get_epsilon(delta)
    before = accounting._step_curve.cache_info().misses
    accounting.spent(parts * 50, 1e-5)  # 250 entries, the same three step curves
    assert accounting._step_curve.cache_info().misses == before
