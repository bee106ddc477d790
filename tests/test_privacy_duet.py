"""Differential privacy over a real duet (issue 19): the owner sets budgets per scientist and
dataset, the scientist asks for DP statistics and DP-SGD jobs, the owner enforces the budget.

In-memory duets (``sy.duet_pair``) carry real frames: every message here crosses the protocol.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import duet as sy
from duet.protocol.dp_messages import DpStatistic
from duet.protocol.frames import encode_frame

SECS = 60
AGES = torch.tensor([23.0, 35.0, 41.0, 52.0, 67.0, 29.0, 44.0, 38.0, 71.0, 19.0] * 20)
AS_IT_IS = "a DP statistic runs on a published dataset as it is"


@pytest.fixture
def ages_node():
    """An owner publishing ``ages`` (one tag) and two scientists, alice and bob."""
    owner = sy.OwnerSession(max_scientists=10)
    owner.publish(AGES, tags=["ages"], description="ages of 200 people")
    scientists, ids = {}, {}
    for name in ("alice", "bob"):
        identity = sy.Identity.ephemeral(name)
        _, scientist = sy.duet_pair(owner=owner, identity=identity)
        scientists[name], ids[name] = scientist, identity.id
    yield owner, scientists, ids
    for scientist in scientists.values():
        scientist.close()
    owner.close()


def pointer_to(scientist, tag):
    return scientist.store[tag]


def test_a_release_within_budget_needs_no_request_and_one_over_it_is_refused_with_the_numbers(
    ages_node,
):
    owner, scientists, ids = ages_node
    alice, bob = scientists["alice"], scientists["bob"]
    owner.privacy.set_budget(ids["alice"], "ages", epsilon=1.0, delta=1e-5)
    ages = pointer_to(alice, "ages")

    mean = alice.privacy.mean(ages, bounds=(0, 100), epsilon=0.6, timeout_secs=SECS)
    assert 0 <= mean <= 100
    assert len(owner.requests) == 0  # the budget decided: nothing waits for the owner
    with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.4 left at delta 1e-05"):
        alice.privacy.mean(ages, bounds=(0, 100), epsilon=0.6, timeout_secs=SECS)
    count = alice.privacy.count(ages, epsilon=0.3, timeout_secs=SECS)  # a smaller one fits
    assert isinstance(count, int)
    assert alice.privacy.budget("ages", timeout_secs=SECS)["remaining"] == pytest.approx(0.1)

    # bob has no budget of his own and no default is set: refused (fail closed)
    with pytest.raises(sy.QuotaExceeded, match="set no privacy budget on 'ages'"):
        bob.privacy.mean(pointer_to(bob, "ages"), bounds=(0, 100), epsilon=0.1)
    # the default "*" gives bob a budget of his own; alice's spend is not his
    owner.privacy.set_budget("*", "ages", epsilon=0.5, delta=1e-5)
    assert owner.privacy.budget(ids["bob"], "ages")["spent"] == 0
    bob.privacy.histogram(pointer_to(bob, "ages"), bins=5, bounds=(0, 100), epsilon=0.4)
    assert owner.privacy.budget(ids["bob"], "ages")["remaining"] == pytest.approx(0.1)
    assert owner.privacy.budget(ids["alice"], "ages")["remaining"] == pytest.approx(0.1)
    table = owner.privacy.pandas
    assert set(table["Scientist"]) == {ids["alice"], ids["bob"], "*"}
    assert len(owner.privacy.history(ids["alice"])) == 2  # the refused one left no entry


def test_each_charge_and_release_is_in_the_audit_log(ages_node):
    owner, scientists, ids = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice = scientists["alice"]
    alice.privacy.sum(pointer_to(alice, "ages"), bounds=(0, 100), epsilon=0.25)
    (charge,) = owner.audit.events("privacy")
    assert charge["scientist"] == ids["alice"] and charge["dataset"] == "ages"
    assert charge["state"] == "committed" and charge["epsilon"] == pytest.approx(0.25)
    (release,) = [e for e in owner.audit.releases() if e["scientist"] == ids["alice"]]
    assert release["decided_by"] == "privacy budget"
    with pytest.raises(sy.QuotaExceeded):
        alice.privacy.sum(pointer_to(alice, "ages"), bounds=(0, 100), epsilon=0.9)
    assert any("needs epsilon" in e["reason"] for e in owner.audit.events("refused"))


def test_a_quote_prices_without_charging(ages_node):
    owner, scientists, _ = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice = scientists["alice"]
    quote = alice.privacy.quote(
        "mean", pointer_to(alice, "ages"), bounds=(0, 100), epsilon=0.4, timeout_secs=SECS
    )
    assert quote["epsilon"] == pytest.approx(0.4) and quote["fits"] is True
    assert quote["remaining_after"] == pytest.approx(0.6)
    assert owner.privacy.history() == []
    assert alice.privacy.budget("ages")["remaining"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "derive",
    [lambda x: x * 1000, lambda x: x[0:1], lambda x: x[5].repeat(1000), lambda x: x.clone()],
    ids=["times-1000", "slice", "one-row-repeated", "clone"],
)
def test_a_value_derived_from_a_dataset_is_refused_and_nothing_is_charged(ages_node, derive):
    owner, scientists, _ = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice = scientists["alice"]
    derived = derive(pointer_to(alice, "ages"))
    with pytest.raises(sy.UsageError, match=AS_IT_IS):
        alice.privacy.mean(derived, bounds=(0, 100), epsilon=0.5, timeout_secs=SECS)
    assert owner.privacy.history() == []


def test_another_scientists_object_reads_as_an_unknown_id(ages_node):
    owner, scientists, _ = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice, bob = scientists["alice"], scientists["bob"]
    bobs = torch.arange(5.0).send(bob)
    bob.sync()
    answers = []
    for object_id in (bobs.id, "no-such-object"):
        stranger = alice.client.pointer(object_id, None, {}, owned=False)
        with pytest.raises(sy.UsageError) as refused:
            alice.privacy.count(stranger, epsilon=0.1, timeout_secs=SECS)
        answers.append(str(refused.value).replace(object_id, "<id>"))
    assert answers[0] == answers[1]
    assert "does not exist" in answers[0]
    unlisted = owner.publish(torch.ones(3), pointable=False, tags=["hidden"])
    with pytest.raises(sy.UsageError, match="does not exist"):
        alice.privacy.count(alice.client.pointer(unlisted.id, None, {}, owned=False), epsilon=0.1)
    with pytest.raises(sy.UsageError, match="no published dataset is tagged 'hidden'"):
        alice.privacy.budget("hidden")


def test_settings_the_owner_refuses_get_error_replies_and_nothing_is_charged(ages_node):
    owner, scientists, _ = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice = scientists["alice"]
    ages = pointer_to(alice, "ages")
    with pytest.raises(sy.UsageError, match="lo < hi"):
        alice.privacy.mean(ages, bounds=(100, 0), epsilon=0.1, timeout_secs=SECS)
    with pytest.raises(sy.UsageError, match="takes neither bounds nor bins"):
        alice.privacy.quote("count", ages, bounds=(0, 1), epsilon=0.1, timeout_secs=SECS)
    # refused before sending: what the wire would not carry
    for settings, match in [
        ({"epsilon": float("nan")}, "finite"),
        ({"epsilon": -1.0}, "greater than 0"),
        ({"epsilon": "0.5"}, "valid number"),
        ({"epsilon": 0.1, "bins": 10**9}, "less than or equal"),
    ]:
        with pytest.raises(sy.UsageError, match=match):
            alice.privacy.histogram(ages, bounds=(0, 100), **{"bins": 5, **settings})
    assert owner.privacy.history() == []


def send_raw(scientist, messages):
    """Send messages as a hostile scientist would: JSON written by hand, no validation."""
    connection = scientist.connection
    header = json.dumps(messages).encode()  # NaN travels as the NaN token
    frame = encode_frame(header, [], max_frame_bytes=connection.peer_max_frame_bytes)
    connection._admit(len(frame), wait=False)
    connection.loop.call_soon_threadsafe(connection._accept, frame, None)


def stat(**fields):
    return {"k": "dp_stat", "rid": 10**9, "kind": "mean", "target": "ages-id",
            "bounds": [0, 100], "epsilon": 0.1, **fields}  # fmt: skip


HOSTILE = {
    "nan-epsilon": (stat(epsilon=float("nan")), "epsilon"),
    "infinite-bound": (stat(bounds=[0, float("inf")]), "bounds"),
    "negative-epsilon": (stat(epsilon=-1), "epsilon"),
    "string-epsilon": (stat(epsilon="0.5"), "epsilon"),
    "boolean-bins": (stat(kind="histogram", bins=True), "bins"),
    "huge-bins": (stat(kind="histogram", bins=10**12), "bins"),
    "three-bounds": (stat(bounds=[0, 1, 2]), "bounds"),
    "unknown-kind": (stat(kind="median"), "kind"),
    "huge-target": (stat(target="a" * 100_000), "target"),
    "extra-field": (stat(noise="none"), "noise"),
    "huge-data-tag": ({"k": "dp_budget", "rid": 1, "data": "x" * 10_000}, "data"),
    "job-with-list-lr": (
        {
            "k": "dp_train",
            "rid": 1,
            "model": "m",
            "data": "ages",
            "loss": "mse",
            "optimizer": "sgd",
            "lr": [1],
            "batch_size": 1,
            "epochs": 1,
            "max_grad_norm": 1.0,
        },
        "lr",
    ),  # fmt: skip
}


@pytest.mark.parametrize("message, field", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_dp_message_is_refused_and_the_owner_keeps_serving(ages_node, message, field):
    owner, scientists, _ = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    alice = scientists["alice"]
    ages = pointer_to(alice, "ages")
    message = {**message, "target": ages.id} if message["k"] == "dp_stat" else message
    if message.get("target") == ages.id and field == "target":
        message["target"] = "a" * 100_000
    send_raw(alice, [message])
    alice.sync(timeout_secs=SECS)  # the refusal is answered before anything after it runs
    refusal = alice.client.notices[-1]
    assert refusal.code == "protocol_error" and field in refusal.message
    assert owner.privacy.history() == []
    assert 0 <= alice.privacy.mean(ages, bounds=(0, 100), epsilon=0.1, timeout_secs=SECS) <= 100


def test_a_release_names_only_its_noisy_value(tmp_path):
    """Two worlds whose private data differ: every field of the replies but the noisy value is
    the same (the charge, what remains, delta: functions of the settings and the ledger)."""
    replies = []
    for world, data in enumerate([AGES, AGES.flip(0) * 0.5 + 3.0]):
        owner = sy.OwnerSession(privacy_ledger=tmp_path / f"world{world}.sqlite3")
        owner.publish(data, tags=["ages"])
        owner.privacy.set_budget("*", "ages", epsilon=2.0, delta=1e-5)
        _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("alice"))
        try:
            target = scientist.store["ages"].id
            seen = []
            for kind, bounds, bins in [("mean", [0, 100], None), ("count", None, None),
                                       ("histogram", [0, 100], 4), ("mean", [0, 100], None)]:  # fmt: skip
                reply, buffers = scientist.client.request(
                    lambda rid, kind=kind, bounds=bounds, bins=bins, target=target: DpStatistic(
                        rid=rid, kind=kind, target=target, bounds=bounds, epsilon=0.5, bins=bins
                    ),
                    timeout_secs=SECS,
                    what="a DP statistic",
                )
                value = scientist.client.decode(reply.value, buffers)
                assert reply.status == "ok" and isinstance(value, dict)
                value.pop("value")
                seen.append((reply.status, reply.error, reply.note, value))
            replies.append(seen)
        finally:
            scientist.close()
            owner.close()
    assert replies[0] == replies[1]


def test_the_ledger_outlives_the_owner_session(tmp_path):
    path = tmp_path / "privacy.sqlite3"
    alice = sy.Identity.ephemeral("alice")
    owner = sy.OwnerSession(privacy_ledger=path)
    owner.publish(AGES, tags=["ages"])
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    _, scientist = sy.duet_pair(owner=owner, identity=alice)
    scientist.privacy.mean(scientist.store["ages"], bounds=(0, 100), epsilon=0.6)
    scientist.close()
    owner.close()

    owner = sy.OwnerSession(privacy_ledger=path)  # restarted: the same ledger
    owner.publish(AGES, tags=["ages"])
    _, scientist = sy.duet_pair(owner=owner, identity=alice)
    try:
        with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.4 left"):
            scientist.privacy.mean(scientist.store["ages"], bounds=(0, 100), epsilon=0.6)
        assert owner.privacy.budget(alice.id, "ages")["spent"] == pytest.approx(0.6)
    finally:
        scientist.close()
        owner.close()


def test_the_default_ledger_is_in_the_duet_home(duet_home):
    owner = sy.OwnerSession()
    try:
        owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
        assert (duet_home / "privacy.sqlite3").exists()
    finally:
        owner.close()


def test_a_scientist_without_the_right_to_ask_for_releases_gets_no_dp_release(ages_node):
    owner, scientists, ids = ages_node
    owner.privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    owner.access.allow(ids["alice"], requests=False)
    alice = scientists["alice"]
    with pytest.raises(sy.PermissionDenied, match="not ask for releases"):
        alice.privacy.count(pointer_to(alice, "ages"), epsilon=0.1, timeout_secs=SECS)
    assert owner.privacy.history() == []


# ---- DP-SGD jobs


def digits(rows=512):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    inputs = torch.tensor(x[:rows] / 16.0, dtype=torch.float32)
    return torch.utils.data.TensorDataset(inputs, torch.tensor(y[:rows]))


def test_a_dp_training_job_returns_a_trained_model_and_the_quoted_epsilon(tmp_path):
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "privacy.sqlite3")
    owner.publish(digits(), tags=["digits"])
    owner.privacy.set_budget("*", "digits", epsilon=10.0, delta=1e-5)
    _, scientist = sy.duet_pair(owner=owner)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 10))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        settings = dict(data="digits", lr=0.5, batch_size=64, epochs=1, max_grad_norm=1.0,
                        noise_multiplier=1.0)  # fmt: skip
        quote = scientist.privacy.quote("train", model, timeout_secs=SECS, **settings)
        assert quote["fits"] is True
        job = scientist.privacy.train(model, **settings)
        trained, epsilon = job.wait(timeout_secs=SECS)
        assert isinstance(trained, nn.Sequential) and trained is not model
        assert epsilon == pytest.approx(quote["epsilon"], rel=1e-9)
        assert any(not torch.equal(before[k], v) for k, v in trained.state_dict().items())
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert job.progress == "DP training: step 8 of 8"
        assert len(owner.requests) == 0
        (charge,) = owner.audit.events("privacy")
        assert json.loads(charge["mechanism"])["kind"] == "dp_sgd"
        remaining = scientist.privacy.budget("digits")["remaining"]
        assert remaining == pytest.approx(10.0 - quote["charge"])
        # the trained weights were the owner's to release, never a pointer's: a model derived
        # from the owner's data is not a starting point for another job
        with pytest.raises(sy.UsageError, match="not a model of yours"):
            scientist.privacy.train(scientist.store["digits"], **settings).wait(timeout_secs=SECS)
    finally:
        scientist.close()
        owner.close()


def test_a_dp_job_refuses_a_loss_off_the_allowlist_and_a_model_depending_on_the_data(tmp_path):
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "privacy.sqlite3")
    owner.publish(digits(64), tags=["digits"])
    owner.publish(torch.ones(4, 64), tags=["secret"])
    owner.privacy.set_budget("*", "digits", epsilon=10.0, delta=1e-5)
    _, scientist = sy.duet_pair(owner=owner)
    try:
        settings = dict(data="digits", lr=0.5, batch_size=16, max_grad_norm=1.0,
                        noise_multiplier=1.0)  # fmt: skip
        model = nn.Linear(64, 10)
        with pytest.raises(sy.UsageError, match="loss one of"):
            scientist.privacy.train(model, loss="eval", **settings).wait(timeout_secs=SECS)
        with pytest.raises(sy.UsageError, match="delta 1e-05"):
            scientist.privacy.train(model, delta=0.1, **settings).wait(timeout_secs=SECS)
        remote = nn.Linear(64, 10).send(scientist)
        optimizer = scientist.torch.optim.SGD(remote.parameters(), lr=0.1)
        remote(scientist.store["secret"]).sum().backward()
        optimizer.step()  # trained on the owner's data outside a DP job
        with pytest.raises(sy.UsageError, match="depends on the owner's data"):
            scientist.privacy.train(remote, **settings).wait(timeout_secs=SECS)
        assert owner.privacy.history() == []
    finally:
        scientist.close()
        owner.close()


@pytest.mark.parametrize(
    "kind, settings",
    [
        ("mean", {"bounds": (0, 100)}),
        ("sum", {"bounds": (-5, 100)}),
        ("count", {}),
        ("histogram", {"bounds": (0, 100), "bins": 7}),
    ],
)
def test_a_statistic_is_priced_before_it_runs_as_it_will_run(kind, settings):
    from duet import privacy

    quoted = privacy.price_statistic(kind, epsilon=0.3, **settings)
    _, ran = getattr(privacy, kind)(AGES, epsilon=0.3, **settings)
    assert quoted == ran


def test_a_quote_and_a_budget_query_leave_the_ledger_as_it_was(tmp_path):
    from duet import privacy

    with privacy.Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
        quote = ledger.quote("alice", "ages", privacy.Laplace(0.4))
        assert (quote.epsilon, quote.charge, quote.remaining) == pytest.approx((0.4, 0.4, 1.0))
        assert quote.fits and quote.remaining_after == pytest.approx(0.6)
        assert not ledger.quote("alice", "ages", privacy.Laplace(1.5)).fits
        standing = ledger.standing("alice", "ages")
        assert standing is not None and standing.budget_of == "*" and standing.spent == 0
        assert ledger.standing("alice", "other") is None
        assert ledger.history() == []


def test_two_owners_on_one_ledger_never_both_release_past_the_budget(tmp_path):
    """Two owner sessions (two processes of one owner, say) serve alice from the same ledger:
    two releases of 0.6 under a budget of 1.0, asked at once, never both pass."""
    import threading

    path = tmp_path / "privacy.sqlite3"
    alice = sy.Identity.ephemeral("alice")
    owners, scientists = [], []
    for _ in range(2):
        owner = sy.OwnerSession(privacy_ledger=path)
        owner.publish(AGES, tags=["ages"])
        owners.append(owner)
        scientists.append(sy.duet_pair(owner=owner, identity=alice)[1])
    owners[0].privacy.set_budget("*", "ages", epsilon=1.0, delta=1e-5)
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def ask(scientist):
        start.wait(SECS)
        try:
            scientist.privacy.mean(scientist.store["ages"], bounds=(0, 100), epsilon=0.6)
            outcomes.append("released")
        except sy.QuotaExceeded as refused:
            outcomes.append(str(refused))

    threads = [threading.Thread(target=ask, args=(s,)) for s in scientists]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(SECS)
        assert sorted(outcomes)[-1] == "released"
        assert "needs epsilon 0.6, 0.4 left" in sorted(outcomes)[0]
        assert len(owners[1].privacy.history(alice.id)) == 1
    finally:
        for scientist in scientists:
            scientist.close()
        for owner in owners:
            owner.close()


def test_a_dp_job_too_long_or_too_large_for_the_owner_is_refused_before_any_charge(tmp_path):
    # a hostile scientist cannot hold the owner's CPU with a job of endless steps, nor take its
    # memory with a huge batch of a large model (Opacus keeps a gradient per example)
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "privacy.sqlite3", max_bytes=50_000_000)
    owner.publish(digits(64), tags=["digits"])
    owner.privacy.set_budget("*", "digits", epsilon=10.0, delta=1e-5)
    owner.privacy.max_steps = 100
    _, scientist = sy.duet_pair(owner=owner)
    try:
        settings = dict(data="digits", lr=0.5, max_grad_norm=1.0, noise_multiplier=1.0)
        model = nn.Linear(64, 10)
        with pytest.raises(sy.UsageError, match="would take 400 steps; the owner runs at most 100"):
            scientist.privacy.train(model, batch_size=16, epochs=100, **settings).wait(
                timeout_secs=SECS
            )
        wide = nn.Sequential(nn.Linear(64, 4096), nn.Linear(4096, 10))  # 307k weights
        with pytest.raises(sy.QuotaExceeded, match="per-sample gradients would need about"):
            scientist.privacy.train(wide, batch_size=64, epochs=1, **settings).wait(
                timeout_secs=SECS
            )
        assert owner.privacy.history() == []  # nothing charged
        assert scientist.privacy.budget("digits")["remaining"] == pytest.approx(10.0)
        # within both, the same job runs
        job = scientist.privacy.train(model, batch_size=16, epochs=1, **settings)
        _, epsilon = job.wait(timeout_secs=SECS)
        assert epsilon > 0
    finally:
        scientist.close()
        owner.close()


def test_a_training_quote_tells_how_many_epochs_fit_and_exactly_that_many_do(tmp_path):
    owner = sy.OwnerSession(privacy_ledger=tmp_path / "privacy.sqlite3")
    owner.publish(digits(), tags=["digits"])
    owner.privacy.set_budget("*", "digits", epsilon=10.0, delta=1e-5)
    _, scientist = sy.duet_pair(owner=owner)
    try:
        model = nn.Sequential(nn.Linear(64, 10))
        settings = dict(data="digits", lr=0.5, batch_size=64, max_grad_norm=1.0,
                        noise_multiplier=1.0, timeout_secs=SECS)  # fmt: skip
        quote = scientist.privacy.quote("train", model, epochs=1, **settings)
        affordable = quote["epochs_affordable"]
        assert quote["noise_multiplier"] == 1.0 and 1 < affordable < 10_000
        fits = scientist.privacy.quote("train", model, epochs=affordable, **settings)
        over = scientist.privacy.quote("train", model, epochs=affordable + 1, **settings)
        assert fits["fits"] is True and over["fits"] is False
        assert fits["epochs_affordable"] == affordable  # the same answer whatever was asked
        # epsilon=: the owner picks the noise for the epochs asked; it is in the quote
        picked = scientist.privacy.quote(
            "train", model, epochs=2, **{**settings, "noise_multiplier": None}, epsilon=2.0
        )
        assert 1.9 < picked["epsilon"] <= 2.0  # the least noise that fits epsilon
        assert picked["noise_multiplier"] > 0 and picked["epochs_affordable"] >= 2
        # what was spent since counts: after a job, fewer epochs fit
        job_settings = {k: v for k, v in settings.items() if k != "timeout_secs"}
        scientist.privacy.train(model, epochs=1, **job_settings).wait(timeout_secs=SECS)
        after = scientist.privacy.quote("train", model, epochs=1, **settings)
        assert after["epochs_affordable"] < affordable
        assert scientist.privacy.budget("digits", timeout_secs=SECS)["spent"] > 0
    finally:
        scientist.close()
        owner.close()
