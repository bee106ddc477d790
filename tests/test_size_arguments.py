"""Sizes given in any form torch takes are counted before anything is allocated.

A hostile scientist hands the owner a size that is not a plain int: a 0-dim tensor it sent, one
computed on the owner's side from the owner's data, a numpy integer, a list or tuple holding
them. Each is read as torch reads it, so the op is refused by the quota before it runs; the op's
implementation is replaced by one that records being called, so a refusal that comes too late
(after allocating) fails the test without allocating anything.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import duet as sy
from duet.owner.quota import PeerQuota
from duet.protocol import allowlist

QUOTA = 64 * 1024**2
GET_SECS = 30


@pytest.fixture
def duet():
    owner, scientist = sy.duet_pair(max_bytes=QUOTA)
    owner.publish(torch.full((10,), 1e8), tags=["counts"], description="ten counts of 1e8")
    yield owner, scientist
    scientist.close()
    owner.close()


@pytest.fixture
def ran(monkeypatch):
    """``ran.guard(table, name)`` replaces an op's implementation by one that records its path
    and allocates nothing: an op refused before it runs leaves ``ran`` empty."""

    class Ran(list):
        def guard(self, table: dict, name: str) -> None:
            op = table[name]

            def record(*args, **kwargs):
                self.append(op.path)
                raise AssertionError(f"{op.path} ran: it should have been refused before")

            monkeypatch.setitem(table, name, dataclasses.replace(op, impl=record))

    return Ran()


def quota_of(owner) -> PeerQuota:
    """The one scientist's quota: what it makes the owner hold."""
    (quota,) = owner.objects.quotas.values()
    return quota


def owner_entry(owner, ptr):
    for entry in list(owner.objects._objects.values()):
        if entry.id == ptr.id or entry.id.endswith(":" + ptr.id):
            return entry
    raise AssertionError(f"the owner holds no {ptr.id}")


def sent(scientist, value):
    """A value the scientist stores on the owner's side: a pointer to it."""
    return torch.tensor(value).send(scientist)


