"""The executor's lane for torch functions on the scientist's own tensors
(``Executor._function_call``: ``F.relu(x)``, ``F.nll_loss(out, target)``, labeled or not) leaves
the owner exactly as the general way does: the same results, failures, notices and quota, the
same label on every entry and on the state it reaches, the same handles each entry stands for,
the same generator and graph labels. It takes no call that names a published object, writes
its input, draws, or reads the owner's information."""

from __future__ import annotations

import re

import pytest
import torch

import duet as sy
from tests.test_fast_lane import IDS, close_lane, spy_lane


def _tail(object_id: str) -> str:
    """An entry's name without the session's random part (the same in every run)."""
    return object_id.rsplit("-", 1)[-1]


def _names(owner: sy.OwnerSession, entries: list) -> dict[int, str]:
    names: dict[int, str] = {}
    for entry in owner.objects.published():
        tag = ",".join(entry.tags)
        names.setdefault(id(entry.value), f"published {tag}")
        if isinstance(entry.value, torch.Tensor):
            names.setdefault(id(entry.value.untyped_storage()), f"storage of published {tag}")
    for entry in entries:
        names.setdefault(id(entry.value), f"value {_tail(entry.id)}")
        if isinstance(entry.value, torch.Tensor):
            names.setdefault(id(entry.value.untyped_storage()), f"storage {_tail(entry.id)}")
    return names


def _label(label: frozenset) -> list[str]:
    return sorted(repr(source) for source in label)


def observe(lane: bool, program, monkeypatch) -> list[str]:
    """What a scientist sees of ``program``, and everything the owner knows after it."""
    if not lane:
        close_lane(monkeypatch, "_function_call")
    owner, scientist = sy.duet_pair(max_bytes=20_000_000)
    try:
        owner.publish(torch.tensor([[5.0, -6.0, 7.0, -8.0]]), tags=["secret"])
        owner.publish(torch.tensor([1, 0]), tags=["labels"])
        owner.requests.add_handler(name="seen", max_elements=1000, action="accept")
        x = torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.5, 0.5, -2.0, 2.0]]).send(scientist)
        scientist.torch.manual_seed(0)  # (a dropout draws the same in both runs)
        made = program(scientist, scientist.torch, x)
        seen = []
        for ptr in made:
            try:
                value = ptr.get(request_block=True, reason="seen", name="seen", timeout_secs=10)
                shown = value.tolist() if isinstance(value, torch.Tensor) else value
                seen.append(repr(shown))
            except sy.DuetError as exc:
                seen.append(f"{type(exc).__name__}: {IDS.sub('ID', str(exc))[:120]}")
        scientist.sync(timeout_secs=30)
        seen.append(
            repr(sorted((n.op, IDS.sub("ID", n.message)[:80]) for n in scientist.client.notices))
        )
        service = next(iter(owner.links.values())).service
        executor = service.executor
        entries = sorted(
            owner.objects.peer_objects(owner.client_id), key=lambda e: int(_tail(e.id))
        )
        names = _names(owner, entries)
        for entry in entries:
            reach = sorted(
                names.get(id(node), type(node).__name__)
                for node in (ref() for ref in entry.reach)
                if node is not None
            )
            failure = None if entry.failure is None else IDS.sub("ID", entry.failure.message)
            seen.append(
                f"{_tail(entry.id)} {entry.op} {entry.type_name} entry {_label(entry.label)} "
                f"all {_label(executor.label_of(entry))} reach {reach} {entry.reach_unknown} "
                f"{failure}"
            )
        seen.append(f"rng {_label(executor.rng_label)} graph {_label(executor.graph_label)}")
        seen.append(f"poisoned {_label(executor.poisoned)} actions {executor.actions_run}")
        quota = owner.objects.quota(owner.client_id)
        seen.append(f"own {quota.own_bytes} private {quota.private_bytes} objects {quota.objects}")
        return seen
    finally:
        scientist.close()
        owner.close()


def _private(s, rt, x):
    # a tensor of the scientist's that holds the owner's data (made by an op that could not
    # write in place: nothing yet joins the graph label)
    return rt.mul(s.store["secret"], 1.0)


def _tutorial_tail(s, rt, x):
    F = rt.nn.functional
    data = _private(s, rt, x).repeat(2, 1).requires_grad_()
    hidden = F.relu(data)
    pooled = F.max_pool2d(hidden.unsqueeze(0), 1).squeeze(0)
    flat = rt.flatten(pooled, 1)
    out = F.log_softmax(flat, dim=1)
    loss = F.nll_loss(out, s.store["labels"] * 1)
    loss.backward()
    return [hidden, flat, out, loss, data.grad]


