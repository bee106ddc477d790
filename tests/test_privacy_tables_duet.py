"""DP statistics on a published pandas table over a real (in-memory) duet: the owner publishes
a DataFrame, the scientist asks for counts and means, whole or by the groups it names, charged
to the table's one tag; every other use of the table is refused on both sides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import duet as sy
from duet.protocol.dp_messages import DpStatistic

from .test_privacy_duet import send_raw

SECS = 60
YEARS = [2018, 2019, 2020]
RNG = np.random.default_rng(3)
BIRTHS = pd.DataFrame(
    {"year": RNG.choice(YEARS, 2_000), "weight_g": RNG.normal(3300, 400, 2_000).clip(500, 5500)}
)
ONLY_DP = "only DP statistics read it"


@pytest.fixture
def births_node(tmp_path):
    """An owner publishing ``births`` (a table, one tag), budget 10 for anyone, and alice."""
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "ledger.sqlite3")
    owner.publish(BIRTHS, tags=["births"], description="births by year")
    owner.privacy.set_budget("*", "births", epsilon=10.0, delta=1e-5)
    _, alice = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("alice"))
    yield owner, alice
    alice.close()
    owner.close()


def spent(alice) -> float:
    return float(alice.privacy.budget("births", timeout_secs=SECS)["spent"])


def test_counts_and_means_of_a_table_whole_and_by_year_are_released_under_its_tags_budget(
    births_node,
):
    owner, alice = births_node
    births = alice.store["births"]
    assert births.columns == {"year": "int64", "weight_g": "float64"}
    assert births.shape == (2_000, 2)

    mean = alice.privacy.mean(births["weight_g"], bounds=(400, 6000), epsilon=2.0)
    assert mean == pytest.approx(BIRTHS.weight_g.mean(), abs=60)
    assert alice.privacy.count(births, epsilon=1.0) == pytest.approx(2_000, abs=30)
    counts = alice.privacy.count(births, by="year", keys=YEARS, epsilon=1.0)
    assert list(counts) == YEARS
    truth = BIRTHS.year.value_counts()
    assert all(abs(counts[y] - truth[y]) < 30 for y in YEARS)
    quoted = alice.privacy.quote(
        "mean", births["weight_g"], by="year", keys=YEARS, bounds=(400, 6000), epsilon=3.0
    )
    before = spent(alice)
    means = alice.privacy.mean(
        births["weight_g"], by="year", keys=YEARS, bounds=(400, 6000), epsilon=3.0
    )
    assert spent(alice) - before == pytest.approx(quoted["charge"])
    assert quoted["epsilon"] == pytest.approx(3.0)
    assert all(400 <= means[y] <= 6000 for y in YEARS)
    assert spent(alice) == pytest.approx(7.0)
    assert len(owner.requests) == 0  # the budget decided: nothing waited for the owner
    charges = owner.audit.events("privacy")
    assert [e["dataset"] for e in charges] == ["births"] * 4
    with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 4, 3 left"):
        alice.privacy.count(births, by="year", keys=YEARS, epsilon=4.0)


def test_group_keys_may_be_a_range_or_numpy_numbers_and_come_back_as_given(births_node):
    _, alice = births_node
    births = alice.store["births"]
    counts = alice.privacy.count(births, by="year", keys=range(2018, 2021), epsilon=0.5)
    assert list(counts) == [2018, 2019, 2020]
    keys = list(np.array(YEARS, dtype=np.int64))
    means = alice.privacy.mean(
        births["weight_g"], by="year", keys=keys, bounds=(400, 6000), epsilon=0.5
    )
    assert list(means) == keys and all(400 <= m <= 6000 for m in means.values())


@pytest.mark.parametrize(
    "use",
    [
        lambda t: t + 1,
        lambda t: 2 * t,
        lambda t: t["weight_g"] * 1000,
        lambda t: t.get(),
        lambda t: t.get(request_block=True, name="rows", reason="r"),
        lambda t: t.request(name="rows", reason="r"),
        lambda t: t[0],
        lambda t: t[0:5],
        lambda t: t.values,
        lambda t: t.iloc,
        lambda t: t["weight_g"].values,
        lambda t: t["weight_g"].mean(),
        lambda t: t["weight_g"][3],
        lambda t: torch.add(t, 1),
        lambda t: torch.sum(t["weight_g"]),
        lambda t: len(t),
        lambda t: list(t),
        lambda t: bool(t["year"]),
        lambda t: np.asarray(t),
        lambda t: t.send(None),
    ],
)
def test_every_use_of_a_table_but_a_dp_statistic_is_refused_naming_duet_privacy(births_node, use):
    owner, alice = births_node
    births = alice.store["births"]
    with pytest.raises(sy.UsageError, match=rf"{ONLY_DP} \(duet.privacy.mean"):
        use(births)
    assert owner.privacy.history() == [] and len(owner.requests) == 0


def test_a_hand_made_pointer_to_a_table_reaches_nothing_on_the_owners_side(births_node):
    owner, alice = births_node
    table_id = alice.store["births"].id
    pointer = alice.client.pointer(table_id, "Tensor", {}, owned=False)  # lies about the kind
    with pytest.raises(sy.UsageError, match=f"{table_id} is a published table: {ONLY_DP}"):
        pointer.get(request_block=True, name="rows", reason="r", timeout_secs=SECS)
    with pytest.raises(sy.UsageError, match=ONLY_DP):
        (pointer + 1).get(timeout_secs=SECS)
    with pytest.raises(sy.UsageError, match=ONLY_DP):
        pointer.sum().get(timeout_secs=SECS)
    with pytest.raises(sy.UsageError, match=ONLY_DP):
        sy.lib.python.List([]).send(alice).append(pointer).get(timeout_secs=SECS)
    handle = pointer.request(name="rows", reason="r")
    alice.sync(timeout_secs=SECS)
    assert handle.status != "accepted"
    assert len(owner.requests) == 0 and owner.privacy.history() == []


def test_a_table_statistic_with_settings_the_owner_refuses_charges_nothing(births_node):
    owner, alice = births_node
    births = alice.store["births"]
    with pytest.raises(sy.UsageError, match=r"has no column 'age'; its columns are \['year'"):
        alice.privacy.mean(births["age"], bounds=(0, 1), epsilon=0.1)
    for call, match in [
        (lambda: alice.privacy.count(births, by="year", keys=list(range(10**6)), epsilon=0.1),
         "at most 10000 items"),
        (lambda: alice.privacy.count(births, by="year", keys=["2018"], epsilon=0.1),
         "valid number"),
        (lambda: alice.privacy.count(births, by="year", keys=[True], epsilon=0.1), "valid number"),
        (lambda: alice.privacy.mean(births["weight_g"], bounds=(0, float("nan")), epsilon=0.1),
         "finite"),
        (lambda: alice.privacy.count(births, by="ye\x00ar", keys=[1], epsilon=0.1),
         "should match pattern"),
        (lambda: alice.privacy.count(births, by="year", epsilon=0.1), r"needs keys=\[...\]"),
        (lambda: alice.privacy.count(births, by="month", keys=[1], epsilon=0.1),
         r"no column 'month'"),
        (lambda: alice.privacy.mean(births, bounds=(0, 1), epsilon=0.1),
         r"takes one of its columns"),
        (lambda: alice.privacy.histogram(births["year"], bounds=(2017, 2023), bins=6,
                                         epsilon=0.1), None),  # a histogram of a column runs
    ]:  # fmt: skip
        if match is None:
            call()
            continue
        with pytest.raises(sy.UsageError, match=match):
            call()
    assert len(owner.privacy.history()) == 1  # only the histogram was charged


def test_columns_and_groups_name_a_table_never_a_tensor(tmp_path):
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "ledger.sqlite3")
    owner.publish(torch.arange(10.0), tags=["ages"])
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    _, alice = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("alice"))
    try:
        ages = alice.store["ages"]
        with pytest.raises(sy.UsageError, match="groups the rows of a published table"):
            alice.privacy.count(ages, by="year", keys=[1], epsilon=0.1)
        reply, _ = alice.client.request(
            lambda rid: DpStatistic(
                rid=rid, kind="count", target=ages.id, epsilon=0.1, by="x", keys=[1.0]
            ),
            timeout_secs=SECS,
            what="a DP statistic",
        )
        assert reply.status == "error" and "is a Tensor, not a table" in reply.error.message
        assert owner.privacy.history() == []
    finally:
        alice.close()
        owner.close()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"keys": [float("nan")]}, "keys"),
        ({"keys": list(range(10_001))}, "keys"),
        ({"keys": ["2018"]}, "keys"),
        ({"by": "year\n"}, "by"),
        ({"column": "x" * 101}, "column"),
        ({"column": 3}, "column"),
    ],
)
def test_a_hostile_table_statistic_is_refused_by_the_protocol(births_node, fields, field):
    owner, alice = births_node
    births = alice.store["births"]
    send_raw(alice, [{"k": "dp_stat", "rid": 10**9, "kind": "count", "target": births.id,
                      "epsilon": 0.1, "by": "year", "keys": [2018], **fields}])  # fmt: skip
    alice.sync(timeout_secs=SECS)
    refusal = alice.client.notices[-1]
    assert refusal.code == "protocol_error" and field in refusal.message
    assert owner.privacy.history() == []
    assert isinstance(alice.privacy.count(births, epsilon=0.1), int)  # it keeps serving


def test_two_tables_differing_in_one_row_differ_only_in_the_noisy_values(tmp_path):
    """Two worlds: every field of the replies but the noisy value is the same (the charge,
    what remains, delta: functions of the settings and the ledger), and the values carry
    noise (the same release twice in one world differs)."""
    one_less = BIRTHS.iloc[1:]
    replies, values = [], []
    for world, frame in enumerate([BIRTHS, one_less]):
        owner = sy.OwnerSession(privacy_ledger=tmp_path / f"world{world}.sqlite3")
        owner.publish(frame, tags=["births"])
        owner.privacy.set_budget("*", "births", epsilon=5.0, delta=1e-5)
        _, alice = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("alice"))
        try:
            target = alice.store["births"].id
            seen, released = [], []
            for settings in [
                {"kind": "count", "by": "year", "keys": [2018.0, 2019.0, 1990.0]},
                {"kind": "mean", "column": "weight_g", "bounds": [400, 6000], "by": "year",
                 "keys": [2018.0, 2019.0]},
                {"kind": "count", "by": "year", "keys": [2018.0, 2019.0, 1990.0]},
            ]:  # fmt: skip
                reply, buffers = alice.client.request(
                    lambda rid, settings=settings, target=target: DpStatistic(
                        rid=rid, target=target, epsilon=0.5, **settings
                    ),
                    timeout_secs=SECS,
                    what="a DP statistic",
                )
                value = alice.client.decode(reply.value, buffers)
                assert reply.status == "ok" and isinstance(value, dict)
                released.append(value.pop("value"))
                seen.append((reply.status, reply.error, reply.note, value))
            replies.append(seen)
            values.append(released)
        finally:
            alice.close()
            owner.close()
    assert replies[0] == replies[1]
    for released in values:
        assert len(released[0]) == 3 and len(released[1]) == 2
    # the same grouped count twice: noise in at least one of 6 noisy counts (scale 2 each)
    assert any(values[w][0] != values[w][2] for w in (0, 1))
