"""A hostile scientist against a real owner process with small limits: each attack is refused with
a clear error, the owner's memory stays within the scientist's quota plus a fixed margin, its
data stays intact, and it goes on serving.

The owner allows 64 MiB per account (the scientist's own values, and values that depend on the
owner's data: two accounts of 64 MiB) and 200 objects.
"""

from __future__ import annotations

import gc
import os

import pytest
import torch

import duet as sy
from duet.protocol.messages import Call, DefinePlan

from .processes import UNIT, Process, start_signaling_server

QUOTA = 64 * 1024**2
OBJECTS = 200
MARGIN = 96 * 1024**2  # allocator slack, frames in flight, interpreter noise
OWNER = os.path.join(os.path.dirname(__file__), "peers", "bounded_owner.py")


class Owner:
    def __init__(self) -> None:
        self.server, url = start_signaling_server()
        # large blocks straight from the OS and back: resident memory then shows what is live
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"
        try:
            self.process = Process(OWNER, url, str(QUOTA), str(OBJECTS), stdin=True)
        finally:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        owner_id = self.process.line(r'owner_id="([0-9a-f-]+)"').group(1)
        session_id = self.process.event("event", "ready")["session_id"]
        self.scientist = sy.join_duet(session_id, url, owner_id=owner_id)
        self.baseline = self.process.event("event", "connected")["VmRSS"]

    def memory(self) -> dict:
        self.process.send("rss")
        return self.process.event("event", "rss")

    def stop(self) -> None:
        self.scientist.close()
        self.process.send("quit")
        self.process.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def owner():
    started = Owner()
    yield started
    started.stop()


def still_serving(owner: Owner) -> None:
    """The owner answers, its data is intact, and its memory is within the bound."""
    scientist = owner.scientist
    gc.collect()
    scientist.sync(timeout_secs=UNIT)
    assert torch.equal(
        (torch.ones(2).send(scientist) + 1).get(timeout_secs=UNIT), torch.full((2,), 2.0)
    )
    assert (
        scientist.store["secret"].len().get(request_block=True, name="n", timeout_secs=UNIT) == 1000
    )
    state = owner.memory()
    assert state["intact"] and state["connected"]
    peak = state["VmHWM"] - owner.baseline
    assert peak <= 2 * QUOTA + MARGIN, f"the owner grew by {peak / 2**20:.0f} MiB"


def refused(ptr, error=sy.QuotaExceeded, match=None):
    with pytest.raises(error, match=match):
        ptr.get(timeout_secs=UNIT)
    return True


def test_a_huge_allocation_is_refused_before_it_is_made(owner):
    rt = owner.scientist.torch
    assert refused(rt.zeros(400_000_000), match="would need about 1,600,000,000 bytes")
    assert refused(rt.ones(20_000, 20_000))
    assert refused(rt.randn(10).repeat(10_000_000))
    assert refused(rt.nn.Linear(100_000, 100_000))
    still_serving(owner)


def test_sizes_given_as_tensors_are_refused_before_they_are_made(owner):
    scientist = owner.scientist
    rt = scientist.torch
    end = torch.tensor(10**8).send(scientist)  # a 0-dim tensor where torch takes a number
    assert refused(rt.arange(end), match="would need about 800,000,000 bytes")
    assert refused(rt.zeros((end, 4)))
    assert refused(rt.linspace(0, 1, end))
    assert refused(torch.ones(4).send(scientist).repeat(end))
    assert refused(rt.nn.Linear(end, end))
    # computed on the owner's side from its data: the refusal is private, nothing is made
    private_end = scientist.store["secret"].sum().long() * 100  # 49,950,000
    assert refused(rt.arange(private_end), sy.PermissionDenied)
    assert refused(rt.ones(private_end, 2), sy.PermissionDenied)
    still_serving(owner)