def _views_then_writes(s, rt, x):
    private = _private(s, rt, x)
    flat = rt.flatten(private)  # a view of it: writes through the view are writes to it
    flat.add_(1)
    own = rt.flatten(x)
    own.mul_(2)
    return [private, flat, x, own]


def _inplace_asked(s, rt, x):
    F = rt.nn.functional
    private = _private(s, rt, x)
    kept = F.relu(private, inplace=True)
    positional = F.relu(x, True)
    return [private, kept, x, positional]


def _failures(s, rt, x):
    F = rt.nn.functional
    private = _private(s, rt, x)
    return [
        F.nll_loss(private, x),  # wrong types, on the owner's data: a private failure
        F.nll_loss(x, x),  # the scientist's own: told at once
        F.log_softmax(x, dim=7),
        F.relu(x, bogus=1),
        rt.zeros(10**8),  # more than the owner allows
    ]


def _own_and_mixed(s, rt, x):
    F = rt.nn.functional
    private = _private(s, rt, x)
    own = F.relu(x)
    written = torch.zeros(2).send(s)
    written.add_(private.sum())  # its handle is the scientist's; what it holds is not
    return [
        own,
        F.relu(written),
        rt.zeros(3),
        F.linear(x, x),
        F.linear(x, private),
        rt.maximum(x, private.repeat(2, 1)),
        F.softmax(private, dim=1),
    ]


def _the_owners_objects_named(s, rt, x):
    F = rt.nn.functional
    leaf = torch.ones(2, 2, requires_grad=True).send(s)
    (leaf * 2).sum().backward()
    return [
        F.relu(s.store["secret"]),  # names a published object
        F.relu(leaf),  # a leaf with a gradient
        F.dropout(x, 0.5),  # draws
        rt.cuda.is_available(),  # the owner's information
        F.relu(x),
    ]


def _may_write_in_place(s, rt, x):
    # relu could have written its input in place: whether a later backward pass runs may
    # depend on it (the graph label), though this call wrote nothing
    return [rt.nn.functional.relu(_private(s, rt, x))]


PROGRAMS = {
    "may write in place": _may_write_in_place,
    "tutorial tail": _tutorial_tail,
    "views then writes": _views_then_writes,
    "inplace asked": _inplace_asked,
    "failures": _failures,
    "own and mixed": _own_and_mixed,
    "the owner's objects named": _the_owners_objects_named,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_function_lane_leaves_the_owner_as_the_general_way_does(name, monkeypatch):
    with_lane = observe(True, PROGRAMS[name], monkeypatch)
    without = observe(False, PROGRAMS[name], monkeypatch)
    assert with_lane == without


def test_the_function_lane_takes_the_tutorials_functions_on_private_data_and_nothing_else(
    monkeypatch,
):
    taken = spy_lane(monkeypatch, "_function_call")

    def names() -> list[str]:
        found = [re.sub(r"^torch\.(nn\.functional\.)?", "", op) for _, op in taken]
        taken.clear()
        return found

    observe(True, _tutorial_tail, monkeypatch)
    assert names() == ["relu", "max_pool2d", "flatten", "log_softmax", "nll_loss"]
    observe(True, _the_owners_objects_named, monkeypatch)
    assert names() == ["relu"]  # only the last: on the scientist's own tensor
    observe(True, _inplace_asked, monkeypatch)
    assert names() == []


def test_a_scientist_names_no_other_scientists_tensor_through_the_lane(monkeypatch):
    taken = spy_lane(monkeypatch, "_function_call")
    owner, alice = sy.duet_pair()
    alice_id = owner.client_id  # (the only scientist yet)
    try:
        _, bob = sy.duet_pair(owner=owner)
        try:
            x = torch.tensor([1.0, -2.0]).send(alice)
            alice.sync(timeout_secs=30)
            forged = bob.client.pointer(x.id, "Tensor", {}, owned=False)  # alice's id, guessed
            with pytest.raises(sy.DuetError, match="does not exist"):
                bob.torch.nn.functional.relu(forged).get(timeout_secs=30)
            assert taken == []  # refused the general way, which says it does not exist
            assert alice.torch.nn.functional.relu(x).get(timeout_secs=30).tolist() == [1.0, 0.0]
            assert len(taken) == 1 and taken[0][0] == alice_id  # alice's own call
        finally:
            bob.close()
    finally:
        alice.close()
        owner.close()
