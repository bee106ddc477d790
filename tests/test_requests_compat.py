"""The request queue as PySyft-Duet notebooks use it, the scientist's own view of its requests,
and grants: an accepted request lets its scientist get the same, unchanged object again."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

import duet as sy
from duet.protocol.messages import Call, Delete, Get

pytestmark = pytest.mark.filterwarnings("ignore::duet.owner.handlers.HandlerWarning")


def accept(owner, ptr, name="values"):
    """Ask for ``ptr``, accept by hand; returns the owner's request and the value released."""
    handle = ptr.request(name=name, reason="to check")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request is not None
    request.accept()
    return request, handle.wait(10)


def assert_needs_a_new_request(owner, ptr):
    """Nothing is released without asking again, and asking again waits for the owner."""
    with pytest.raises(sy.PermissionDenied):
        ptr.get(timeout_secs=10)
    before = len(owner.requests.history)
    handle = ptr.request(name="again", reason="once more")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request is not None and len(owner.requests.history) == before + 1
    assert handle.status == "pending"
    request.deny()
    with pytest.warns(sy.RequestWarning):
        assert handle.wait(10) is None


def grant_shown(owner, request):
    """The Grant column of the owner's request table, for ``request``."""
    table = owner.requests.pandas
    return table.set_index("Request ID").loc[request.id, "Grant"]


def raw_get(scientist, object_id, **options):
    reply, _ = scientist.client.request(
        lambda rid: Get(rid=rid, id=object_id, **options), timeout_secs=10, what="get"
    )
    return reply


# ---- PySyft-Duet's names on the owner's side
def test_request_description_is_the_reason_the_scientist_gave(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["ages"])
    scientist.store["ages"].sum().request(name="total", reason="mean age of the cohort")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request.request_description == "mean age of the cohort"
    assert request.request_name == "total" and request.request_id == request.id
    assert request.object_tags == ["ages"]
    request.deny()


def test_requests_requests_lists_the_waiting_requests_as_pysyft_did(pair):
    owner, scientist = pair
    torch.ones(2).send(owner, tags=["a"])
    assert owner.requests.requests == []
    data = scientist.store["a"]
    data.sum().request(name="first", reason="")
    data.mean().request(name="second", reason="")
    assert owner.requests.wait_for_request(timeout_secs=10) is not None
    scientist.sync(timeout_secs=10)
    waiting = owner.requests.requests
    assert [r.name for r in waiting] == ["first", "second"]
    waiting[0].accept()
    assert [r.name for r in owner.requests.requests] == ["second"]
    owner.requests.requests[0].deny()
    assert owner.requests.requests == []


def test_handlers_read_as_pysyfts_dicts_and_as_attributes(pair):
    owner, _ = pair
    owner.requests.add_handler(
        name="loss", tags=["train", "mean"], action="deny", timeout_secs=600,
        element_quota=5, print_local=True, log_local=True,
    )  # fmt: skip
    handler = owner.requests.handlers[0]
    assert handler["name"] == "loss" and handler["tags"] == ["train", "mean"]
    assert handler["action"] == "deny" and handler["timeout_secs"] == 600
    assert handler["element_quota"] == 5 and handler["print_local"] is True
    assert handler["log_local"] is True and handler["created_time"] > 0
    assert handler.action == "deny" and handler.tags == ["train", "mean"]  # as before
    as_dict = dict(handler)
    assert as_dict["id"] == handler.id and "tags" in handler and "nothing" not in handler
    assert handler.get("nothing", "default") == "default"
    with pytest.raises(KeyError, match="handlers have no 'nothing'"):
        handler["nothing"]
    owner.requests.add_handler(name="acc", action="accept")
    assert owner.requests.handlers[1]["tags"] == []  # PySyft's handlers always had a list


def test_a_log_local_handler_logs_the_value_it_decides(pair, caplog):
    owner, scientist = pair
    torch.tensor([3.0, 4.0]).send(owner, tags=["v"])
    owner.requests.add_handler(tags=["v", "sum"], action="accept", log_local=True)
    with caplog.at_level(logging.INFO, logger="duet.owner.requests"):
        assert scientist.store["v"].sum().get(request_block=True, name="s", timeout_secs=10) == 7
    assert any("tensor(7.)" in record.getMessage() for record in caplog.records)