F, T, D, M = (
    allowlist.FUNCTIONS,
    allowlist.TABLES["Tensor"],
    allowlist.TABLES["Distribution"],
    allowlist.TABLES["Module"],
)
# (what runs, the op that must not run, how the scientist asks for it)
ATTACKS = {
    "arange-end": (F, "torch.arange", lambda rt, s: rt.arange(sent(s, 10**9))),
    "arange-float-end": (F, "torch.arange", lambda rt, s: rt.arange(sent(s, 1e9))),
    "arange-start-end": (F, "torch.arange", lambda rt, s: rt.arange(0, sent(s, 10**9))),
    "arange-end-keyword": (F, "torch.arange", lambda rt, s: rt.arange(end=sent(s, 10**9))),
    "arange-step": (F, "torch.arange", lambda rt, s: rt.arange(0, 1, sent(s, 1e-9))),
    "arange-step-keyword": (F, "torch.arange", lambda rt, s: rt.arange(0.0, 1.0, step=sent(s, 1e-9))),
    "zeros-0dim": (F, "torch.zeros", lambda rt, s: rt.zeros(sent(s, 10**9))),
    "zeros-1-element": (F, "torch.zeros", lambda rt, s: rt.zeros(sent(s, [10**9]))),
    "zeros-two": (F, "torch.zeros", lambda rt, s: rt.zeros(sent(s, 10**5), sent(s, 10**5))),
    "ones-tuple": (F, "torch.ones", lambda rt, s: rt.ones((sent(s, 10**5), 10**5))),
    "rand-numpy": (F, "torch.rand", lambda rt, s: rt.rand((np.int64(10**5), sent(s, 10**5)))),
    "randn-size-keyword": (F, "torch.randn", lambda rt, s: rt.randn(size=(sent(s, 10**9),))),
    "full": (F, "torch.full", lambda rt, s: rt.full((sent(s, 10**5), 10**5), 0.5)),
    "full-keywords": (F, "torch.full", lambda rt, s: rt.full(size=[sent(s, 10**9)], fill_value=1)),
    "randint": (F, "torch.randint", lambda rt, s: rt.randint(10, (sent(s, 10**9),))),
    "randint-low-high": (F, "torch.randint", lambda rt, s: rt.randint(0, 9, [sent(s, 10**9)])),
    "randint-size-keyword": (
        F, "torch.randint", lambda rt, s: rt.randint(0, 9, size=(10**5, sent(s, 10**5)))
    ),
    "linspace": (F, "torch.linspace", lambda rt, s: rt.linspace(0, 1, sent(s, 10**9))),
    "linspace-keyword": (F, "torch.linspace", lambda rt, s: rt.linspace(0, 1, steps=sent(s, 10**9))),
    "eye": (F, "torch.eye", lambda rt, s: rt.eye(sent(s, 10**5))),
    "eye-columns": (F, "torch.eye", lambda rt, s: rt.eye(2, sent(s, 10**9))),
    "eye-keywords": (F, "torch.eye", lambda rt, s: rt.eye(n=sent(s, 10**5), m=sent(s, 10**5))),
    "repeat": (T, "repeat", lambda rt, s: torch.ones(4).send(s).repeat(sent(s, 10**9))),
    "repeat-tuple": (
        T, "repeat", lambda rt, s: torch.ones(4).send(s).repeat((sent(s, 10**5), 10**5))
    ),
    "repeat-two": (
        T, "repeat", lambda rt, s: torch.ones(4).send(s).repeat(sent(s, 10**5), sent(s, 10**5))
    ),
    "Linear": (F, "torch.nn.Linear", lambda rt, s: rt.nn.Linear(sent(s, 10**5), sent(s, 10**5))),
    "Embedding": (
        F, "torch.nn.Embedding", lambda rt, s: rt.nn.Embedding(sent(s, 10**5), sent(s, 10**5))
    ),
    "Conv2d": (
        F, "torch.nn.Conv2d",
        lambda rt, s: rt.nn.Conv2d(sent(s, 100), sent(s, 10**4), (sent(s, 30), sent(s, 30))),
    ),
    "Conv2d-kernel-tensor": (
        F, "torch.nn.Conv2d", lambda rt, s: rt.nn.Conv2d(100, 10**4, sent(s, [30, 30]))
    ),
    "BatchNorm1d": (F, "torch.nn.BatchNorm1d", lambda rt, s: rt.nn.BatchNorm1d(sent(s, 10**9))),
    "LayerNorm": (
        F, "torch.nn.LayerNorm", lambda rt, s: rt.nn.LayerNorm((sent(s, 10**5), sent(s, 10**5)))
    ),
    "PReLU": (F, "torch.nn.PReLU", lambda rt, s: rt.nn.PReLU(sent(s, 10**9))),
    "LSTMCell": (
        F, "torch.nn.LSTMCell", lambda rt, s: rt.nn.LSTMCell(sent(s, 10**4), sent(s, 10**4))
    ),
    "LSTM-layers": (
        F, "torch.nn.LSTM", lambda rt, s: rt.nn.LSTM(100, 100, num_layers=sent(s, 10**4))
    ),
    "sample": (
        D, "sample", lambda rt, s: rt.distributions.Normal(0.0, 1.0).sample((sent(s, 10**9),))
    ),
    "sample-1-element": (
        D, "sample", lambda rt, s: rt.distributions.Normal(0.0, 1.0).sample(sent(s, [10**9]))
    ),
    "forward-stride": (
        M, "__call__",
        lambda rt, s: rt.nn.ConvTranspose2d(1, 1, 1, stride=(sent(s, 10**5), sent(s, 10**5)))(
            torch.ones(1, 1, 2, 2).send(s)
        ),
    ),
    "forward-output-size": (
        M, "__call__",
        lambda rt, s: rt.nn.AdaptiveAvgPool2d((sent(s, 10**5), sent(s, 10**5)))(
            torch.ones(1, 1, 2, 2).send(s)
        ),
    ),
    "forward-features": (
        M, "__call__",
        lambda rt, s: rt.nn.Linear(1, sent(s, 10**5))(torch.ones(10**4, 1).send(s)),
    ),
}  # fmt: skip


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_size_given_as_tensor_numpy_or_nested_is_refused_before_it_is_made(duet, ran, attack):
    owner, scientist = duet
    table, name, ask = ATTACKS[attack]
    ran.guard(table, name)
    result = ask(scientist.torch, scientist)
    with pytest.raises(sy.QuotaExceeded, match=r"would need about [\d,]+ bytes"):
        result.get(timeout_secs=GET_SECS)
    assert ran == []
    assert quota_of(owner).bytes_used < 2**20  # holds the small inputs, nothing large


