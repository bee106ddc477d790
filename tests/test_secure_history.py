"""An owner's secure-aggregation history survives restarts (issue 20): the round ids it answered
and the updates and trained models it gave are kept in SQLite in its duet home
(``duet/owner/secure_history.py``), so an owner restarted with the same identity refuses a
replayed round id, a resubmitted update or trained model, as it did before the restart; a file
that is not its history stops secure aggregation with a clear error, never a silent reset; a
record that cannot be written lets nothing leave.

In one process (owners restarted as new OwnerSessions with the same identity and duet home),
through the protocol core with the file as the owners' history, and over real processes (an
owner process killed and started again on the same duet home).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
import threading

import pytest
import torch
from torch import nn

import duet as sy
from duet import federated as fl
from duet.errors import DuetTimeout, SecureAggregationAborted, UsageError
from duet.owner import secure_history as history_module
from duet.owner.secure_history import SecureHistory, SecureHistoryCorrupt
from duet.privacy import Ledger
from duet.secure import MaskedInput, Relay
from duet.secure.messages import KeyAdvertisement

from .owner_pairs import OwnerPairs
from .processes import UNIT, Process, start_signaling_server
from .test_federated_processes import OWNER
from .test_secure_aggregation import Round
from .test_secure_aggregation_wire import blobs

torch.set_num_threads(1)
SECS = 60
NAMES = ["a", "b", "c"]
SETTINGS = fl.SecureAggregation(clip=100.0, step_timeout_secs=SECS / 2)
# lr 0: the trained model is the global model, the same weights in every round: what a
# scientist replaying a trained model to a restarted owner would send
STILL = fl.LocalTraining(epochs=1, batch_size=16, optimizer_options={"lr": 0.0})
TRAINING = fl.LocalTraining(epochs=1, batch_size=16, optimizer_options={"lr": 0.1})


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class Owners(OwnerPairs):
    """Three in-process owners with identities kept in the duet home (``owner-a``...), each
    allowing the federation with secure aggregation; ``restart()`` closes them and starts
    them again with the same identities and duet home, as a rerun notebook would."""

    def __init__(self, **options: object) -> None:
        self.options = options
        super().__init__()
        self.start()

    def start(self) -> None:
        for i, name in enumerate(NAMES):
            identity = sy.Identity.load_or_create(f"owner-{name}")
            owner = sy.OwnerSession(identity=identity, **self.options)  # type: ignore[arg-type]
            owner.publish(blobs(40 + 10 * i, i), tags=["data"], description=f"{name}'s data")
            _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("scientist"))
            self.owners[name], self.sessions[name] = owner, scientist
        ids = [o.identity.id for o in self.owners.values()]
        for owner in self.owners.values():
            fl.allow_federated_training(
                owner, "data", model_elements=1000, secure_aggregation=True, owners=ids
            )

    def restart(self) -> None:
        self.close()
        self.start()

    def federation(self, global_model: nn.Module, training: fl.LocalTraining) -> fl.Federation:
        return fl.Federation(
            global_model, self.sessions, data="data", training=training, show="none",
            secure_aggregation=SETTINGS, round_timeout_secs=SECS,
        )  # fmt: skip

    def masked_releases(self) -> dict[str, int]:
        return {
            name: sum(e.get("value_kind") == "masked update" for e in o.audit.events("release"))
            for name, o in self.owners.items()
        }


@pytest.fixture
def owners():
    made = Owners()
    yield made
    made.close()


def test_owners_restarted_with_the_same_identity_refuse_a_replayed_round_id(owners, duet_home):
    global_model = model()
    first = owners.federation(global_model, TRAINING)
    (report,) = first.fit(rounds=1)
    assert report.counted and report.included == NAMES, report.summary()
    assert (duet_home / "secure_history.sqlite3").exists()

    owners.restart()
    replay = owners.federation(global_model, TRAINING)
    replay._run = first._run  # a hostile scientist: round 1 of the same run, once more
    before = {k: v.clone() for k, v in global_model.state_dict().items()}
    (again,) = replay.fit(rounds=1)
    print(again.summary())
    assert not again.counted and "(replay)" in again.note, again.summary()
    assert f"round 'federated {first._run} round 1' was run before" in again.note
    assert all(torch.equal(v, before[k]) for k, v in global_model.state_dict().items())
    assert owners.masked_releases() == dict.fromkeys(NAMES, 0)  # nothing left after the restart

    # a new round id from the same owners goes on as usual
    (fresh,) = owners.federation(global_model, TRAINING).fit(rounds=1)
    assert fresh.counted and fresh.included == NAMES, fresh.summary()


def test_owners_restarted_refuse_a_trained_model_given_to_a_round_before(owners):
    global_model = model()
    (report,) = owners.federation(global_model, STILL).fit(rounds=1)
    assert report.counted, report.summary()

    owners.restart()
    (again,) = owners.federation(global_model, STILL).fit(rounds=1)  # a new run: new round ids
    print(again.summary())
    assert not again.counted and "(replay)" in again.note, again.summary()
    assert "this trained model's update was given to an earlier round" in again.note
    assert "round 1'" in again.note  # it names that round
    assert owners.masked_releases() == dict.fromkeys(NAMES, 0)


def test_an_owner_with_another_identity_in_the_same_home_keeps_its_own_history(owners):
    global_model = model()
    (report,) = owners.federation(global_model, STILL).fit(rounds=1)
    assert report.counted, report.summary()
    owners.close()
    # the same duet home and file, three other identities: they gave nothing yet
    for name in NAMES:
        (sy.Identity.load_or_create(f"owner-{name}").path).unlink()  # type: ignore[union-attr]
    owners.start()
    (other,) = owners.federation(global_model, STILL).fit(rounds=1)
    assert other.counted, other.summary()


# ---- the protocol core, with the file as each owner's history


def file_histories(game: Round, path) -> SecureHistory:
    history = SecureHistory(path)
    game.history = {i.id: history.memory(i.id, "fed") for i in game.identities}
    return history


def test_an_update_submitted_before_a_restart_is_refused_after_it(tmp_path):
    game = Round(3)
    path = tmp_path / "history.sqlite3"
    history = file_histories(game, path)
    Relay(game.spec, game.layout).run(game.owners(), game.updates)
    history.close()

    reopened = file_histories(game, path)  # the owners' process started again
    spec2 = dataclasses.replace(game.spec, round_id="round-2")
    again = game.roster[0]
    fresh = {o: {k: v * 0.5 for k, v in u.items()} for o, u in game.updates.items()}
    fresh[again] = game.updates[again]
    relay = Relay(spec2, game.layout)
    relay.run(game.owners(spec2), fresh)  # the others' sum: the one resubmitted is out
    assert relay.aborts[again].reason == "replay"
    assert "this update was submitted before, in round 'round-1'" in str(relay.aborts[again])
    assert all(m.owner != again for m in relay.log if isinstance(m, MaskedInput))
    with pytest.raises(SecureAggregationAborted, match="round 'round-1' was run before"):
        game.owners()
    counts = reopened.counts(again)
    assert counts == {"rounds": 2, "update": 1, "trained": 0}
    reopened.close()


class LockedAtInput(Relay):
    """Another writer holds the history file's write lock from the moment the shares are
    relayed: the owners cannot record the update they are about to mask."""

    def __init__(self, spec, layout, path) -> None:
        super().__init__(spec, layout)
        self.path = path
        self.blocker: sqlite3.Connection | None = None

    def shares_for(self, receiver, shares):
        if self.blocker is None:
            self.blocker = sqlite3.connect(self.path, isolation_level=None)
            self.blocker.execute("BEGIN IMMEDIATE")
        return shares


def test_an_update_that_cannot_be_recorded_is_not_sent(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_SECS", 0.2)
    game = Round(3)
    path = tmp_path / "history.sqlite3"
    history = file_histories(game, path)
    relay = LockedAtInput(game.spec, game.layout, path)
    with pytest.raises(SecureAggregationAborted, match="could not record"):
        relay.run(game.owners(), game.updates)
    assert relay.blocker is not None
    relay.blocker.execute("ROLLBACK")
    relay.blocker.close()
    assert sorted(relay.aborts) == sorted(game.roster)
    for abort in relay.aborts.values():
        assert abort.reason == "history" and "stayed locked by another writer" in str(abort)
    assert not [m for m in relay.log if isinstance(m, MaskedInput)]  # no masked input left
    assert history.counts(game.roster[0])["update"] == 0
    history.close()


def test_a_round_that_cannot_be_recorded_gives_no_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_SECS", 0.2)
    game = Round(3)
    path = tmp_path / "history.sqlite3"
    history = file_histories(game, path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(SecureAggregationAborted, match="could not record") as caught:
            game.owners()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert caught.value.reason == "history"
    (owner,) = game.owners(game.spec)[:1]  # recorded once the file is free again
    assert isinstance(owner.advertise(), KeyAdvertisement)
    history.close()


def test_a_full_disk_aborts_the_round_and_the_history_goes_on_once_there_is_room(tmp_path):
    game = Round(3)
    history = file_histories(game, tmp_path / "history.sqlite3")
    # SQLite's own page limit stands in for a full disk (the same error, SQLITE_FULL): pages
    # packed full by VACUUM, the owners' rows sorting before the last, partly filled, page
    filler = history.memory("zzzz-zzzz-zzzz-zzzz", "fed")
    for i in range(300):
        filler.begin_round(f"filler {i}")
    history._db.execute("VACUUM")
    (pages,) = history._db.execute("PRAGMA page_count").fetchone()
    history._db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(SecureAggregationAborted, match="could not record") as caught:
        game.owners()
    assert caught.value.reason == "history" and "full" in str(caught.value)
    history._db.execute(f"PRAGMA max_page_count={pages * 100}")  # room again
    Relay(game.spec, game.layout).run(game.owners(), game.updates)  # the round id is free
    assert history.counts(game.roster[0]) == {"rounds": 1, "update": 1, "trained": 0}
    history.close()


def test_the_history_grows_by_digests_only(tmp_path):
    path = tmp_path / "history.sqlite3"
    history = SecureHistory(path, max_rounds=2000)
    memory = history.memory("3fa2-91bc-0d4e-77a1", "federated")
    rounds = 2000
    for i in range(rounds):
        round_id = f"federated {'x' * 180} {i}"  # round ids are up to 200 characters
        assert memory.begin_round(round_id)
        assert memory.give_trained(i.to_bytes(32, "big"), round_id) is None
        assert memory.submit((i + rounds).to_bytes(32, "big"), round_id) is None
    with pytest.raises(history_module.SecureHistoryError, match="holds 2000 rounds"):
        memory.begin_round("one more")
    history.close()
    size = path.stat().st_size + sum(p.stat().st_size for p in tmp_path.glob("history.sqlite3-*"))
    print(f"\n{size / rounds:.0f} bytes of file per round ({rounds} rounds: {size / 1e6:.2f} MB)")
    assert size / rounds < 1000  # digests and a 64-character label, not the 200-character id


def test_two_processes_serving_one_home_start_a_round_id_once(tmp_path):
    # two connections to one file (as two processes with the same identity would hold), racing
    path = tmp_path / "history.sqlite3"
    histories = [SecureHistory(path), SecureHistory(path)]
    memories = [h.memory("3fa2-91bc-0d4e-77a1", "federated") for h in histories]
    barrier = threading.Barrier(2)
    answers: list[bool] = []

    def begin(memory) -> None:
        barrier.wait(SECS)
        answers.append(memory.begin_round("federated 1234 round 1"))

    threads = [threading.Thread(target=begin, args=(m,)) for m in memories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECS)
    assert sorted(answers) == [False, True]
    for history in histories:
        history.close()


def test_round_ids_are_per_federation_and_digests_per_identity(tmp_path):
    history = SecureHistory(tmp_path / "history.sqlite3")
    north, south = "3fa2-91bc-0d4e-77a1", "77a1-0d4e-91bc-3fa2"
    first, other = history.memory(north, "Digits"), history.memory(north, "vision")
    assert first.begin_round("round 1") and other.begin_round("round 1")
    assert not history.memory(north, "digits").begin_round(
        "round 1"
    )  # names as the rules: any case
    update = bytes(range(32))
    assert first.submit(update, "round 1") is None
    # the same update in another federation is the same leak: refused, and where it went said
    assert other.submit(update, "round 2") == "round 1 (federation 'digits')"
    assert other.give_trained(update, "round 2") is None  # a trained model's digest: its own kind
    assert history.memory(south, "digits").submit(update, "round 1") is None  # another identity
    history.close()


# ---- the file itself


def allow(owner: sy.OwnerSession) -> None:
    if not owner.store:
        owner.publish(blobs(10, 0), tags=["data"], description="records")
    fl.allow_federated_training(
        owner, "data", model_elements=10, secure_aggregation=True,
        owners=[owner.identity.id, "77a1-0d4e-91bc-3fa2", "91bc-3fa2-77a1-0d4e"],
    )  # fmt: skip


def refused_at_start(path, match: str) -> None:
    owner = sy.OwnerSession(secure_history=path)
    try:
        with pytest.raises(SecureHistoryCorrupt, match=match) as caught:
            allow(owner)
        assert str(path) in str(caught.value)
        assert "starting afresh would forget" in str(caught.value)
        assert owner.requests.handlers == []  # a rule refused adds no handler
        assert owner.secure_aggregation.get("federated") is None
    finally:
        owner.close()


def test_a_file_that_is_not_sqlite_is_refused_at_start_not_reset(tmp_path):
    path = tmp_path / "history.sqlite3"
    garbage = b"not a database, whatever it was" * 100
    path.write_bytes(garbage)
    refused_at_start(path, "cannot be read as SQLite")
    assert path.read_bytes() == garbage  # left as it was


def test_another_programs_database_is_refused_at_start(tmp_path):
    path = tmp_path / "privacy.sqlite3"
    Ledger(path).close()  # the privacy ledger, given by mistake
    refused_at_start(path, r"another program's SQLite database: application id 0, tables budgets")


def test_a_history_of_a_newer_schema_or_with_damaged_rows_is_refused(tmp_path):
    newer = tmp_path / "newer.sqlite3"
    SecureHistory(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=7")
    refused_at_start(newer, "of schema 7; this duet reads 1")

    damaged = tmp_path / "damaged.sqlite3"
    SecureHistory(damaged).close()
    with sqlite3.connect(damaged) as db:  # a row written around the file's own checks
        db.execute("PRAGMA ignore_check_constraints=ON")
        db.execute("INSERT INTO rounds VALUES ('o', 'federated', x'00', 'r', 0)")
    refused_at_start(damaged, r"is damaged \(CHECK constraint failed in rounds\)")

    wrong_type = tmp_path / "wrong_type.sqlite3"
    SecureHistory(wrong_type).close()
    with sqlite3.connect(wrong_type) as db:  # 32 characters of text, not a digest
        db.execute("INSERT INTO rounds VALUES ('o', 'federated', ?, 'r', 0)", ("x" * 32,))
    refused_at_start(wrong_type, "holds 1 rows that are not digests")


def test_the_history_is_append_only(tmp_path):
    path = tmp_path / "history.sqlite3"
    history = SecureHistory(path)
    assert history.memory("o", "f").begin_round("r1")
    history.close()
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM rounds")


def test_the_history_file_can_be_put_elsewhere_and_is_opened_with_the_first_rule(tmp_path):
    path = tmp_path / "elsewhere" / "secagg.sqlite3"
    owner = sy.OwnerSession(secure_history=path)
    try:
        assert not path.exists()  # an owner that takes part in no secure aggregation: no file
        allow(owner)
        assert path.exists()
        with pytest.raises(UsageError, match="in place already"):
            allow(owner)
    finally:
        owner.close()
    with pytest.raises(UsageError, match="closed"):
        owner.secure_aggregation.history  # noqa: B018


def test_launch_duet_passes_secure_history_on_and_refuses_it_beside_owner(tmp_path):
    owner = sy.OwnerSession()
    try:
        with pytest.raises(UsageError, match="secure_history="):
            sy.launch_duet(owner=owner, secure_history=tmp_path / "h.sqlite3", review=False)
    finally:
        owner.close()


def test_a_write_lock_held_at_start_is_a_timeout_not_a_reset(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite3"
    SecureHistory(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DuetTimeout, match="stayed locked"):
            SecureHistory(path, lock_timeout_secs=0.1)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


# ---- over real processes


def owner_process(url: str, shard: int, scientist: str, home: str) -> Process:
    return Process(OWNER, url, str(shard), "3", scientist, "--secure", home=home)


@pytest.mark.timeout(300)
def test_an_owner_process_killed_and_restarted_refuses_a_replayed_round():
    server, url = start_signaling_server()
    scientist = sy.Identity.load_or_create().id
    homes = [tempfile.mkdtemp(prefix="duet-home-") for _ in NAMES]
    processes: dict[str, Process] = {}
    sessions: dict[str, sy.ScientistSession] = {}
    names = ["north", "south", "east"]

    def start(name: str) -> fl.OwnerAddress:
        i = names.index(name)
        process = processes[name] = owner_process(url, i, scientist, homes[i])
        session_id = process.event("event", "ready", 2 * UNIT)["session_id"]
        owner_id = process.event("event", "published", 2 * UNIT)["owner_id"]
        return fl.OwnerAddress(name, session_id, url, owner_id)

    def allow_roster(roster: str, *who: str) -> None:
        for name in who:
            processes[name].send(f"roster {roster}")
        for name in who:
            processes[name].event("event", "allowed", UNIT)

    try:
        addresses = [start(name) for name in names]
        roster = ",".join(a.owner_id for a in addresses)
        allow_roster(roster, *names)
        sessions.update(fl.join_owners(addresses, timeout_secs=2 * UNIT))
        torch.manual_seed(0)
        global_model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
        settings = fl.SecureAggregation(clip=1e4, step_timeout_secs=UNIT / 3)
        first = fl.Federation(
            global_model, sessions, data="digits", training=TRAINING, show="none",
            secure_aggregation=settings, round_timeout_secs=3 * UNIT,
        )  # fmt: skip
        (report,) = first.fit(rounds=1)
        assert report.counted and report.included == names, report.summary()

        processes["north"].stop()  # SIGKILL (its pipes closed): no chance to close anything
        sessions.pop("north").close()
        restarted = start("north")
        assert restarted.owner_id == addresses[0].owner_id  # the same identity
        allow_roster(roster, "north")
        sessions = {"north": fl.join_owners([restarted], timeout_secs=2 * UNIT)["north"],
                    **sessions}  # fmt: skip
        replay = fl.Federation(
            global_model, sessions, data="digits", training=TRAINING, show="none",
            secure_aggregation=settings, round_timeout_secs=3 * UNIT,
        )  # fmt: skip
        replay._run = first._run  # round 1 of that run again, to the restarted owner first
        (again,) = replay.fit(rounds=1)
        print(again.summary())
        assert not again.counted and "(replay)" in again.note, again.summary()
        assert f"owner {restarted.owner_id}: round 'federated {first._run} round 1' was run " \
            "before" in again.note  # fmt: skip
    finally:
        for session in sessions.values():
            session.close()
        for process in processes.values():
            process.stop()
        server.stop()
