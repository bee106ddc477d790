"""Who an owner knows, and by which name it shows a scientist: trust belongs to an owner
identity, only a real confirmation makes a scientist known, and the owner's name for a
scientist wins over the one it claims. In process, over in-memory channels."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
import torch

import duet as sy
from duet.owner.audit import AuditLog
from duet.runtime import run
from duet.sessions.admission import Confirm
from duet.sessions.scientist import ScientistSession, connect_scientist
from duet.transport.memory import memory_pair

WAIT = 10.0


def join(
    owner: sy.OwnerSession,
    identity: sy.Identity,
    *,
    confirm: Confirm = True,
    preapproved: bool = False,
) -> tuple[ScientistSession, Any]:
    """A scientist with ``identity`` knocks; (its session, the owner's outcome: the link or the
    exception that refused it)."""
    scientist = ScientistSession()

    async def both() -> list[Any]:
        a, b = memory_pair()
        return await asyncio.gather(
            owner.admit(a, confirm=confirm, preapproved=preapproved, timeout_secs=WAIT),
            connect_scientist(scientist, b, identity=identity, timeout_secs=WAIT),
            return_exceptions=True,
        )

    outcome = run(both(), timeout_secs=3 * WAIT, what="joining")
    return scientist, outcome[0]


@pytest.fixture
def owners(tmp_path):
    """Owners made with ``make(identity name, **options)``, all sharing one audit database (one
    duet home's), closed at the end."""
    made: list[sy.OwnerSession] = []
    path = tmp_path / "audit.sqlite3"

    def make(who: str, **options: Any) -> sy.OwnerSession:
        identity = sy.Identity.load_or_create(who, name="owner")
        owner = sy.OwnerSession(
            identity=identity, audit=AuditLog(path), max_scientists=10, **options
        )
        made.append(owner)
        return owner

    yield make
    for owner in made:
        owner.close()


def test_a_scientist_one_owner_identity_confirmed_is_a_stranger_to_another(owners):
    sam = sy.Identity.ephemeral("sam")
    lab_a = owners("lab-a")
    _, link = join(lab_a, sam, confirm=sam.id)  # A was told sam's ID
    assert link.id == sam.id
    assert lab_a.scientists.known["id"].tolist() == [sam.id]

    lab_b = owners("lab-b", unknown="refuse")  # same database, another identity
    scientist, refused = join(lab_b, sam)
    assert isinstance(refused, sy.HandshakeError)
    assert "not a scientist this owner knows" in str(refused)
    assert scientist.connection is None or not scientist.connected
    assert lab_b.scientists.known.empty
    again_a = owners("lab-a", unknown="refuse")  # A, restarted: still knows sam
    _, link = join(again_a, sam)
    assert link.id == sam.id
    again_a.scientists.forget(sam.id)  # until A forgets him
    assert again_a.scientists.known.empty


def test_letting_everyone_in_or_a_loopback_preapproval_makes_no_one_known(owners):
    everyone, local = sy.Identity.ephemeral("eve"), sy.Identity.ephemeral("lou")
    lab = owners("lab")
    _, link = join(lab, everyone, confirm=False)  # an accept-everyone node
    assert link.id == everyone.id
    _, link = join(lab, local, preapproved=True)  # proved it read the loopback file
    assert link.id == local.id
    assert lab.scientists.known.empty
    assert lab.audit.known(everyone.id, owner_id=lab.identity.id) is None

    refusing = owners("lab", unknown="refuse")  # the same identity, refusing strangers
    for identity in (everyone, local):
        _, refused = join(refusing, identity)
        assert "not a scientist this owner knows" in str(refused)


def test_a_confirmation_or_a_rule_naming_the_scientist_makes_it_known(owners):
    told, typed, ruled = (sy.Identity.ephemeral(n) for n in ("told", "typed", "ruled"))
    lab = owners("lab")
    join(lab, told, confirm=lambda client_id: client_id == told.id)
    _, refused = join(lab, typed, confirm="0000-0000-0000-0000")  # the owner mistyped it
    assert "does not match the scientist's identity" in str(refused)
    lab.access.allow(ruled.id, name="Rue")
    refusing = owners("lab", unknown="refuse")
    refusing.access.allow(ruled.id, name="Rue")
    join(refusing, ruled)  # let in by the rule that names it, though strangers are refused
    assert set(lab.scientists.known["id"]) == {told.id, ruled.id}
    names = dict(zip(lab.scientists.known["id"], lab.scientists.known["name"], strict=True))
    assert names[ruled.id] == "Rue" and names[told.id] == '"told" (claimed)'


def test_an_old_database_keyed_by_scientist_alone_trusts_nobody_after_the_upgrade(tmp_path):
    path = tmp_path / "audit.sqlite3"
    sam = sy.Identity.ephemeral("sam")
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,
            kind TEXT NOT NULL, scientist TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',
            request TEXT NOT NULL DEFAULT '', object TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE scientists (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL DEFAULT 'scientist', first_seen REAL NOT NULL,
            last_seen REAL NOT NULL);
        """
    )
    old.execute("INSERT INTO scientists VALUES (?, 'sam', 'scientist', 1.0, 2.0)", (sam.id,))
    old.execute("INSERT INTO events (time, kind, scientist) VALUES (1.0, 'connect', ?)", (sam.id,))
    old.commit()
    old.close()

    identity = sy.Identity.load_or_create("lab")
    owner = sy.OwnerSession(identity=identity, audit=AuditLog(path), unknown="refuse")
    try:
        assert owner.audit.known(sam.id, owner_id=identity.id) is None
        _, refused = join(owner, sam)
        assert "not a scientist this owner knows" in str(refused)
        assert [e["kind"] for e in owner.audit.events()][:2] == ["connect", "refused"]
        owner.access.allow(sam.id)
        join(owner, sam)
        assert owner.scientists.known["id"].tolist() == [sam.id]
    finally:
        owner.close()
    reopened = AuditLog(path)  # a second opening finds the new table as it is
    assert reopened.known(sam.id, owner_id=identity.id) is not None
    reopened.close()


def test_the_owners_name_for_a_scientist_wins_over_the_one_it_claims_everywhere(owners):
    ada, stranger = sy.Identity.ephemeral("Mallory"), sy.Identity.ephemeral("Mallory")
    lab = owners("lab")
    lab.publish(torch.arange(3.0), tags=["data"])
    lab.requests.add_handler(tags=["data", "sum"], action="accept")
    lab.access.allow(ada.id, name="Ada")
    sessions = [join(lab, ada)[0], join(lab, stranger, confirm=False)[0]]
    try:
        held_by_them = []
        for session in sessions:
            assert session.store["data"].sum().get(request_block=True, name="total") == 3.0
            held_by_them.append(torch.ones(2).send(session))
            session.sync(timeout_secs=WAIT)
        claimed = '"Mallory" (claimed)'
        assert lab.scientist_name(ada.id) == "Ada"
        assert lab.scientist_name(stranger.id) == claimed
        shown = {ada.id: "Ada", stranger.id: claimed}
        table = lab.scientists.pandas
        assert dict(zip(table["Scientist"], table["Name"], strict=True)) == shown
        requests = lab.requests.pandas
        assert set(zip(requests["Scientist"], requests["Scientist name"], strict=True)) == set(
            shown.items()
        )
        held = lab.store.held()
        assert set(zip(held["Scientist"], held["Scientist name"], strict=True)) == set(
            shown.items()
        )
        for event in lab.audit.events():
            if event["scientist"]:
                assert event["name"] == shown[event["scientist"]], event
    finally:
        for session in sessions:
            session.close()


def test_a_claimed_name_is_quoted_so_it_cannot_pass_for_the_owners_own_words(owners):
    claim = 'Ada" (confirmed)'
    cheeky = sy.Identity.ephemeral(claim)
    lab = owners("lab")
    session, _ = join(lab, cheeky, confirm=False)
    try:
        assert lab.scientist_name(cheeky.id) == json.dumps(claim) + " (claimed)"
        assert lab.scientist_name(cheeky.id) == '"Ada\\" (confirmed)" (claimed)'
    finally:
        session.close()
    nameless = sy.Identity.ephemeral("")
    session, _ = join(lab, nameless, confirm=False)
    try:
        assert lab.scientist_name(nameless.id) == ""
    finally:
        session.close()
