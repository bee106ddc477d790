"""The owner's privacy ledger: budgets hold, refusals carry numbers, concurrent processes cannot
both pass, a kill -9 loses nothing, and what the ledger cannot read refuses."""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import runpy
import signal
import sqlite3
from pathlib import Path

import pytest

from duet.errors import DuetTimeout, QuotaExceeded, UsageError
from duet.privacy import (
    BudgetExceeded,
    DpSgd,
    Laplace,
    Ledger,
    LedgerCorrupt,
    noise_for,
    spent,
)
from duet.privacy import ledger as ledger_module

ALICE = "alice-3fa2"
BOB = "bob-77c1"
DELTA = 1e-5
WAIT_SECS = 60.0  # every wait on a child is bounded by this
# fork: the children share the test's imports (torch included) instead of paying them again
FORK = multiprocessing.get_context("fork")


def job(epsilon: float = 0.6, *, sample_rate: float = 0.05, steps: int = 20) -> DpSgd:
    """A DP-SGD job Opacus prices just below ``epsilon`` at DELTA."""
    return DpSgd(noise_for(epsilon=epsilon, delta=DELTA, sample_rate=sample_rate, steps=steps),
                 sample_rate, steps)  # fmt: skip


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "privacy.sqlite") as opened:
        yield opened