def test_a_send_larger_than_the_quota_is_refused(owner):
    big = torch.zeros(QUOTA // 4 + 1000)
    with pytest.raises(sy.QuotaExceeded):
        big.send(owner.scientist).get(timeout_secs=UNIT)
    still_serving(owner)


def test_nested_containers_count(owner):
    python = owner.scientist.python
    outer = python.List([])
    inner = python.List([0.5] * 20_000)
    rounds = [outer.extend(inner) for _ in range(200)]  # each puts 20,000 more floats in
    with pytest.raises(sy.QuotaExceeded):
        rounds[-1].get(timeout_secs=UNIT)
    assert owner.scientist.client.notices  # the first refusal was told at once
    del outer, inner, rounds
    still_serving(owner)


def test_a_doubling_list_is_stopped(owner):
    doubling = owner.scientist.python.List([1.5] * 1000)
    with pytest.raises(sy.QuotaExceeded):
        for _ in range(30):
            doubling += doubling
        doubling.get(timeout_secs=UNIT)
    del doubling
    still_serving(owner)


def test_tolist_of_a_large_tensor_is_refused(owner):
    rt = owner.scientist.torch
    values = rt.zeros(5_000_000)  # 20 MB as a tensor, 160 MB as Python floats
    assert refused(values.tolist())
    del values
    still_serving(owner)


def test_loaders_and_their_iterators_count(owner):
    rt = owner.scientist.torch
    data = rt.zeros(2_000_000, 1)
    dataset = rt.utils.data.TensorDataset(data)
    passes = []
    with pytest.raises(sy.QuotaExceeded):
        for _ in range(40):  # each shuffled pass keeps 2,000,000 indices (16 MB)
            loader = rt.utils.data.DataLoader(dataset, batch_size=1000, shuffle=True)
            passes.append(iter(loader))
            next(passes[-1]).get(timeout_secs=UNIT)
    del passes, dataset, data
    still_serving(owner)


def test_an_autograd_graph_held_by_one_pointer_counts(owner):
    rt = owner.scientist.torch
    w = rt.ones(1_000_000, requires_grad=True)
    x = w
    with pytest.raises(sy.QuotaExceeded):
        for _ in range(60):  # every step keeps a 4 MB tensor alive inside the graph
            x = x * w
        x.get(timeout_secs=UNIT)
    del x, w
    still_serving(owner)


def test_failures_and_objects_are_bounded(owner):
    scientist = owner.scientist
    mine = torch.zeros(1).send(scientist)
    failures = [mine[torch.tensor([7]).send(scientist)] for _ in range(OBJECTS * 2)]
    with pytest.raises(sy.QuotaExceeded, match=f"{OBJECTS} objects"):
        failures[-1].get(timeout_secs=UNIT)
    del failures, mine
    still_serving(owner)


def test_plans_count(owner):
    scientist = owner.scientist
    client = scientist.client
    calls = [
        Call(op="torch.zeros", args=[1], result=f"t{i}") for i in range(10_000)
    ]  # a plan of 10,000 calls: about 5 MB as the owner keeps it
    client.notices.clear()
    for n in range(40):
        client.enqueue(lambda enc, n=n: DefinePlan(id=f"p{n}", inputs=[], outputs=[], calls=calls))
        scientist.sync(timeout_secs=UNIT)
    assert any("this plan would need" in notice.message for notice in client.notices)
    still_serving(owner)


def test_pending_requests_are_capped(owner):
    scientist = owner.scientist
    secret = scientist.store["secret"]
    handles = [secret.request(name="please", timeout_secs=120) for _ in range(1100)]
    with pytest.raises(sy.QuotaExceeded, match="requests waiting"):
        handles[-1].wait(timeout_secs=UNIT)
    del handles
    still_serving(owner)


def test_python_numbers_and_strings_cannot_freeze_the_owner(owner):
    python = owner.scientist.python
    assert refused(python.Int(3) ** python.Int(30_000_000), sy.RemoteError, "at most 65,536 bits")
    assert refused(python.String("ab") * python.Int(10**9), sy.RemoteError, "characters")
    big = python.Int(2) ** python.Int(60_000)
    assert refused(big * big, sy.RemoteError, "bits")
    still_serving(owner)


def test_a_long_chain_and_backward_over_owner_data_does_not_crash_the_owner(owner):
    scientist = owner.scientist
    w = torch.ones(1, requires_grad=True).send(scientist)
    x = w * scientist.store["secret"][0:1]
    for step in range(50_000):
        x = x + 1
        if step % 100 == 0:  # let dropped intermediates go (the owner allows 200 objects)
            scientist.sync(timeout_secs=UNIT)
    x.backward()
    with pytest.raises(sy.PermissionDenied):
        w.grad.get(timeout_secs=UNIT)
    del x, w
    still_serving(owner)
