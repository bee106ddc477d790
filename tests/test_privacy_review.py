"""DP releases the owner reviews by hand (issue 19): ``set_budget(..., review=True)``.

Each release under such a budget is computed, its charge reserved, and it waits in
``owner.requests`` (and on the review page) with its price and what would remain; accepting
sends it and keeps the charge, denying or its timing out sends nothing and drops the charge.
In-memory duets (``sy.duet_pair``) carry real frames: every message crosses the protocol.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading

import pytest
import torch
from starlette.testclient import TestClient

import duet as sy
from duet.privacy import Ledger
from duet.review.app import build_app
from duet.review.changes import Changes

SECS = 60
AGES = torch.tensor([23.0, 35.0, 41.0, 52.0, 67.0, 29.0, 44.0, 38.0, 71.0, 19.0] * 20)


@pytest.fixture
def reviewed():
    """An owner publishing ``ages`` under a budget of 1.0 it reviews, and a scientist."""
    owner = sy.OwnerSession(max_scientists=4)
    owner.publish(AGES, tags=["ages"], description="ages of 200 people")
    identity = sy.Identity.ephemeral("alice")
    _, alice = sy.duet_pair(owner=owner, identity=identity)
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5, review=True)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    yield owner, alice, identity.id, pool
    pool.shutdown(wait=False, cancel_futures=True)
    alice.close()
    owner.close()


def ask_mean(pool, alice, epsilon=0.6, timeout_secs=SECS):
    ages = alice.store["ages"]
    return pool.submit(
        alice.privacy.mean, ages, bounds=(0, 100), epsilon=epsilon, timeout_secs=timeout_secs
    )


def waiting(owner):
    request = owner.requests.wait_for_request(SECS)
    assert request is not None
    return request


def test_a_reviewed_release_waits_with_its_price_and_accepting_sends_it_and_keeps_the_charge(
    reviewed,
):
    owner, alice, alice_id, pool = reviewed
    # a handler that accepts everything never decides a release the owner reviews
    owner.requests.add_handler(action="accept", tags=["ages"])
    answer = ask_mean(pool, alice)
    request = waiting(owner)
    assert not answer.done()
    assert request.name == "DP mean of ages" and request.op == "duet.privacy.mean"
    assert request.privacy.epsilon == pytest.approx(0.6)
    assert request.privacy.remaining_after == pytest.approx(0.4)
    row = owner.requests.pandas.iloc[0]
    assert row["DP price"] == pytest.approx(0.6) and row["DP left after"] == pytest.approx(0.4)
    # reserved while it waits: a second release cannot spend it meanwhile
    assert owner.privacy.budget(alice_id, "ages")["spent"] == pytest.approx(0.6)
    with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.4 left"):
        alice.privacy.mean(alice.store["ages"], bounds=(0, 100), epsilon=0.6, timeout_secs=SECS)

    request.accept()
    mean = answer.result(SECS)
    assert 0 <= mean <= 100
    assert owner.privacy.budget(alice_id, "ages")["remaining"] == pytest.approx(0.4)
    assert [c["state"] for c in owner.privacy.history(alice_id)] == ["committed"]
    (release,) = owner.audit.events("release")
    assert release["decided_by"] == "owner"  # not "privacy budget": the owner's hand
    (decision,) = owner.audit.events("decision")
    assert decision["status"] == "accepted"
    assert owner.privacy.pandas["Reviewed"].tolist() == [True, True]  # "*" and alice's row


def test_denying_sends_nothing_and_drops_the_charge(reviewed):
    owner, alice, alice_id, pool = reviewed
    answer = ask_mean(pool, alice)
    waiting(owner).deny("not this week")
    with pytest.raises(sy.RequestDenied, match="denied by the owner: not this week; nothing was"):
        answer.result(SECS)
    assert owner.privacy.budget(alice_id, "ages")["spent"] == 0
    assert [c["state"] for c in owner.privacy.history(alice_id)] == ["aborted"]
    (charge,) = owner.audit.events("privacy")
    assert charge["state"] == "aborted (denied by owner)"
    assert owner.audit.events("release") == []


def test_a_release_no_one_decides_times_out_and_spends_nothing():
    owner = sy.OwnerSession(request_timeout_secs=0.3)
    owner.publish(AGES, tags=["ages"])
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5, review=True)
    identity = sy.Identity.ephemeral("alice")
    _, alice = sy.duet_pair(owner=owner, identity=identity)
    try:
        with pytest.raises(sy.RequestDenied, match="timeout; nothing was charged"):
            alice.privacy.count(alice.store["ages"], epsilon=0.5, timeout_secs=SECS)
        assert owner.privacy.budget(identity.id, "ages")["spent"] == 0
    finally:
        alice.close()
        owner.close()


def test_a_scientist_that_leaves_while_its_release_waits_is_charged_nothing(reviewed):
    owner, alice, alice_id, pool = reviewed
    answer = ask_mean(pool, alice)
    request = waiting(owner)
    decided = threading.Event()  # told by the queue when it decides (no polling)
    owner.requests.add_listener(lambda r: decided.set() if r is request else None)
    alice.close()
    with pytest.raises(sy.DuetError):
        answer.result(SECS)
    assert decided.wait(SECS)  # the owner saw the channel close
    assert request.status is sy.RequestStatus.TIMEOUT
    assert owner.privacy.budget(alice_id, "ages")["spent"] == 0
    with pytest.raises(sy.UsageError, match="was already timeout"):
        request.accept()  # too late: nothing leaves


def test_a_flood_of_reviewed_releases_stops_at_the_scientists_waiting_limit():
    owner = sy.OwnerSession(max_pending_requests=2)
    owner.publish(AGES, tags=["ages"])
    owner.privacy.set_budget("*", "ages", epsilon=10.0, delta=1e-5, review=True)
    identity = sy.Identity.ephemeral("mallory")
    _, mallory = sy.duet_pair(owner=owner, identity=identity)
    pool = concurrent.futures.ThreadPoolExecutor(3)
    try:
        answers = [ask_mean(pool, mallory, epsilon=0.1) for _ in range(2)]
        for _ in range(2):
            waiting(owner)
        with pytest.raises(sy.QuotaExceeded, match=r"requests waiting for the owner.*Nothing was"):
            mallory.privacy.count(mallory.store["ages"], epsilon=0.1, timeout_secs=SECS)
        assert len(owner.requests.pending) == 2
        # the refused one is charged nothing: two reserved, one aborted
        states = [c["state"] for c in owner.privacy.history(identity.id)]
        assert sorted(states) == ["aborted", "reserved", "reserved"]
        for request in owner.requests.pending:
            request.deny()
        for answer in answers:
            with pytest.raises(sy.RequestDenied):
                answer.result(SECS)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        mallory.close()
        owner.close()


def test_the_review_page_shows_the_price_beside_the_request(reviewed):
    owner, alice, _, pool = reviewed
    answer = ask_mean(pool, alice, epsilon=0.25)
    request = waiting(owner)
    app = build_app(owner, "tok", 8123, Changes())
    with TestClient(app, base_url="http://127.0.0.1:8123") as client:
        html = client.get("/tok/").text
    card = html.split(f'id="request-{request.id}"', 1)[1].split("</article>", 1)[0]
    assert "DP mean of ages" in card
    assert "(each release waits for you)" in html.split('<section id="privacy">', 1)[1]
    assert (
        'charges <b>epsilon 0.25</b> on <span class="tag">ages</span> at delta 1e-05; '
        "<b>0.75</b> would remain" in card
    )
    request.accept()
    assert 0 <= answer.result(SECS) <= 100


def test_a_budget_without_review_still_releases_at_once(reviewed):
    owner, alice, alice_id, _ = reviewed
    owner.privacy.set_budget(alice_id, "ages", epsilon=1.0, delta=1e-5)  # her own, not reviewed
    count = alice.privacy.count(alice.store["ages"], epsilon=0.2, timeout_secs=SECS)
    assert isinstance(count, int) and len(owner.requests.pending) == 0
    assert owner.privacy.budget(alice_id, "ages")["review"] is False


def test_a_ledger_written_before_review_existed_opens_with_budgets_not_reviewed(tmp_path):
    path = tmp_path / "privacy.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE budgets (id INTEGER PRIMARY KEY AUTOINCREMENT, scientist TEXT NOT NULL,
            dataset TEXT NOT NULL, epsilon REAL NOT NULL, delta REAL NOT NULL,
            set_at TEXT NOT NULL);
        INSERT INTO budgets (scientist, dataset, epsilon, delta, set_at)
            VALUES ('*', 'ages', 2.0, 1e-5, '2026-01-01T00:00:00');
        PRAGMA user_version=1;
        """
    )
    old.close()
    with Ledger(path) as ledger:
        standing = ledger.standing("someone", "ages")
        assert standing is not None and standing.epsilon == 2.0 and standing.review is False
        ledger.set_budget("*", "ages", epsilon=2.0, delta=1e-5, review=True)
        assert ledger.standing("someone", "ages").review is True


