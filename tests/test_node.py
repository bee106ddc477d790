"""The owner as a node: several identified scientists at once, each in its own namespace and
under its own rules, and an audit log of everything decided."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from torch import nn

import duet as sy
from duet.owner.audit import AuditLog
from duet.protocol.messages import Delete, Get, Put


def raw_get(scientist, object_id, **options):
    reply, _ = scientist.client.request(
        lambda rid: Get(rid=rid, id=object_id, **options), timeout_secs=10, what="get"
    )
    return reply


def test_each_scientist_is_known_by_the_id_it_proved(node):
    owner, scientists = node
    ids = {name: s.connection.identity.id for name, s in scientists.items()}
    assert set(owner.links) == set(ids.values())
    table = owner.scientists.pandas
    assert sorted(table["Name"]) == ['"alice" (claimed)', '"bob" (claimed)']  # names they chose
    for scientist in scientists.values():
        assert scientist.owner_id == owner.identity.id


def test_a_scientist_cannot_see_use_get_overwrite_or_delete_anothers_objects(node):
    _owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    secret = torch.tensor([42.0]).send(alice)
    alice.sync(timeout_secs=10)
    guessed = secret.id  # bob learns alice's object id (it is not secret: ids are guessable)
    reply = raw_get(bob, guessed)
    assert reply.status == "error" and "does not exist" in reply.error.message
    used = bob.client.pointer(guessed, "Tensor", {}, owned=False) + 1
    with pytest.raises(sy.UsageError, match="does not exist"):
        used.get(timeout_secs=10)
    bob.client.enqueue(lambda enc: Put(id=guessed, value=enc.encode(torch.zeros(1))))
    bob.client.enqueue(lambda enc: Delete(ids=[guessed]))
    bob.sync(timeout_secs=10)
    assert torch.equal(secret.get(timeout_secs=10), torch.tensor([42.0]))  # untouched, still hers
    assert bob.client.notices[-1].message.startswith("object")  # told nothing of hers
    # the owner's published data is shared: both compute on it (its values stay private)
    for scientist in (alice, bob):
        with pytest.raises(sy.PermissionDenied):
            (scientist.store["shared"] * 2).get(timeout_secs=10)


def test_a_scientist_that_leaves_frees_only_its_own_objects(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    keep = [torch.ones(10).send(bob) for _ in range(5)]
    gone = [torch.ones(10).send(alice) for _ in range(5)]
    bob.sync(timeout_secs=10)
    alice.sync(timeout_secs=10)
    alice_id = alice.connection.identity.id
    left = threading.Event()
    owner.audit.add_listener(lambda e: e["kind"] == "leave" and left.set())
    alice.close()
    assert left.wait(10) and alice_id not in owner.links and len(owner.links) == 1
    assert owner.objects.peer_objects(alice_id) == []
    bob_id = bob.connection.identity.id
    assert len(owner.objects.peer_objects(bob_id)) == 5
    assert torch.equal(keep[0].get(timeout_secs=10), torch.ones(10))
    del gone


def test_access_rules_refuse_before_anything_reaches_the_queue_and_name_the_rule(node):
    owner, scientists = node
    bob = scientists["bob"]
    bob_id = bob.connection.identity.id
    shared = bob.store["shared"]
    owner.access.allow(bob_id, requests=False)  # compute only
    total = shared.sum()
    with pytest.raises(sy.PermissionDenied, match="lets you compute but not ask for releases"):
        total.get(request_block=True, name="please", timeout_secs=10)
    assert len(owner.requests.history) == 0  # never reached the owner's queue
    assert owner.audit.events("refused")[-1]["scientist"] == bob_id
    owner.access.allow(bob_id, tags=["other-data"])  # may compute only on other data
    with pytest.raises(sy.NotAllowed, match="does not let you compute on the owner's object"):
        (shared + 1).get(timeout_secs=10)
    assert "shared" not in str(bob.store.pandas["Tags"].tolist())  # nor see it listed


def test_handlers_can_be_scoped_to_one_scientist(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    owner.requests.add_handler(
        tags=["shared", "sum"], scientist=alice.connection.identity.id, action="accept"
    )
    assert alice.store["shared"].sum().get(request_block=True, name="s") == 6.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        assert bob.store["shared"].sum().get(request_block=True, name="s", timeout_secs=0.2) is None
    table = owner.requests.pandas
    assert set(table["Scientist name"]) == {'"alice" (claimed)', '"bob" (claimed)'}


def test_the_audit_log_holds_requests_decisions_and_releases(tmp_path):
    path = tmp_path / "audit.sqlite3"
    owner = sy.OwnerSession(audit=AuditLog(path), max_scientists=2)
    owner.publish(torch.arange(3.0), tags=["data"])
    owner.requests.add_handler(tags=["data", "sum"], action="accept")
    _, scientist = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("carol"))
    try:
        assert scientist.store["data"].sum().get(request_block=True, name="total") == 3.0
        handle = scientist.store["data"].request(name="everything", reason="why not")
        owner.requests.wait_for_request(timeout_secs=10).deny()
        with pytest.warns(sy.RequestWarning):
            assert handle.wait(timeout_secs=10) is None
    finally:
        scientist.close()
        owner.close()
    # a new process (here: a new connection to the same file) reads what was recorded
    log = AuditLog(path)
    kinds = [e["kind"] for e in log.events()]
    assert kinds.count("request") == 2 and kinds.count("release") == 1
    decisions = log.events("decision")
    assert [d["status"] for d in decisions] == ["accepted", "denied"]
    assert (
        decisions[0]["decided_by"].startswith("handler") and decisions[1]["decided_by"] == "owner"
    )
    release = log.events("release")[0]
    assert len(release["digest"]) == 64 and release["name"] == '"carol" (claimed)'
    # let in without a confirmation (duet_pair's in-process join): the owner does not know her
    assert log.known(scientist.connection.identity.id, owner_id=owner.identity.id) is None


def test_an_identity_is_stable_and_private(tmp_path, monkeypatch):
    monkeypatch.setenv("DUET_HOME", str(tmp_path))
    first = sy.Identity.load_or_create()
    again = sy.Identity.load_or_create()
    assert first.id == again.id and first.path == again.path
    assert (first.path.stat().st_mode & 0o777) == 0o600
    first.path.chmod(0o644)
    with pytest.raises(sy.UsageError, match="can be read by other users"):
        sy.Identity.load_or_create()
    assert sy.Identity.load_or_create("other").id != first.id


def test_a_known_scientist_joins_without_a_prompt_and_an_unknown_one_is_confirmed():
    owner = sy.OwnerSession(max_scientists=5)
    known = sy.Identity.ephemeral("dan")
    owner.audit.remember(known.id, "dan", owner_id=owner.identity.id)
    asked = []

    def confirm(client_id):
        asked.append(client_id)
        return False  # the owner does not recognise this one

    from duet.runtime import run
    from duet.sessions.scientist import ScientistSession, connect_scientist
    from duet.transport.memory import memory_pair

    def join(identity):
        scientist = ScientistSession()

        async def both():
            import asyncio

            a, b = memory_pair()
            return await asyncio.gather(
                owner.admit(a, confirm=confirm, timeout_secs=10),
                connect_scientist(scientist, b, identity=identity, timeout_secs=10),
                return_exceptions=True,
            )

        return scientist, run(both(), timeout_secs=20, what="join")

    try:
        scientist, outcome = join(known)
        assert not any(isinstance(o, Exception) for o in outcome) and asked == []
        # another key presenting the same name is a stranger
        _stranger, outcome = join(sy.Identity.ephemeral("dan"))
        assert isinstance(outcome[0], sy.HandshakeError) and len(asked) == 1
        assert isinstance(outcome[1], sy.HandshakeError)
        assert "refused to serve you" in str(outcome[1])
        owner.access.deny(known.id)
        scientist.close()
        _, outcome = join(known)
        assert "refuses it" in str(outcome[0])
    finally:
        owner.close()


def test_the_owner_sees_what_each_scientist_holds_by_id_and_name(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    mine = torch.ones(3).send(alice)
    derived = alice.store["shared"] * 2  # depends on the owner's data
    his = torch.zeros(5).send(bob)
    alice.sync(timeout_secs=10)
    bob.sync(timeout_secs=10)
    held = owner.store.held()
    assert set(held["Scientist name"]) == {'"alice" (claimed)', '"bob" (claimed)'}
    ids = {name: s.connection.identity.id for name, s in scientists.items()}
    theirs = owner.store.held(scientist=ids["alice"])
    assert set(theirs["Scientist"]) == {ids["alice"]}
    assert set(theirs["Scientist name"]) == {'"alice" (claimed)'}
    rows = {row["Shape"][0]: row for _, row in theirs.iterrows()}
    assert not rows[3]["Owner's data"] and rows[4]["Owner's data"] and rows[4]["Op"] == "__mul__"
    assert mine.id not in set(owner.store.pandas["ID"])  # the published listing is the owner's
    assert derived is not None and his is not None  # held until here


def test_the_owner_finds_what_a_scientist_sent_by_tag_and_each_scientists_apart(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    ids = {name: s.connection.identity.id for name, s in scientists.items()}
    # each lives as long as its pointer does
    sent = [
        torch.tensor([1.0, 2.0]).send(alice, searchable=True, tags=["result"]),
        torch.tensor([7.0]).send(bob, searchable=True, tags=["result"]),
        sy.lib.python.List(["conv1.weight"]).send(bob, searchable=True, tags=["names"]),
        torch.zeros(1).send(alice, tags=["shared"]),  # the owner's tag: never hides its object
    ]
    alice.sync(timeout_secs=10)
    bob.sync(timeout_secs=10)
    assert (
        owner.store["names"].get() == ["conv1.weight"]
        and owner.store["names"].scientist == ids["bob"]
    )
    assert torch.equal(owner.store["shared"].get(), torch.arange(4.0))
    with pytest.raises(KeyError) as ambiguous:
        owner.store["result"]
    said = str(ambiguous.value)
    assert "tag 'result' is on 2 objects scientists sent" in said, said
    assert ids["alice"] in said and ids["bob"] in said and '"alice" (claimed)' in said, said
    assert f"duet.store.sent_by({min(ids.values())!r})['result']" in said, said
    theirs = {name: owner.store.sent_by(i)["result"] for name, i in ids.items()}
    assert torch.equal(theirs["alice"].get(), torch.tensor([1.0, 2.0]))
    assert torch.equal(theirs["bob"].get(delete_obj=False), torch.tensor([7.0]))
    assert theirs["bob"].scientist == ids["bob"] and theirs["bob"].tags == ["result"]
    with pytest.raises(
        KeyError, match=f"no object sent by {ids['alice']} has the id or tag 'names'"
    ):
        owner.store.sent_by(ids["alice"])["names"]
    with pytest.raises(KeyError, match="no published object, and no object has the id or tag 'x'"):
        owner.store["x"]
    del sent[1]  # bob drops his pointer: his object is gone, alice's is the one left
    bob.sync(timeout_secs=10)
    assert torch.equal(owner.store["result"].get(), torch.tensor([1.0, 2.0]))


def test_what_the_owner_gets_of_a_scientists_object_is_a_copy(pair):
    owner, scientist = pair
    weights = torch.tensor([1.0, 2.0]).send(scientist, searchable=True, tags=["weights"])
    scientist.sync(timeout_secs=10)
    found = owner.store["weights"]
    assert (
        found.id.endswith(weights.id)
        and owner.store.sent_by(found.scientist)[weights.id].id == found.id
    )
    copy = found.get()
    copy.add_(10)
    assert torch.equal(weights.get(), torch.tensor([1.0, 2.0]))  # the scientist's is unchanged
    with pytest.raises(sy.UsageError, match="is the scientist's; its pointer keeps it"):
        found.get(delete_obj=True)


def test_the_owner_rebuilds_a_layer_from_the_names_and_weights_a_scientist_sent(pair):
    """The owner's side of PySyft's split-learning demo: the scientist sends a layer's state as
    two searchable lists, the owner loads them into its own copy of the layer."""
    owner, scientist = pair
    layer = nn.Linear(3, 2)
    state = layer.state_dict()
    kept = [
        sy.lib.python.List(list(state)).send(scientist, searchable=True, tags=["conv_base_names"]),
        sy.lib.python.List(list(state.values())).send(
            scientist, searchable=True, tags=["conv_base_weights"]
        ),
    ]
    scientist.sync(timeout_secs=10)
    names = owner.store["conv_base_names"].get()
    weights = owner.store["conv_base_weights"].get()
    rebuilt = nn.Linear(3, 2)
    rebuilt.load_state_dict(dict(zip(names, weights, strict=True)))
    pairs = zip(rebuilt.parameters(), layer.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert len(kept) == 2


def test_wait_served_returns_once_the_expected_scientists_have_come_and_gone():
    """A node in a notebook serves two researchers, then goes on: not before the second has
    come, nor while one is connected."""
    owner = sy.OwnerSession(max_scientists=4)
    served = threading.Event()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            owner.wait_served(2, timeout_secs=60)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        served.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        _, first = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("first"))
        first.close()
        assert not served.wait(0.5), "returned after one scientist of two"
        _, second = sy.duet_pair(owner=owner, identity=sy.Identity.ephemeral("second"))
        assert not served.wait(0.5), "returned while a scientist was connected"
        second.close()
        assert served.wait(30), "did not return once both had left"
        assert not errors, errors
        assert owner.admitted == 2
        with pytest.raises(sy.UsageError, match="at least 1"):
            owner.wait_served(0)
        with pytest.raises(sy.DuetTimeout):
            owner.wait_served(3, timeout_secs=0.2)
    finally:
        waiter.join(30)
        owner.close()
