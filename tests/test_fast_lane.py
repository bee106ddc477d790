"""The executor's fast lane (``Executor._plain_call``: a method of the scientist's own plain
tensor with numbers and its own plain tensors as arguments) does exactly what the general way
does: the same values, failures, notices, quota charges and labels, for the calls it takes, and
it takes no call whose inputs carry anything of the owner's."""

from __future__ import annotations

import re

import pytest
import torch

import duet as sy
from duet.owner import calls
from duet.owner import executor as executor_module

PROGRAMS = {
    "arithmetic": lambda s, x, y: [x + 1, x * y, (x - y).abs(), x.relu(), x.float(), x / 0.5],
    "views": lambda s, x, y: [x.view(2, 2), x.view(2, 2).t(), x.unsqueeze(0), x[1]],
    "numbers": lambda s, x, y: [x.sum(), x.tolist(), x.max(), x.argmax(), x.size(), x.numel()],
    "failures": lambda s, x, y: [x.view(3, 3), x + torch.ones(5).send(s), x.to("cuda:7")],
    "grad": lambda s, x, y: [(x.requires_grad_() * 2).sum(), x * 3],
    "owner data": lambda s, x, y: [x + s.store["secret"], s.store["secret"] * 2, x.add(1)],
    "quota": lambda s, x, y: [x.repeat(10**6), x + 1],
}


IDS = re.compile(r"[0-9a-f]{4}(-[0-9a-f]{4}){3}:s[0-9a-f]{8}-[0-9]+|s[0-9a-f]{8}-[0-9]+")


def close_lane(monkeypatch, lane: str) -> None:
    """Send every call the general way: the executor's fast lane ``lane`` takes none."""
    monkeypatch.setattr(executor_module.Executor, lane, lambda self, message: calls.NOT_PLAIN)


def spy_lane(monkeypatch, lane: str) -> list[tuple[str, str]]:
    """The calls the executor's fast lane ``lane`` takes from now on: (scientist, op) each."""
    taken: list[tuple[str, str]] = []
    real = getattr(executor_module.Executor, lane)

    def spy(self, message):
        done = real(self, message)
        if done is not calls.NOT_PLAIN:
            taken.append((self.peer, message.op))
        return done

    monkeypatch.setattr(executor_module.Executor, lane, spy)
    return taken


def observe(general: bool, program, monkeypatch) -> list[str]:
    """What a scientist sees of ``program``, and what the owner holds and labels after it."""
    if general:
        close_lane(monkeypatch, "_plain_call")
    owner, scientist = sy.duet_pair(max_bytes=2_000_000)
    try:
        owner.publish(torch.tensor([5.0, 6.0, 7.0, 8.0]), tags=["secret"])
        x = torch.tensor([1.0, -2.0, 3.0, -4.0]).send(scientist)
        y = torch.tensor([0.5, 0.5, 2.0, 2.0]).send(scientist)
        made = program(scientist, x, y)
        seen = []
        for ptr in made:
            try:
                value = ptr.get(timeout_secs=30)
                seen.append(repr(value.tolist() if isinstance(value, torch.Tensor) else value))
            except sy.DuetError as exc:
                seen.append(f"{type(exc).__name__}: {IDS.sub('ID', str(exc))[:120]}")
        scientist.sync(timeout_secs=30)
        seen.append(repr(sorted((n.op, n.message[:60]) for n in scientist.client.notices)))
        service = next(iter(owner.links.values())).service
        quota = owner.objects.quota(owner.client_id)
        seen.append(f"own {quota.own_bytes} private {quota.private_bytes} objects {quota.objects}")
        labeled = sorted(
            (type(e.value).__name__, bool(service.executor.label_of(e)), e.op)
            for e in owner.objects.peer_objects(owner.client_id)
        )
        seen.append(repr(labeled))
        seen.append(f"actions run {service.actions_run}")
        return seen
    finally:
        scientist.close()
        owner.close()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_the_fast_lane_does_what_the_general_way_does(name, monkeypatch):
    fast = observe(False, PROGRAMS[name], monkeypatch)
    general = observe(True, PROGRAMS[name], monkeypatch)
    assert fast == general


def test_the_fast_lane_takes_plain_calls_and_no_call_on_the_owners_data(monkeypatch):
    taken = spy_lane(monkeypatch, "_plain_call")
    owner, scientist = sy.duet_pair()
    try:
        owner.publish(torch.arange(4.0), tags=["secret"])
        x = torch.ones(4).send(scientist)
        (x + 1).get()
        assert [op for _, op in taken] == ["__add__"]
        private = x + scientist.store["secret"]  # reads the owner's data: the general way
        (private * 2).sum()
        x.add_(1)  # writes: the general way
        scientist.sync(timeout_secs=30)
        assert [op for _, op in taken] == ["__add__"]
    finally:
        scientist.close()
        owner.close()
