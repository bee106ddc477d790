"""One contract, every channel: what a user does works the same in memory and over WebRTC."""

from __future__ import annotations

import threading

import pytest
import torch

import duet as sy


def test_publish_and_list(any_pair):
    owner, scientist = any_pair
    torch.arange(4).send(owner, tags=["a"], description="first")
    torch.ones(2).send(owner, pointable=False, tags=["hidden"])
    assert len(scientist.store) == 1
    assert scientist.store.pandas["Description"].tolist() == ["first"]


def test_remote_ops_and_own_values(any_pair):
    _, scientist = any_pair
    x = scientist.torch.arange(6.0).view(2, 3)
    local = torch.arange(6.0).view(2, 3)
    assert torch.equal((x @ x.t()).get(), local @ local.t())


def test_get_accepted_by_a_handler(any_pair):
    owner, scientist = any_pair
    owner.requests.add_handler(name="ok", action="accept")
    ptr = scientist.store[torch.tensor([1.0, 2.0]).send(owner).id]
    assert torch.equal(
        ptr.get(request_block=True, name="ok", timeout_secs=30), torch.tensor([1.0, 2.0])
    )


def test_get_denied_by_the_owner(any_pair):
    owner, scientist = any_pair
    owner.requests.add_handler(name="loss", action="deny")
    ptr = scientist.store[torch.tensor([1.0]).send(owner).id]
    with pytest.warns(sy.RequestWarning, match="denied"):
        assert ptr.get(request_block=True, name="loss", timeout_secs=30) is None


def test_get_accepted_by_hand(any_pair):
    owner, scientist = any_pair
    ptr = scientist.store[torch.tensor([3.0]).send(owner).id]
    handle = ptr.request(name="please", reason="by hand")
    request = owner.requests.wait_for_request(timeout_secs=30)
    assert request.reason == "by hand"
    request.accept()
    assert torch.equal(handle.wait(30), torch.tensor([3.0]))


def test_remote_error_names_the_op(any_pair):
    _, scientist = any_pair
    with pytest.raises(sy.RemoteError, match=r"Tensor\.view"):
        scientist.torch.ones(5).view(2, 2).get()


def test_large_tensor_arrives_intact(any_pair):
    owner, scientist = any_pair
    owner.requests.add_handler(name="big", action="accept")
    big = torch.randn(50_000_000 // 4)
    ptr = scientist.store[big.send(owner).id]
    assert torch.equal(ptr.get(request_block=True, name="big", timeout_secs=120), big)


def test_closing_one_side_is_seen_by_the_other(any_pair):
    owner, scientist = any_pair
    ptr = scientist.store[torch.ones(1).send(owner).id]
    handle = ptr.request(name="never decided")
    assert owner.requests.wait_for_request(timeout_secs=30) is not None
    closer = threading.Thread(target=owner.close)
    closer.start()
    with pytest.raises(sy.ConnectionLost):
        handle.wait(30)
    closer.join(30)
    scientist.wait_closed(timeout_secs=30)
    assert not scientist.connected and not owner.connected
    with pytest.raises(sy.ConnectionLost):
        scientist.torch.ones(1).get()