def test_remove_handler_by_the_tags_or_name_it_was_added_with(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["ages"])
    requests = owner.requests
    requests.add_handler(tags=["ages", "sum"], action="accept")
    requests.add_handler(name="loss", action="deny")
    requests.add_handler(tags=["ages", "mean"], action="accept")
    assert requests.remove_handler(["sum", "ages"]) == 1  # the same tags, in any order
    assert [h["tags"] for h in requests.handlers] == [[], ["ages", "mean"]]
    assert requests.remove_handler("loss") == 1  # by name
    assert requests.remove_handler("mean") == 1  # by its one tag, as PySyft's handlers[tag]
    assert len(requests.handlers) == 0
    # removed, it decides nothing: the request waits for the owner
    scientist.store["ages"].sum().request(name="total")
    request = requests.wait_for_request(timeout_secs=10)
    assert request is not None and request.status == "pending"
    request.deny()


def test_a_handlers_id_has_pysyfts_value_and_its_string_removes_that_handler(pair):
    owner, _ = pair
    requests = owner.requests
    first = requests.add_handler(tags=["a", "sum"], action="accept")
    second = requests.add_handler(tags=["b", "sum"], action="accept")
    named = requests.add_handler(name=str(second.id), tags=["c", "sum"], action="deny")
    assert requests.handlers[0]["id"] == first.id and requests.handlers[0]["id"].value == first.id
    # the line of PySyft's request-handler notebook (its ids were UIDs)
    id_str = requests.handlers[0]["id"].value.__str__().replace("-", "")
    assert requests.remove_handler(id_str) == 1
    assert [h.id for h in requests.handlers] == [second.id, named.id]
    # PySyft's handlers[key]: an id's string, or the one tag a handler alone has
    assert requests.handlers[str(second.id)] is second and requests.handlers["c"] is named
    with pytest.raises(KeyError, match="no handler has the id or tag 'zzz'"):
        requests.handlers["zzz"]
    assert requests.handlers[0] is second and requests.handlers[:1] == [second]
    # an id's string is that handler, not another one that has it as its name
    assert requests.remove_handler(str(second.id)) == 1
    assert [h.id for h in requests.handlers] == [named.id]
    # an int is an id, never a position (PySyft's remove_handler(0) was the first handler)
    with pytest.raises(sy.UsageError, match="no handler matches 0"):
        requests.remove_handler(0)
    assert requests.remove_handler(named.id) == 1 and len(requests.handlers) == 0


def test_remove_handler_by_keywords_needs_all_of_them_to_match(pair):
    owner, _ = pair
    requests = owner.requests
    requests.add_handler(name="loss", tags=["train"], action="deny")
    requests.add_handler(name="loss", tags=["test"], action="deny")
    assert requests.remove_handler(name="loss", tags=["test"]) == 1
    assert [h["tags"] for h in requests.handlers] == [["train"]]
    assert requests.remove_handler(tags=["train"]) == 1


def test_remove_handler_says_what_it_could_not_find_and_removes_nothing(pair):
    owner, _ = pair
    requests = owner.requests
    requests.add_handler(tags=["a", "sum"], action="accept")
    requests.add_handler(tags=["a", "mean"], action="accept")
    with pytest.raises(sy.UsageError, match=r"no handler matches tags=\['b'\]; the handlers are"):
        requests.remove_handler(["b"])
    with pytest.raises(sy.UsageError, match="no handler matches 'nope'"):
        requests.remove_handler("nope")
    with pytest.raises(sy.UsageError, match="2 handlers have the tag 'a'"):
        requests.remove_handler("a")
    with pytest.raises(sy.UsageError, match="say which handler"):
        requests.remove_handler()
    assert len(requests.handlers) == 2