def test_the_955_mb_range_is_refused_before_the_owner_allocates(duet, ran):
    owner, scientist = duet
    ran.guard(allowlist.FUNCTIONS, "torch.arange")
    end = torch.tensor(10**9).send(scientist)  # a 0-dim tensor: the range's end
    with pytest.raises(sy.QuotaExceeded, match="would need about 8,000,000,000 bytes"):
        scientist.torch.arange(end).get(timeout_secs=GET_SECS)
    assert ran == [] and quota_of(owner).bytes_used < 2**20
    # the owner serves on, and the scientist's own values stay its own
    assert torch.equal((torch.ones(2).send(scientist) + 1).get(), torch.full((2,), 2.0))


@pytest.mark.parametrize(
    "make",
    [
        lambda rt, end: rt.arange(end),
        lambda rt, end: rt.zeros(end),
        lambda rt, end: rt.ones((end, 10)),
        lambda rt, end: rt.linspace(0, 1, end),
        lambda rt, end: rt.eye(end),
        lambda rt, end: rt.nn.Linear(end, 10),
    ],
    ids=["arange", "zeros", "ones-tuple", "linspace", "eye", "Linear"],
)
def test_a_size_computed_from_the_owners_data_fails_privately_before_it_is_made(duet, ran, make):
    owner, scientist = duet
    for path in ("arange", "zeros", "ones", "linspace", "eye", "nn.Linear"):
        ran.guard(allowlist.FUNCTIONS, f"torch.{path}")
    end = scientist.store["counts"].sum().long()  # 10**9, computed on the owner's side
    result = make(scientist.torch, end)
    with pytest.raises(sy.PermissionDenied):
        result.get(timeout_secs=GET_SECS)
    failure = owner_entry(owner, result).failure
    assert failure is not None and failure.code == "quota_exceeded"
    assert "would need about" in failure.message
    assert ran == [] and quota_of(owner).bytes_used < 2**20
    # the refusal was not told to the scientist: whether it fits depends on the owner's data
    assert not any("would need" in notice.message for notice in scientist.client.notices)


def test_an_expanded_tensor_is_counted_when_it_is_materialized(duet, ran):
    owner, scientist = duet
    for name in ("contiguous", "clone", "__add__", "float", "tolist"):
        ran.guard(allowlist.TABLES["Tensor"], name)
    wide = torch.ones(1).send(scientist).expand(sent(scientist, 10**9))  # a view: nothing made
    for made in (wide.contiguous(), wide.clone(), wide + 1, wide.float(), wide.tolist()):
        with pytest.raises(sy.QuotaExceeded, match="would need about"):
            made.get(timeout_secs=GET_SECS)
    assert ran == [] and quota_of(owner).bytes_used < 2**20


def test_a_size_that_cannot_be_read_is_refused_naming_the_argument(duet, ran):
    _, scientist = duet
    ran.guard(allowlist.FUNCTIONS, "torch.zeros")
    ran.guard(allowlist.FUNCTIONS, "torch.arange")
    with pytest.raises(
        sy.RemoteError, match=r"torch\.zeros: size\[1\] must be an integer, not a str"
    ):
        scientist.torch.zeros(2, "3").get(timeout_secs=GET_SECS)
    many = torch.arange(100.0).send(scientist)
    with pytest.raises(sy.RemoteError, match=r"torch\.arange: end must be a number, not a float32"):
        scientist.torch.arange(many).get(timeout_secs=GET_SECS)
    assert ran == []


