"""The owner's side: publishing, the store listing, the request queue and its handlers."""

from __future__ import annotations

import threading

import pytest
import torch

import duet as sy

# these tests are about how handlers match names; the warning an accept handler keyed only by a
# name gives is tested in test_release_boundary.py
pytestmark = pytest.mark.filterwarnings("ignore::duet.owner.handlers.HandlerWarning")


def test_published_tensor_is_listed_with_its_metadata(pair):
    owner, scientist = pair
    torch.arange(10).send(owner, pointable=True, tags=["ages"], description="ages of patients")
    torch.zeros(3).send(owner, pointable=False, tags=["secret"], description="hidden")
    table = owner.store.pandas
    assert list(table.columns) == ["ID", "Tags", "Description", "Type", "Shape", "Size"]
    assert len(owner.store) == 2 and set(table["Description"]) == {"ages of patients", "hidden"}
    assert owner.store["ages"].description == "ages of patients"
    remote = scientist.store.pandas
    assert list(remote["Tags"]) == [["ages"]] and list(remote["Shape"]) == [[10]]
    assert len(scientist.store) == 1


def test_scientist_store_lookup_by_index_tag_and_id(pair):
    owner, scientist = pair
    entry = torch.ones(2).send(owner, tags=["a"])
    assert scientist.store[0].id == entry.id
    assert scientist.store["a"].id == entry.id
    assert scientist.store[entry.id].id == entry.id
    assert [p.id for p in scientist.store] == [entry.id]


def test_a_tag_matching_two_objects_is_an_error_naming_both(pair):
    owner, scientist = pair
    first = torch.ones(1).send(owner, tags=["dup"], description="first")
    second = torch.ones(1).send(owner, tags=["dup"], description="second")
    with pytest.raises(sy.UsageError) as info:
        scientist.store["dup"]
    assert first.id in str(info.value) and second.id in str(info.value)
    with pytest.raises(sy.UsageError, match="no object"):
        scientist.store["nothing"]


def test_request_waits_for_the_owner_and_accept_by_hand_releases_it(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.tensor([4.0, 5.0]).send(owner, tags=["x"]).id]
    handle = ptr.request(name="x values", reason="to check")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request is not None and handle.status == "pending"
    table = owner.requests.pandas
    for column in [
        "Request ID",
        "Name",
        "Reason",
        "Object ID",
        "Object type",
        "Tags",
        "Status",
        "Arrival time",
    ]:
        assert column in table.columns
    row = table.iloc[0]
    assert (row["Name"], row["Reason"], row["Status"], row["Tags"]) == (
        "x values",
        "to check",
        "pending",
        ["x"],
    )
    owner.requests[0].accept()
    assert torch.equal(handle.wait(10), torch.tensor([4.0, 5.0]))
    assert handle.status == "accepted"
    assert owner.requests.pandas.iloc[0]["Status"] == "accepted" and len(owner.requests) == 0


def test_deny_by_request_id_returns_none_with_a_warning(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(3).send(owner).id]
    result = {}

    def ask():
        with pytest.warns(sy.RequestWarning, match="denied"):
            result["value"] = ptr.get(request_block=True, name="all", reason="r", timeout_secs=20)

    thread = threading.Thread(target=ask)
    thread.start()
    request = owner.requests.wait_for_request(timeout_secs=10)
    owner.requests[request.id].deny()
    thread.join(20)
    assert not thread.is_alive() and result == {"value": None}
    assert torch.equal(owner.store[0].value, torch.ones(3))


def test_unanswered_request_times_out_and_returns_none(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(1).send(owner).id]
    with pytest.warns(sy.RequestWarning, match="timed out"):
        assert ptr.get(request_block=True, name="slow", timeout_secs=0.2) is None
    assert owner.requests.history[0].status is sy.RequestStatus.TIMEOUT


def test_handler_name_match_is_trimmed_and_case_insensitive(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(2).send(owner).id]
    owner.requests.add_handler(name="  Loss ", action="accept")
    assert torch.equal(ptr.get(request_block=True, name="LOSS", timeout_secs=10), torch.ones(2))
    assert owner.requests.history[0].decided_by.startswith("handler")


def test_handlers_first_match_wins(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(2).send(owner).id]
    owner.requests.add_handler(name="loss", action="deny")
    owner.requests.add_handler(action="accept")
    with pytest.warns(sy.RequestWarning):
        assert ptr.get(request_block=True, name="loss", timeout_secs=10) is None
    assert ptr.get(request_block=True, name="other", timeout_secs=10) is not None