# ---- the scientist's view of its own requests
def test_the_scientist_sees_its_requests_and_how_each_was_answered(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    accepted = data.sum().request(name="sum", reason="a total")
    owner.requests.wait_for_request(timeout_secs=10).accept()
    assert accepted.wait(10) == 3.0
    denied = data.mean().request(name="mean", reason="an average")
    owner.requests.wait_for_request(timeout_secs=10).deny()
    with pytest.warns(sy.RequestWarning):
        denied.wait(10)
    with pytest.warns(sy.RequestWarning):
        assert data.max().get(request_block=True, name="max", timeout_secs=0.2) is None
    waiting = data.min().request(name="min", reason="the smallest")
    assert owner.requests.wait_for_request(timeout_secs=10).name == "min"
    table = scientist.requests.pandas
    assert list(table.columns)[:5] == ["id", "name", "reason", "object id", "status"]
    assert list(table["name"]) == ["sum", "mean", "max", "min"]
    assert list(table["status"]) == ["accepted", "denied", "timeout", "pending"]
    assert list(table["reason"])[:2] == ["a total", "an average"]
    assert table["object id"].iloc[3] == waiting.pointer.id
    assert [r.name for r in scientist.requests.pending] == ["min"]
    assert scientist.requests[0].status == "accepted" and len(scientist.requests) == 4
    owner.requests[0].accept()
    waiting.wait(10)
    assert scientist.requests[3].status == "accepted"


def test_the_scientists_table_tells_a_release_under_a_grant(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    total = scientist.store["x"].sum()
    request, _ = accept(owner, total)
    assert total.get(request_block=True, name="again", timeout_secs=10) == 3.0
    row = scientist.requests.pandas.iloc[1]
    assert row["status"] == "accepted"
    assert row["note"] == f"released under the grant of request {request.id}"


# ---- grants
def test_an_accepted_object_can_be_got_again_without_a_new_request(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0, 3.0]).send(owner, tags=["x"])
    doubled = scientist.store["x"] * 2
    request, value = accept(owner, doubled)
    assert torch.equal(value, torch.tensor([2.0, 4.0, 6.0]))
    assert torch.equal(doubled.get(timeout_secs=10), value)  # a plain get, as in PySyft
    assert torch.equal(doubled.get(request_block=True, name="again", timeout_secs=10), value)
    assert len(owner.requests.history) == 1  # no new request reached the owner
    assert grant_shown(owner, request) == "active"
    releases = owner.audit.releases()
    assert [r["decided_by"] for r in releases] == ["owner"] + 2 * [f"grant of request {request.id}"]
    assert len({r["digest"] for r in releases}) == 1


@pytest.mark.parametrize(
    "alias",
    [
        lambda y: y,
        lambda y: y[0:2],
        lambda y: y.view(-1),
        lambda y: y.detach(),
        lambda y: y.reshape(3),
    ],
    ids=["itself", "slice", "view", "detach", "reshape"],
)
@pytest.mark.parametrize(
    "write",
    [lambda t: t.add_(1), lambda t: t.mul_(1), lambda t: t.copy_(t.clone())],
    ids=["add_", "mul_by_one", "copy_of_itself"],
)
def test_a_write_in_place_after_accept_needs_a_new_request(pair, alias, write):
    # mul_(1) and copy_ leave the value as it was: the write still ends the grant, so whether
    # a get is served cannot tell the scientist what a private write did to the value
    owner, scientist = pair
    torch.tensor([1.0, 2.0, 3.0]).send(owner, tags=["x"])
    doubled = scientist.store["x"] * 2
    request, _ = accept(owner, doubled)
    write(alias(doubled))
    assert_needs_a_new_request(owner, doubled)
    assert grant_shown(owner, request) == "stale"


def test_a_write_through_an_alias_taken_before_the_request_ends_the_grant(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0, 3.0]).send(owner, tags=["x"])
    doubled = scientist.store["x"] * 2
    head = doubled[0:1]
    accept(owner, doubled)
    head[0] = 5.0
    assert_needs_a_new_request(owner, doubled)