def test_small_sizes_given_as_tensors_make_what_torch_makes(duet):
    _, scientist = duet
    rt = scientist.torch

    def t(value):
        return sent(scientist, value)

    cases = [
        (rt.arange(t(5)), torch.arange(5)),
        (rt.arange(0, 5, t(0.5)), torch.arange(0, 5, 0.5)),
        (rt.arange(start=t(1), end=4), torch.arange(1, 4)),
        (rt.zeros((t(2), 3)), torch.zeros(2, 3)),
        (rt.ones(t(2), t(3)), torch.ones(2, 3)),
        (rt.zeros((np.int64(2), t(3))), torch.zeros(2, 3)),
        (rt.full([t(2)], 7), torch.full([2], 7)),
        (rt.linspace(0, 1, t(5)), torch.linspace(0, 1, 5)),
        (rt.eye(t(2), t(3)), torch.eye(2, 3)),
        (torch.ones(2).send(scientist).repeat(t(2), 1), torch.ones(2).repeat(2, 1)),
        (torch.ones(2).send(scientist).expand(t(3), 2).contiguous(), torch.ones(3, 2)),
        (torch.ones(6).send(scientist).reshape((t(2), 3)), torch.ones(2, 3)),
    ]
    for remote, local in cases:
        assert torch.equal(remote.get(timeout_secs=GET_SECS), local)
    assert rt.randint(10, (t(3),)).get(timeout_secs=GET_SECS).shape == (3,)
    assert rt.nn.Linear(t(3), t(2)).weight.get(timeout_secs=GET_SECS).shape == (2, 3)
    sample = rt.distributions.Normal(0.0, 1.0).sample((t(4),))
    assert sample.get(timeout_secs=GET_SECS).shape == (4,)


# ---- what an op makes besides tensor storage: tensor objects, rows of nested lists

PIECES = {
    "split": (T, "split", lambda rt, s, x: x.split(1)),
    "split-keyword": (T, "split", lambda rt, s, x: x.split(split_size_or_sections=sent(s, 1))),
    "chunk": (T, "chunk", lambda rt, s, x: x.chunk(sent(s, 10**6))),
    "List": (F, "python.List", lambda rt, s, x: s.python.List(x)),
    "Tuple": (F, "python.Tuple", lambda rt, s, x: s.python.Tuple(x)),
    "extend": (allowlist.TABLES["List"], "extend", lambda rt, s, x: s.python.List([]).extend(x)),
    "index_select": (
        T, "index_select",
        lambda rt, s, x: x.reshape(1000, 1000).index_select(0, torch.zeros(10**5, dtype=torch.long).send(s)),
    ),
    "LSTM-layers": (F, "torch.nn.LSTM", lambda rt, s, x: rt.nn.LSTM(1, 1, num_layers=10**5)),
}  # fmt: skip


@pytest.mark.parametrize("attack", list(PIECES))
def test_what_iterating_splitting_or_indexing_makes_is_counted_before_it_is_made(duet, ran, attack):
    owner, scientist = duet
    table, name, ask = PIECES[attack]
    x = scientist.torch.zeros(10**6)  # 4 MB: a million rows, each a tensor object of its own
    ran.guard(table, name)
    with pytest.raises(sy.QuotaExceeded, match=r"would need about [\d,]+ bytes"):
        ask(scientist.torch, scientist, x).get(timeout_secs=GET_SECS)
    assert ran == [] and quota_of(owner).bytes_used < 10 * 2**20


def test_a_tensor_from_a_list_holding_one_list_many_times_is_counted_in_full(duet, ran):
    _, scientist = duet
    row = scientist.python.List([0.5] * 10**5)
    table = scientist.python.List([row] * 200)  # 200 references: 20 million numbers
    ran.guard(allowlist.FUNCTIONS, "torch.tensor")
    with pytest.raises(sy.QuotaExceeded, match=r"would need about 160,000,000 bytes"):
        scientist.torch.tensor(table).get(timeout_secs=GET_SECS)
    assert ran == []


def test_small_splits_lists_and_selections_still_run(duet):
    _, scientist = duet
    x = torch.arange(6.0).send(scientist)
    assert [p.tolist() for p in x.split(2).get(timeout_secs=GET_SECS)] == [[0, 1], [2, 3], [4, 5]]
    assert len(x.chunk(4).get(timeout_secs=GET_SECS)) == 3
    assert len(scientist.python.List(x).get(timeout_secs=GET_SECS)) == 6
    index = torch.tensor([5, 0]).send(scientist)
    assert x.index_select(0, index).get(timeout_secs=GET_SECS).tolist() == [5.0, 0.0]
    assert scientist.torch.tensor([[1, 2], [3, 4]]).get(timeout_secs=GET_SECS).shape == (2, 2)