def test_handler_tags_match_the_owners_tags_not_the_scientists(pair):
    owner, scientist = pair
    owner.requests.add_handler(tags=["public"], action="accept")
    public = scientist.store[torch.ones(2).send(owner, tags=["public"]).id]
    assert torch.equal(
        (public * 3).get(request_block=True, name="x", timeout_secs=10), torch.full((2,), 3.0)
    )
    private = scientist.store[torch.ones(2).send(owner, tags=["private"]).id]
    mine = torch.zeros(2).send(
        scientist, tags=["public"]
    )  # the scientist's claim counts for nothing
    handle = (private + mine).request(name="x")
    request = owner.requests.wait_for_request(timeout_secs=10)
    assert request.tags == ["private"] and handle.status == "pending"
    request.deny()
    with pytest.warns(sy.RequestWarning):
        handle.wait(10)


def test_print_local_shows_the_value_on_the_owner_side(pair, capsys):
    owner, scientist = pair
    owner.requests.add_handler(name="loss", action="deny", print_local=True)
    ptr = scientist.store[torch.tensor([1.5]).send(owner).id]
    with pytest.warns(sy.RequestWarning):
        ptr.sum().item().get(request_block=True, name="loss", timeout_secs=10)
    assert "1.5" in capsys.readouterr().out


def test_element_quota_releases_until_spent_then_denies(pair):
    owner, scientist = pair
    owner.requests.add_handler(action="accept", element_quota=5)
    ptr = scientist.store[torch.arange(3.0).send(owner).id]
    assert ptr.get(request_block=True, name="a", timeout_secs=10) is not None
    with pytest.warns(sy.RequestWarning):
        assert ptr.get(request_block=True, name="b", timeout_secs=10) is None
    assert (
        ptr.sum().get(request_block=True, name="c", timeout_secs=10) is not None
    )  # 1 element: 4 of 5


def test_expired_handler_no_longer_decides(pair):
    owner, scientist = pair
    owner.requests.add_handler(action="accept", timeout_secs=0)
    assert len(owner.requests.handlers) == 0
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="x")
    assert owner.requests.wait_for_request(timeout_secs=10) is not None
    assert handle.status == "pending"
    owner.requests[0].accept()
    assert handle.wait(10) is not None


def test_handlers_can_be_listed_removed_and_cleared(pair):
    owner, _ = pair
    first = owner.requests.add_handler(name="a", action="deny")
    owner.requests.add_handler(name="b")
    owner.requests.add_handler(name="c")
    table = owner.requests.handlers.pandas
    assert list(table["Name"]) == ["a", "b", "c"] and list(table["Action"]) == [
        "deny",
        "accept",
        "accept",
    ]
    owner.requests.remove_handler(first)
    owner.requests.remove_handler("b")
    assert [h.name for h in owner.requests.handlers] == ["c"]
    owner.requests.clear_handlers()
    assert len(owner.requests.handlers) == 0
    with pytest.raises(sy.UsageError, match="action must be"):
        owner.requests.add_handler(action="maybe")


def test_deciding_twice_is_an_error(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="x")
    request = owner.requests.wait_for_request(timeout_secs=10)
    request.accept()
    handle.wait(10)
    with pytest.raises(sy.UsageError, match="already accepted"):
        request.deny()


def test_a_handler_added_later_decides_requests_already_waiting(pair):
    owner, scientist = pair
    ptr = scientist.store[torch.tensor([2.0]).send(owner).id]
    handle = ptr.request(name="cuda_is_available")
    assert owner.requests.wait_for_request(timeout_secs=10) is not None
    owner.requests.add_handler(name="something else", action="deny")
    assert handle.status == "pending"
    owner.requests.add_handler(name="cuda_is_available", action="accept", print_local=True)
    assert torch.equal(handle.wait(10), torch.tensor([2.0]))
    assert owner.requests.history[0].decided_by == "handler 2"


def test_a_model_trained_on_tagged_data_matches_a_handler_for_those_tags(pair):
    owner, scientist = pair
    owner.requests.add_handler(tags=["cohort-a"], action="accept")
    features = scientist.store[torch.randn(8, 3).send(owner, tags=["cohort-a"]).id]
    model = torch.nn.Linear(3, 1).send(scientist)
    optimizer = scientist.torch.optim.SGD(model.parameters(), lr=0.1)
    model(features).sum().backward()
    optimizer.step()
    trained = model.get(request_block=True, name="model_download", timeout_secs=10)
    assert isinstance(trained, torch.nn.Linear)
    request = owner.requests.history[-1]
    assert request.tags == ["cohort-a"] and request.decided_by == "handler 1"
