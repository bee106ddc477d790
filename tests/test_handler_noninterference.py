"""What the owner's handlers release automatically is exactly what they name: proved in two
worlds.

Two owners publish ``p`` with the same shape, length and mean but other values (one is the other
reversed), and the same ``q``. Each has the same handlers: the mean of ``p`` (an op tag), the
length of ``p`` (a length op tag), and anything computed from ``q`` alone of at most 4 elements
(a size), then one that denies the rest. Random programs of allowlisted operations, with the
attacks handlers once let through (a reshaped mean, a length of a range made from a value, the
data in a string or in layer settings, a mean written since it was made), run in both worlds,
and then the scientist asks for every value it made. Whatever a handler released must be the
same in both worlds: the handlers name only what the two worlds share.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import duet as sy

from .test_noninterference import STEPS, Pool, _error, _shown, _t

P = {"a": [0.5, -2.0, 3.0, 7.0], "b": [7.0, 3.0, -2.0, 0.5]}  # same length and mean
Q = [[1.0, 0.0], [2.0, 3.0]]


@pytest.fixture(scope="module")
def worlds():
    made = {}
    for name, p in P.items():
        owner, scientist = sy.duet_pair()
        owner.publish(torch.tensor(p), tags=["p"])
        owner.publish(torch.tensor(Q), tags=["q"])
        owner.requests.add_handler(tags=["p", "mean"], action="accept")
        owner.requests.add_handler(tags=["p", "__len__"], action="accept")
        owner.requests.add_handler(tags=["q"], max_elements=4, action="accept")
        owner.requests.add_handler(action="deny")
        made[name] = (owner, scientist)
    yield made
    for owner, scientist in made.values():
        scientist.close()
        owner.close()


def _p(s: Any) -> Any:
    return s.store["p"]


# the attacks on handlers, one step each, besides the release boundary's own steps
ATTACKS: list[tuple[str | None, Callable[[Any, Pool, int, int], Any]]] = [
    ("tensor", lambda s, p, a, b: _p(s).mean()),  # named: the same in both worlds
    ("number", lambda s, p, a, b: _p(s).mean().item()),
    ("number", lambda s, p, a, b: _p(s).len()),
    ("tensor", lambda s, p, a, b: _p(s).reshape(4, 1).mean(dim=1)),  # all of p
    ("tensor", lambda s, p, a, b: _p(s).view(2, 2).mean(b % 2)),
    ("tensor", lambda s, p, a, b: _p(s)[a % 4 : a % 4 + 1].mean()),
    ("tensor", lambda s, p, a, b: _t(p, a).mean()),  # a mean of whatever the pool holds
    ("tensor", lambda s, p, a, b: _p(s).mean().add_(_p(s)[b % 4])),  # written since made
    ("number", lambda s, p, a, b: s.torch.arange((_p(s)[b % 4].abs() * 2).long().item()).len()),
    ("number", lambda s, p, a, b: _p(s)[_p(s) > (b % 5)].len()),
    ("number", lambda s, p, a, b: _t(p, a).len()),
    ("string", lambda s, p, a, b: s.python.String(_p(s).tolist())),
    ("string", lambda s, p, a, b: s.python.String(s.store["q"].tolist())),
    ("model", lambda s, p, a, b: s.torch.nn.Sequential(s.torch.nn.LeakyReLU(_p(s)[b % 4].item()))),
    ("model", lambda s, p, a, b: s.torch.nn.LeakyReLU(s.store["q"][0][b % 2].item())),
    ("tensor", lambda s, p, a, b: s.store["q"].view(-1)[b % 4 :]),  # q alone: released
    ("tensor", lambda s, p, a, b: s.store["q"].sum(0) + _t(p, a)[0:2]),
]  # fmt: skip
ALL_STEPS = STEPS + ATTACKS


def run(scientist: Any, program: list[tuple[int, int, int]]) -> list[str]:
    """Run ``program``, then ask for every value made; return what came back."""
    pool = Pool()
    scientist.torch.manual_seed(0)
    pool.add("tensor", scientist.store["p"])
    pool.add("tensor", scientist.store["q"].view(-1))
    pool.add("tensor", torch.tensor([1.0, -2.0, 3.0, 0.25]).send(scientist))
    pool.add("number", scientist.python.Float(1.5))
    pool.add("index", scientist.python.Int(1))
    pool.add("index", (scientist.store["p"][1] > 0).long().item())  # 0 in one world, 1 in the other
    pool.add("list", scientist.python.List([1.0, 2.0, 3.0]))
    pool.add("dict", scientist.python.Dict({0: 1.0, 1: 2.0}))
    model = torch.nn.Linear(4, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, 0.2, -0.3, 0.4]]))
        model.bias.fill_(0.5)
    pool.add("model", model.send(scientist))
    pool.add(
        "dist", scientist.torch.distributions.Categorical(probs=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    )
    seen: list[str] = []
    for step, a, b in program:
        kind, make = ALL_STEPS[step % len(ALL_STEPS)]
        try:
            made = make(scientist, pool, a, b)
        except sy.DuetError as exc:
            seen.append("local " + _error(exc))
            continue
        if kind is not None and made is not None:
            pool.add(kind, made)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sy.RequestWarning)
        for kind, ptr in pool.items:
            try:
                value = ptr.get(request_block=True, name="asked", timeout_secs=30)
                seen.append(f"{kind} = {_shown(value)}")
            except sy.DuetError as exc:
                seen.append(f"{kind} ! {_error(exc)}")
    scientist.sync(timeout_secs=30)
    return seen


programs = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 50), st.integers(0, 50)),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=int(os.environ.get("DUET_PROPERTY_EXAMPLES", "400")) // 3,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
@example(program=[(len(STEPS) + i, 1, 2) for i in range(len(ATTACKS))])  # every attack once
def test_what_handlers_release_is_the_same_in_two_worlds_that_share_only_what_they_name(
    worlds, program
):
    assert run(worlds["a"][1], program) == run(worlds["b"][1], program)


def test_the_two_worlds_differ_and_the_handlers_do_release(worlds):
    """The oracle is not vacuous: a handler that named more would tell the worlds apart, and
    what the handlers name does come back."""
    seen = {name: run(scientist, [(len(STEPS), 0, 0), (len(STEPS) + 2, 0, 0)])
            for name, (_, scientist) in worlds.items()}  # fmt: skip
    assert seen["a"] == seen["b"]
    assert "tensor = 2.125" in seen["a"] and "number = 4" in seen["a"]
    assert any(line.startswith("tensor = [1.0, 0.0, 2.0, 3.0]") for line in seen["a"])
    released = {}
    for name, p in P.items():  # a handler that names all of p tells the worlds apart
        owner, scientist = sy.duet_pair()
        try:
            owner.publish(torch.tensor(p), tags=["p"])
            owner.publish(torch.tensor(Q), tags=["q"])
            owner.requests.add_handler(tags=["p"], action="accept")
            released[name] = run(scientist, [(len(STEPS) + 3, 0, 0)])  # the reshaped mean
        finally:
            scientist.close()
            owner.close()
    assert released["a"] != released["b"]
