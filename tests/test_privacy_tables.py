"""DP statistics on published pandas tables (issue 19): the owner's table, grouped counts and
means with OpenDP's noise at the epsilon charged, and the settings refused before any charge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from duet.errors import UsageError
from duet.privacy import Laplace, grouped, tables

DRAWS = 300  # releases per spread measurement: fixed, so the test's cost is too
YEARS = [2018, 2019, 2020]
RNG = np.random.default_rng(3)
BIRTHS = pd.DataFrame(
    {"year": RNG.choice(YEARS, 3_000), "weight_g": RNG.normal(3300, 400, 3_000).clip(500, 5500)}
)


def laplace_std(scale: float) -> float:
    return float(np.sqrt(2) * scale)


def test_a_table_keeps_a_read_only_copy_and_lists_columns_dtypes_and_rows_only():
    frame = BIRTHS.copy()
    table = tables.Table(frame)
    frame.loc[0, "weight_g"] = -1.0
    assert table.column("weight_g")[0] == BIRTHS.loc[0, "weight_g"]
    with pytest.raises(ValueError, match="read-only"):
        table.column("weight_g")[0] = 1.0
    assert table.describe() == {
        "kind": "Table",
        "type": "table",
        "shape": [3_000, 2],
        "columns": {"year": "int64", "weight_g": "float64"},
    }
    with pytest.raises(
        UsageError, match=r"no column 'age'; its columns are \['year', 'weight_g'\]"
    ):
        table.column("age")


def test_grouped_counts_are_opendps_count_by_categories_with_noise_of_scale_one_over_epsilon():
    table = tables.Table(BIRTHS)
    truth = np.array([(BIRTHS["year"] == y).sum() for y in YEARS])
    draws, prices = [], set()
    for _ in range(DRAWS):
        counts, price = tables.statistic_on_table(
            table, "count", by="year", keys=YEARS, epsilon=0.5
        )
        draws.append(np.array(counts) - truth)
        prices.add(price)
    # the counts of all groups cost epsilon: one row moves one count (OpenDP's map)
    assert prices == {Laplace(0.5)}
    assert tables.price_on_table(table, "count", by="year", keys=YEARS, epsilon=0.5) == Laplace(0.5)
    spread = np.std(np.concatenate(draws))
    assert 0.8 * laplace_std(2.0) < spread < 1.2 * laplace_std(2.0)
    assert abs(np.mean(np.concatenate(draws))) < 0.5


def test_a_key_the_data_lacks_gets_a_noisy_count_and_a_row_with_no_key_asked_counts_nowhere():
    table = tables.Table(BIRTHS)
    counts, _ = tables.statistic_on_table(
        table, "count", by="year", keys=[2018, 1999], epsilon=100.0
    )
    assert counts[0] == pytest.approx((BIRTHS["year"] == 2018).sum(), abs=1)
    assert abs(counts[1]) <= 1  # 1999 is in no row: nothing but noise


def test_grouped_sums_charge_opendps_sequential_composition_and_noise_each_group_for_its_share():
    table = tables.Table(BIRTHS)
    keys, epsilon, bounds = YEARS[:2], 1.0, (0.0, 6000.0)
    truth = np.array([BIRTHS.weight_g[BIRTHS.year == y].sum() for y in keys])
    draws = []
    for _ in range(DRAWS):
        sums, price = tables.statistic_on_table(
            table, "sum", column="weight_g", by="year", keys=keys, bounds=bounds, epsilon=epsilon
        )
        draws.append(np.array(sums) - truth)
    assert price.epsilon == pytest.approx(epsilon, rel=1e-9) and price.epsilon >= epsilon * (
        1 - 1e-12
    )
    # each group's share: epsilon / 2, so the scale is 6000 / 0.5 (OpenDP's rounding allowance)
    spread = np.std(np.concatenate(draws))
    assert 0.8 * laplace_std(12_000) < spread < 1.2 * laplace_std(12_000)


def test_grouped_means_are_close_for_a_large_epsilon_clipped_to_the_bounds_and_priced_as_run():
    table = tables.Table(BIRTHS)
    settings = {"column": "weight_g", "by": "year", "keys": YEARS, "bounds": (400, 6000)}
    means, price = tables.statistic_on_table(table, "mean", epsilon=300.0, **settings)
    truth = [BIRTHS.weight_g[BIRTHS.year == y].mean() for y in YEARS]
    assert means == pytest.approx(truth, abs=15)
    assert price == tables.price_on_table(table, "mean", epsilon=300.0, **settings)
    assert price.epsilon == pytest.approx(300.0)
    empty, _ = tables.statistic_on_table(
        table, "mean", epsilon=0.01, **{**settings, "keys": [1990]}
    )
    assert 400 <= empty[0] <= 6000  # a group with no rows: noise, clipped to the bounds


def test_an_ungrouped_statistic_on_a_column_is_statistics_py_s():
    table = tables.Table(BIRTHS)
    mean, price = tables.statistic_on_table(
        table, "mean", column="weight_g", bounds=(400, 6000), epsilon=100.0
    )
    assert mean == pytest.approx(BIRTHS.weight_g.mean(), abs=5)
    assert price.epsilon == pytest.approx(100.0)
    rows, _ = tables.statistic_on_table(table, "count", epsilon=100.0)  # a table's rows
    assert rows == pytest.approx(3_000, abs=1)


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"kind": "mean", "bounds": (0, 1)}, r"takes one of its columns: table\['column'\]"),
        ({"kind": "mean", "column": "age", "bounds": (0, 1)}, r"no column 'age'"),
        ({"kind": "count", "by": "month", "keys": [1]}, r"no column 'month'"),
        ({"kind": "count", "keys": [1]}, r"keys= go with by="),
        ({"kind": "count", "by": "year"}, r"needs keys=\[...\]"),
        (
            {"kind": "histogram", "column": "year", "by": "year", "keys": [1], "bounds": (0, 1)},
            r"cannot be grouped",
        ),
        (
            {
                "kind": "histogram",
                "column": "year",
                "by": "year",
                "keys": [1],
                "bins": 3,
                "bounds": (0, 1),
            },
            r"takes no bins",
        ),
        ({"kind": "mean", "column": "year", "by": "year", "keys": [1]}, r"needs bounds"),
        ({"kind": "count", "by": "year", "keys": [1], "bounds": (0, 1)}, r"takes no bounds"),
        ({"kind": "count", "by": "year", "keys": [2018, 2018.0]}, r"repeat a key"),
        ({"kind": "count", "by": "year", "keys": ["2018"]}, r"finite numbers, not '2018'"),
        ({"kind": "count", "by": "year", "keys": [True]}, r"finite numbers"),
        ({"kind": "count", "by": "year", "keys": [float("nan")]}, r"finite numbers"),
        ({"kind": "count", "by": "year", "keys": []}, r"1 to 10,000 group keys"),
        ({"kind": "count", "by": "year", "keys": list(range(10**6))}, r"1 to 10,000 group keys"),
        (
            {
                "kind": "sum",
                "column": "year",
                "by": "year",
                "keys": [1],
                "bounds": (0, float("nan")),
            },
            r"finite numbers",
        ),
    ],  # fmt: skip
)
def test_settings_a_table_statistic_refuses_are_refused_before_it_is_priced(settings, refused):
    table = tables.Table(BIRTHS)
    kind = settings.pop("kind")
    with pytest.raises(UsageError, match=refused):
        tables.price_on_table(table, kind, epsilon=0.5, **settings)


def test_check_keys_takes_numbers_as_floats():
    assert grouped.check_keys([2018, 2019.5]) == [2018.0, 2019.5]


def test_ten_thousand_keys_over_a_large_table_are_priced_and_run_in_one_pass_of_the_rows():
    import time

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"k": rng.integers(0, 20_000, 100_000), "v": rng.uniform(0, 10, 100_000)})
    table, keys = tables.Table(frame), list(range(grouped.MAX_KEYS))
    started = time.perf_counter()
    sums, price = tables.statistic_on_table(
        table, "sum", column="v", by="k", keys=keys, bounds=(0, 10), epsilon=1.0
    )
    assert len(sums) == grouped.MAX_KEYS and price.epsilon == pytest.approx(1.0)
    assert time.perf_counter() - started < 30  # ~2 s here: one OpenDP call a group, no rescans


def test_a_table_inside_a_container_is_not_publishable():
    from duet.owner.publishable import check_publishable

    table = tables.Table(BIRTHS)
    check_publishable(table)  # on its own: published as it is
    with pytest.raises(UsageError, match="a published table inside a container"):
        check_publishable([table])