def test_budget_of_one_a_job_fits_a_second_release_is_refused_with_numbers_a_smaller_fits(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    first = ledger.reserve(ALICE, "digits", job(0.6))
    assert 0.55 < first.epsilon <= 0.6
    ledger.commit(first)

    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(ALICE, "digits", Laplace(0.6))
    left = 1.0 - first.epsilon
    assert str(refused.value).startswith(f"needs epsilon 0.6, {left:.2g} left at delta 1e-05")
    assert isinstance(refused.value, QuotaExceeded)

    smaller = ledger.reserve(ALICE, "digits", Laplace(0.3))
    ledger.commit(smaller)
    assert ledger.remaining(ALICE, "digits") == pytest.approx(1.0 - first.epsilon - 0.3)
    assert [h["state"] for h in ledger.history(ALICE)] == ["committed", "committed"]


def test_jobs_compose_below_their_sum_until_the_budget_refuses_one(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    one = job(0.6)
    first = ledger.reserve(ALICE, "digits", one)
    second = ledger.reserve(ALICE, "digits", one)
    # RDP composition: the second costs less than the first did alone, so two fit in 1.0
    assert second.epsilon < first.epsilon
    assert second.remaining == pytest.approx(1.0 - spent([one, one], DELTA))
    fitted = 2
    with pytest.raises(BudgetExceeded, match=r"needs epsilon 0\.\d+, 0\.\d+ left at delta 1e-05"):
        for _ in range(10):
            ledger.reserve(ALICE, "digits", one)
            fitted += 1
    assert spent([one] * fitted, DELTA) <= 1.0 < spent([one] * (fitted + 1), DELTA)


def test_another_scientists_budget_is_untouched(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    ledger.set_budget(BOB, "digits", epsilon=1.0, delta=DELTA)
    ledger.commit(ledger.reserve(ALICE, "digits", Laplace(0.9)))
    assert ledger.remaining(BOB, "digits") == 1.0
    ledger.commit(ledger.reserve(BOB, "digits", Laplace(0.9)))
    assert ledger.remaining(ALICE, "digits") == pytest.approx(0.1)


def test_default_budget_applies_to_each_other_scientist_and_an_explicit_one_wins(ledger):
    ledger.set_budget("*", "births", epsilon=0.5, delta=DELTA)
    ledger.set_budget(ALICE, "births", epsilon=2.0, delta=DELTA)
    assert ledger.remaining(BOB, "births") == 0.5
    assert ledger.remaining("carol", "births") == 0.5
    assert ledger.remaining(ALICE, "births") == 2.0
    ledger.commit(ledger.reserve(BOB, "births", Laplace(0.4)))
    # the default is per scientist: Bob's spend is not Carol's
    assert ledger.remaining("carol", "births") == 0.5
    with pytest.raises(BudgetExceeded):
        ledger.reserve(BOB, "births", Laplace(0.2))
    ledger.commit(ledger.reserve(ALICE, "births", Laplace(1.5)))
    rows = {(r["scientist"], r["dataset"]): r for r in ledger.rows()}
    assert rows[(BOB, "births")]["budget_of"] == "*"
    assert rows[(BOB, "births")]["spent"] == pytest.approx(0.4)
    assert rows[(ALICE, "births")]["remaining"] == pytest.approx(0.5)
    assert rows[("*", "births")]["spent"] is None


def test_no_budget_refuses_saying_the_owner_set_none(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    with pytest.raises(BudgetExceeded, match="the owner set no privacy budget on 'births'"):
        ledger.reserve(ALICE, "births", Laplace(0.1))
    assert ledger.remaining(ALICE, "births") == 0.0
    assert ledger.history() == []


@pytest.mark.parametrize("bad", [math.nan, -1.0, 0.0, math.inf, "1.0", True, None])
def test_budget_values_that_are_not_positive_finite_numbers_are_refused(ledger, bad):
    with pytest.raises(UsageError, match="epsilon must be"):
        ledger.set_budget(ALICE, "digits", epsilon=bad, delta=DELTA)
    with pytest.raises(UsageError, match="delta must be"):
        ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=bad)
    with pytest.raises(UsageError, match="epsilon must be"):
        Laplace(bad)
    assert ledger.rows() == []


def test_delta_of_one_or_more_and_a_scientist_named_star_are_refused(ledger):
    with pytest.raises(UsageError, match="delta must be below 1"):
        ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=1.0)
    ledger.set_budget("*", "digits", epsilon=1.0, delta=DELTA)
    with pytest.raises(UsageError, match='"\\*" names the default'):
        ledger.reserve("*", "digits", Laplace(0.1))


def test_abort_drops_the_charge_and_a_settled_reservation_cannot_change(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    held = ledger.reserve(ALICE, "digits", Laplace(0.7))
    assert ledger.remaining(ALICE, "digits") == pytest.approx(0.3)
    ledger.abort(held)
    assert ledger.remaining(ALICE, "digits") == 1.0
    with pytest.raises(UsageError, match="already aborted"):
        ledger.commit(held)


def test_the_tables_are_append_only(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    ledger.commit(ledger.reserve(ALICE, "digits", Laplace(0.5)))
    db = sqlite3.connect(ledger.path)
    for statement in (
        "DELETE FROM entries",
        "UPDATE outcomes SET state = 'aborted'",
        "UPDATE budgets SET epsilon = 100",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)
    db.close()
    assert ledger.remaining(ALICE, "digits") == pytest.approx(0.5)


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        '{"kind": "laplace", "epsilon": "0.5"}',
        '{"kind": "laplace", "epsilon": -1}',
        '{"kind": "laplace"}',
        '{"kind": "free"}',
        '{"kind": "dp_sgd", "noise_multiplier": 1.0, "sample_rate": 2.0, "steps": 10}',
    ],
)
def test_an_unreadable_mechanism_in_the_db_refuses_instead_of_counting_zero(ledger, stored):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    db = sqlite3.connect(ledger.path)
    with db:
        db.execute(
            "INSERT INTO entries (scientist, dataset, mechanism, at) VALUES (?, 'digits', ?, '')",
            (ALICE, stored),
        )
    db.close()
    with pytest.raises(LedgerCorrupt, match=r"ledger entry 1 .* cannot be read"):
        ledger.reserve(ALICE, "digits", Laplace(0.01))
    with pytest.raises(LedgerCorrupt):
        ledger.remaining(ALICE, "digits")
    # another scientist's charges are still priced, and the owner's view shows the problem
    ledger.set_budget(BOB, "digits", epsilon=1.0, delta=DELTA)
    ledger.reserve(BOB, "digits", Laplace(0.01))
    problems = {r["scientist"]: r["problem"] for r in ledger.rows()}
    assert "cannot be read" in problems[ALICE] and problems[BOB] is None


def test_a_ledger_locked_by_another_writer_times_out_with_nothing_written(tmp_path):
    path = tmp_path / "privacy.sqlite"
    with Ledger(path, lock_timeout_secs=0.05) as ledger:
        ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DuetTimeout, match="stayed locked by another writer"):
                ledger.reserve(ALICE, "digits", Laplace(0.1))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert ledger.history() == []
        ledger.reserve(ALICE, "digits", Laplace(0.1))


def test_what_is_not_a_mechanism_is_refused(ledger):
    ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    with pytest.raises(UsageError, match="not a mechanism"):
        ledger.reserve(ALICE, "digits", 0.5)


def test_a_corrupt_budget_row_refuses(ledger):
    db = sqlite3.connect(ledger.path)
    with db:
        db.execute(
            "INSERT INTO budgets (scientist, dataset, epsilon, delta, set_at)"
            " VALUES (?, 'digits', 'lots', 1e-5, '')",
            (ALICE,),
        )
    db.close()
    with pytest.raises(LedgerCorrupt, match="budget row 1"):
        ledger.reserve(ALICE, "digits", Laplace(0.01))


# -- two real processes on one ledger file


def _reserve_in_child(path: str, barrier, results, mechanism_json: str) -> None:
    mechanism = ledger_module.mechanism_from_json(mechanism_json)
    with Ledger(path) as ledger:
        barrier.wait(timeout=WAIT_SECS)
        try:
            ledger.commit(ledger.reserve(ALICE, "digits", mechanism))
            results.put("reserved")
        except BudgetExceeded as exc:
            results.put(f"refused: {exc}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("budget", "mechanism"),
    [(1.0, Laplace(0.6)), (0.75, job(0.6))],
    ids=["two-0.6-releases-budget-1", "two-0.6-jobs-budget-0.75"],
)
def test_two_processes_reserving_together_never_both_pass(tmp_path, budget, mechanism):
    assert spent([mechanism, mechanism], DELTA) > budget >= spent([mechanism], DELTA)
    for round_ in range(3):
        path = str(tmp_path / f"round{round_}.sqlite")
        with Ledger(path) as ledger:
            ledger.set_budget(ALICE, "digits", epsilon=budget, delta=DELTA)
        barrier = FORK.Barrier(2)
        results = FORK.Queue()
        children = [
            FORK.Process(target=_reserve_in_child, args=(path, barrier, results, mechanism.to_json()))
            for _ in range(2)
        ]  # fmt: skip
        for child in children:
            child.start()
        outcomes = sorted(results.get(timeout=WAIT_SECS) for _ in children)
        for child in children:
            child.join(timeout=WAIT_SECS)
            assert child.exitcode == 0
        assert outcomes[1] == "reserved"
        assert outcomes[0].startswith("refused: needs epsilon")
        with Ledger(path) as ledger:
            assert len(ledger.history()) == 1


def _reserve_then_hang(path: str, never, entered) -> None:
    with Ledger(path) as ledger:
        ledger.commit(ledger.reserve(ALICE, "digits", Laplace(0.2)))
        ledger.reserve(ALICE, "digits", Laplace(0.3))  # left reserved

        def stuck(mechanisms, delta):  # the third charge dies inside its write transaction
            entered.set()
            never.poll(WAIT_SECS)  # a pipe nobody writes to: killed while waiting here
            raise AssertionError("not killed")

        ledger_module.spent = stuck
        ledger.reserve(ALICE, "digits", Laplace(0.1))


@pytest.mark.timeout(120)
def test_the_ledger_survives_kill_9_and_counts_what_a_dead_process_reserved(tmp_path):
    path = str(tmp_path / "privacy.sqlite")
    with Ledger(path) as ledger:
        ledger.set_budget(ALICE, "digits", epsilon=1.0, delta=DELTA)
    # (a pipe, not an Event: setting an Event waits for its sleepers to wake, dead ones too)
    never, _keep_open = FORK.Pipe(duplex=False)
    entered = FORK.Event()
    child = FORK.Process(target=_reserve_then_hang, args=(path, never, entered))
    child.start()
    try:
        assert entered.wait(timeout=WAIT_SECS)  # the child holds the write lock now
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=WAIT_SECS)
    assert child.exitcode == -signal.SIGKILL

    with Ledger(path, lock_timeout_secs=WAIT_SECS) as reopened:
        states = [(h["mechanism"], h["state"]) for h in reopened.history()]
        assert states == [
            (Laplace(0.2).to_json(), "committed"),
            (Laplace(0.3).to_json(), "reserved"),  # fail closed: counted as spent
        ]
        assert reopened.remaining(ALICE, "digits") == pytest.approx(0.5)
        # the dead writer's lock is gone: the next charge goes through
        reopened.commit(reopened.reserve(ALICE, "digits", Laplace(0.5)))
        with pytest.raises(BudgetExceeded):
            reopened.reserve(ALICE, "digits", Laplace(0.01))
        # the owner may decide the dead job released nothing
        stale = reopened.reservation(2)
        reopened.abort(stale)
        assert reopened.remaining(ALICE, "digits") == pytest.approx(0.3)


def test_the_readmes_privacy_example_runs_as_written(tmp_path, capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Differential privacy (owner core)\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    script = tmp_path / "readme_privacy.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")  # as a reader runs it
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "0.5",
        "needs epsilon 0.6, 0.5 left at delta 1e-05 (scientist alice on 'ages', budget 1)",
    ]