def test_a_backward_into_an_accepted_leaf_ends_its_grant(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    weights = scientist.store["x"].clone().detach().requires_grad_(True)
    accept(owner, weights)
    (weights * 3).sum().backward()
    assert_needs_a_new_request(owner, weights)


def test_the_owners_own_write_ends_a_grant(pair):
    owner, scientist = pair
    entry = torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    accept(owner, data)
    assert torch.equal(data.get(timeout_secs=10), torch.tensor([1.0, 2.0]))
    entry.value.add_(10)  # the owner changes its data: the scientist reviewed the old one
    assert_needs_a_new_request(owner, data)


def test_the_grant_does_not_extend_to_objects_derived_from_it(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    accept(owner, data)
    for derived in (data.clone(), data * 1, data[0:1], data.detach()):
        with pytest.raises(sy.PermissionDenied):
            derived.get(timeout_secs=10)
    assert torch.equal(data.get(timeout_secs=10), torch.tensor([1.0, 2.0]))


def test_an_object_made_again_under_a_granted_id_is_not_granted(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    doubled = data * 2
    accept(owner, doubled)
    reused = doubled.id  # deleted, then a new private object (same value) under the same id
    scientist.client.enqueue(lambda enc: Delete(ids=[reused]))
    scientist.client.enqueue(
        lambda enc: Call(
            op="__mul__", target=data.id, args=[enc.encode(2)], kwargs={}, result=reused
        )  # fmt: skip
    )
    scientist.sync(timeout_secs=10)
    reply = raw_get(scientist, reused)
    assert reply.status == "error" and reply.error.code == sy.PermissionDenied.code


def test_another_scientist_never_gets_through_a_grant(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    shared = alice.store["shared"]
    accept(owner, shared)  # the owner lets alice have its published tensor
    assert torch.equal(shared.get(timeout_secs=10), torch.arange(4.0))
    with pytest.raises(sy.PermissionDenied):
        bob.store["shared"].get(timeout_secs=10)
    assert_needs_a_new_request(owner, bob.store["shared"])
    # nor through alice's grant on an object of hers whose id bob learned
    doubled = shared * 2
    accept(owner, doubled)
    reply = raw_get(bob, doubled.id, request=True, name="hers")
    assert reply.status == "error" and "does not exist" in reply.error.message
    assert torch.equal(doubled.get(timeout_secs=10), torch.arange(4.0) * 2)  # still hers


def test_a_revoked_grant_needs_a_new_request(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    request, _ = accept(owner, data)
    assert request.revoke() is True
    assert request.revoke() is False  # ended already
    assert grant_shown(owner, request) == "revoked"
    assert_needs_a_new_request(owner, data)
    denied = owner.requests.history[-1]
    with pytest.raises(sy.UsageError, match="left no grant to revoke"):
        denied.revoke()


def test_revoke_grants_ends_one_scientists_grants_only(node):
    owner, scientists = node
    alice, bob = scientists["alice"], scientists["bob"]
    alices, bobs = alice.store["shared"], bob.store["shared"]
    accept(owner, alices)
    accept(owner, bobs)
    assert len(owner.requests.grants) == 2
    assert owner.requests.revoke_grants(scientist=alice.connection.identity.id) == 1
    assert torch.equal(bobs.get(timeout_secs=10), torch.arange(4.0))
    with pytest.raises(sy.PermissionDenied):
        alices.get(timeout_secs=10)
    assert owner.requests.revoke_grants() == 1
    with pytest.raises(sy.PermissionDenied):
        bobs.get(timeout_secs=10)


def test_a_scientist_that_leaves_leaves_no_grant(pair):
    owner, scientist = pair
    torch.tensor([1.0]).send(owner, tags=["x"])
    request, _ = accept(owner, scientist.store["x"])
    scientist.close()
    owner.wait_closed(timeout_secs=10)
    assert request.grant_state == "stale" and owner.requests.grants == []


def test_a_denied_request_leaves_no_grant(pair):
    owner, scientist = pair
    torch.tensor([1.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    handle = data.request(name="x")
    owner.requests.wait_for_request(timeout_secs=10).deny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        handle.wait(10)
    assert owner.requests.pandas.iloc[0]["Grant"] == ""
    with pytest.raises(sy.PermissionDenied):
        data.get(timeout_secs=10)


def test_a_write_that_leaves_a_list_as_it_was_still_ends_its_grant(pair):
    # no tensor version moves and the value is the same: the executor's record of the write
    # is what ends the grant (else whether a later get is served could tell what a write did)
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    items = scientist.store["x"].tolist()
    accept(owner, items)
    assert items.get(timeout_secs=10) == [1.0, 2.0]
    items.append(3.0)
    items.pop()
    assert_needs_a_new_request(owner, items)


def test_a_handlers_accept_leaves_no_grant_so_removing_the_handler_stops_releases(pair):
    owner, scientist = pair
    torch.tensor([1.0, 2.0]).send(owner, tags=["x"])
    handler = owner.requests.add_handler(tags=["x", "sum"], action="accept")
    total = scientist.store["x"].sum()
    assert total.get(request_block=True, name="sum", timeout_secs=10) == 3.0
    assert owner.requests.history[0].grant_state == ""
    owner.requests.remove_handler(handler)
    assert_needs_a_new_request(owner, total)


def test_whether_a_private_op_failed_does_not_show_through_a_grant(pair):
    # a write with a privately failed input does not run; had the input not failed it would
    # have written: either way the grant ends, so a served get cannot tell which happened
    owner, scientist = pair
    torch.tensor([1.0, 2.0, 3.0]).send(owner, tags=["x"])
    data = scientist.store["x"]
    doubled = data * 2
    accept(owner, doubled)
    failed = data.view(2, 2)  # 3 elements: fails, and why is private
    doubled.add_(failed)
    assert_needs_a_new_request(owner, doubled)