def test_review_must_be_a_bool(reviewed):
    owner, *_ = reviewed
    with pytest.raises(sy.UsageError, match="review is True or False"):
        owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5, review="yes")


def test_a_scientist_reads_its_own_charges_on_a_dataset_and_no_one_elses(reviewed):
    owner, alice, alice_id, _ = reviewed
    owner.privacy.set_budget(alice_id, "ages", epsilon=1.0, delta=1e-5)  # no review: at once
    alice.privacy.count(alice.store["ages"], epsilon=0.2, timeout_secs=SECS)
    alice.privacy.mean(alice.store["ages"], bounds=(0, 100), epsilon=0.3, timeout_secs=SECS)
    identity = sy.Identity.ephemeral("bob")
    _, bob = sy.duet_pair(owner=owner, identity=identity)
    try:
        assert bob.privacy.history("ages", timeout_secs=SECS) == []
        charges = alice.privacy.history("ages", timeout_secs=SECS)
        assert [c["mechanism"]["kind"] for c in charges] == ["laplace", "laplace"]
        assert [c["epsilon"] for c in charges] == pytest.approx([0.2, 0.3])
        assert [c["state"] for c in charges] == ["committed", "committed"]
        last = alice.privacy.history("ages", last=1, timeout_secs=SECS)
        assert [c["entry"] for c in last] == [charges[-1]["entry"]]
        with pytest.raises(sy.UsageError, match="less than or equal to 10000"):
            alice.privacy.history("ages", last=10**6, timeout_secs=SECS)
    finally:
        bob.close()
