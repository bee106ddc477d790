"""A property of the release boundary: what a scientist can see without a request never depends
on the owner's private data.

Random programs of allowlisted operations, mixing the scientist's own values with the owner's,
run against two owners that publish the same shapes with different values. Everything the
scientist can observe without a request (each get's value or error, each failure notice) must be
the same for both: otherwise some observation depends on a private input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import duet as sy

# two owners: same shapes, different values (the second has other signs, magnitudes, order)
DATA = {
    "a": (torch.tensor([0.5, -2.0, 3.0, 7.0]), torch.tensor([[1.0, 0.0], [2.0, 3.0]])),
    "b": (torch.tensor([-4.0, 9.0, 0.0, 1.5]), torch.tensor([[0.0, -1.0], [5.0, 0.5]])),
}


@pytest.fixture(scope="module")
def pairs():
    made = {}
    for name, (p, q) in DATA.items():
        owner, scientist = sy.duet_pair()
        owner.publish(p, tags=["p"])
        owner.publish(q, tags=["q"])
        made[name] = (owner, scientist)
    yield made
    for owner, scientist in made.values():
        scientist.close()
        owner.close()


class Pool:
    """The handles a program has made, by kind."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    def add(self, kind: str, ptr: Any) -> None:
        self.items.append((kind, ptr))

    def pick(self, kind: str, n: int) -> Any:
        found = [p for k, p in self.items if k == kind]
        return found[n % len(found)]


def _t(pool: Pool, n: int) -> Any:
    return pool.pick("tensor", n)


# each step: (result kind or None, function of (scientist, pool, a, b))
STEPS: list[tuple[str | None, Callable[[Any, Pool, int, int], Any]]] = [
    ("tensor", lambda s, p, a, b: _t(p, a) + _t(p, b)),
    ("tensor", lambda s, p, a, b: _t(p, a) * _t(p, b)),
    ("tensor", lambda s, p, a, b: _t(p, a) - 1.5),
    ("tensor", lambda s, p, a, b: _t(p, a).view(-1)),
    ("tensor", lambda s, p, a, b: _t(p, a)[0:2]),
    ("tensor", lambda s, p, a, b: _t(p, a).detach()),
    ("tensor", lambda s, p, a, b: _t(p, a).clone()),
    ("tensor", lambda s, p, a, b: _t(p, a).view(2, 2).t().reshape(-1)),
    ("tensor", lambda s, p, a, b: _t(p, a).unsqueeze(0).squeeze(0)),
    ("tensor", lambda s, p, a, b: (_t(p, a) > 0).float()),
    ("tensor", lambda s, p, a, b: _t(p, a).sum().unsqueeze(0)),
    ("tensor", lambda s, p, a, b: _t(p, a).argmax().unsqueeze(0).float()),
    ("tensor", lambda s, p, a, b: s.torch.where(_t(p, a) > 0, _t(p, b), _t(p, a))),
    ("tensor", lambda s, p, a, b: _t(p, a).clamp(-1.0, 1.0)),
    ("tensor", lambda s, p, a, b: _t(p, a)[(_t(p, b).abs() % 4).long()]),  # may fail
    ("tensor", lambda s, p, a, b: _t(p, a)[_t(p, b) > 0]),  # data-dependent size
    ("tensor", lambda s, p, a, b: _t(p, a)[(_t(p, b) * 2).long()]),  # fails for some values
    ("tensor", lambda s, p, a, b: s.torch.zeros(p.pick("index", a))),  # negative sizes fail
    ("tensor", lambda s, p, a, b: _t(p, a).view(p.pick("index", b), -1).view(-1)),  # may fail
    ("tensor", lambda s, p, a, b: _t(p, a).expand(p.pick("index", b), 4).sum(0)),
    ("tensor", lambda s, p, a, b: _t(p, a).add_(_t(p, b))),  # in place, through any alias
    ("tensor", lambda s, p, a, b: _t(p, a).mul_(0.5)),
    ("tensor", lambda s, p, a, b: _t(p, a).copy_(_t(p, b))),
    ("tensor", lambda s, p, a, b: _t(p, a).masked_fill_(_t(p, b) > 1, 9.0)),
    ("tensor", lambda s, p, a, b: _t(p, a).zero_()),
    ("tensor", lambda s, p, a, b: _t(p, a).__setitem__(b % 4, p.pick("number", a)) or _t(p, a)),
    ("tensor", lambda s, p, a, b: s.torch.randn(4)),
    ("tensor", lambda s, p, a, b: s.torch.manual_seed(p.pick("index", a)) or _t(p, b)),
    ("tensor", lambda s, p, a, b: s.python.List([_t(p, a), _t(p, b)])[p.pick("index", a + b)]),
    # attack idioms, as one step each so that short programs reach them
    ("tensor", lambda s, p, a, b: seeded_draw(s, p.pick("index", a))),
    ("tensor", lambda s, p, a, b: s.python.List([_t(p, a), _t(p, b)])[p.pick("index", a + b)].add_(1.0)),
    ("tensor", lambda s, p, a, b: p.pick("model", a)(_t(p, b).view(1, 4)).view(-1).repeat(4)),
    ("tensor", lambda s, p, a, b: p.pick("model", a).weight.view(-1)),
    ("tensor", lambda s, p, a, b: p.pick("model", a).weight.grad.view(-1)),
    ("number", lambda s, p, a, b: _t(p, a)[b % 4].item()),
    ("number", lambda s, p, a, b: _t(p, a).sum().item()),
    ("number", lambda s, p, a, b: p.pick("number", a) + p.pick("number", b)),
    ("number", lambda s, p, a, b: p.pick("number", a) * 2),
    ("number", lambda s, p, a, b: p.pick("list", a)[b % 3]),  # may fail
    ("number", lambda s, p, a, b: p.pick("list", a).pop(p.pick("index", b))),  # may fail
    ("index", lambda s, p, a, b: (_t(p, a)[0] > 0).long().item()),
    ("index", lambda s, p, a, b: (_t(p, a)[b % 4] * 2).long().item()),
    ("index", lambda s, p, a, b: s.python.Int(b % 3)),
    ("list", lambda s, p, a, b: _t(p, a).tolist()),
    ("list", lambda s, p, a, b: s.python.List([1.0, 2.0])),
    ("list", lambda s, p, a, b: p.pick("list", a).append(p.pick("number", b)) or p.pick("list", a)),
    ("list", lambda s, p, a, b: p.pick("list", a).insert(p.pick("index", b), 5.0) or p.pick("list", a)),
    ("list", lambda s, p, a, b: p.pick("list", a).__setitem__(p.pick("index", b), 3.0) or p.pick("list", a)),
    ("list", lambda s, p, a, b: p.pick("list", a).extend(p.pick("list", b)) or p.pick("list", a)),
    ("list", lambda s, p, a, b: s.python.List([_t(p, a)])),
    ("dict", lambda s, p, a, b: p.pick("dict", a).__setitem__(p.pick("index", b), 1.0) or p.pick("dict", a)),
    ("dict", lambda s, p, a, b: p.pick("dict", a).update(s.python.Dict({"k": p.pick("number", b)})) or p.pick("dict", a)),
    ("number", lambda s, p, a, b: p.pick("dict", a).get(p.pick("index", b), 0.0)),
    ("tensor", lambda s, p, a, b: train_step(s, p, a, b)),
    ("list", lambda s, p, a, b: p.pick("model", a).parameters()),
    ("dict", lambda s, p, a, b: p.pick("model", a).state_dict()),
    # what PySyft's examples use, where it can carry private data
    ("tensor", lambda s, p, a, b: s.torch.nn.LeakyReLU(0.2, inplace=True)(_t(p, a))),
    ("tensor", lambda s, p, a, b: s.torch.nn.Dropout(0.5, inplace=1)(_t(p, a))),  # 1 as True
    ("tensor", lambda s, p, a, b: s.torch.nn.LSTMCell(4, 2)(_t(p, a).view(1, 4))[b % 2].view(-1).repeat(2)),
    ("tensor", lambda s, p, a, b: s.torch.nn.ConvTranspose2d(1, 1, 2, stride=1 + b % 2)(_t(p, a).view(1, 1, 2, 2)).view(-1)[0:4]),
    ("dist", lambda s, p, a, b: s.torch.distributions.Categorical(logits=_t(p, a))),
    ("tensor", lambda s, p, a, b: p.pick("dist", a).sample((4,)).float()),
    ("tensor", lambda s, p, a, b: p.pick("dist", a).log_prob(s.torch.tensor([0, 1, 2, 3]))),
    ("tensor", lambda s, p, a, b: p.pick("dist", a).probs),
    ("tensor", lambda s, p, a, b: s.torch.from_numpy(s.python.List([ARRAY, _t(p, a)])[p.pick("index", b)]).add_(_t(p, b))),
    ("tensor", lambda s, p, a, b: torch.tensor([1.0, -1.0, 2.0, 0.5]) * _t(p, a)),
    ("model", lambda s, p, a, b: p.pick("model", a).double()),
    ("model", lambda s, p, a, b: p.pick("model", a).float()),
    ("model", lambda s, p, a, b: s.torch.nn.Sequential(p.pick("model", a), s.python.Dict({1: s.torch.nn.ReLU()})[p.pick("index", b)])),
]  # fmt: skip
ARRAY = np.array([0.5, 1.5, -2.0, 4.0], dtype=np.float32)


def seeded_draw(scientist: Any, seed: Any) -> Any:
    scientist.torch.manual_seed(seed)
    return scientist.torch.randn(4)


def train_step(scientist: Any, pool: Pool, a: int, b: int) -> Any:
    model = pool.pick("model", a)
    optimizer = scientist.torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss = (model(_t(pool, b).view(1, 4)) ** 2).sum()
    loss.backward()
    optimizer.step()
    return loss.unsqueeze(0).repeat(4)


# object ids, and the scientist's own id where the owner names its objects ("<peer>:<id>")
_IDS = re.compile(r"\b([0-9a-f]{4}(?:-[0-9a-f]{4}){3}:)?(s[0-9a-f]{8}-[0-9.]+|o[0-9a-f]{32})\b")


def _shown(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    elif isinstance(value, torch.nn.Module):
        value = {k: v.tolist() for k, v in value.state_dict().items()}
    elif isinstance(value, dict):
        value = {k: _shown(v) for k, v in value.items()}
    elif isinstance(value, list | tuple):
        value = [_shown(v) for v in value]
    return repr(value)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_IDS.sub('ID', str(exc))}"


def run(scientist: Any, program: list[tuple[int, int, int]]) -> list[str]:
    """Run ``program`` and return everything the scientist sees without a request."""
    client = scientist.client
    client.notices.clear()
    # local draws first: this process's generator is also the one the owner swaps the
    # scientist's state into while a remote op draws
    model = torch.nn.Linear(4, 1)
    scientist.torch.manual_seed(0)
    pool = Pool()
    pool.add("tensor", scientist.store["p"])
    pool.add("tensor", scientist.store["q"].view(-1))
    pool.add("tensor", torch.tensor([1.0, -2.0, 3.0, 0.25]).send(scientist))
    pool.add("tensor", torch.tensor([2.0, 2.0, -1.0, 0.0]).send(scientist))
    pool.add("number", scientist.python.Float(1.5))
    pool.add("index", scientist.python.Int(1))
    # private values ready for use: an index, and a tensor whose making failed for one owner
    private_index = (scientist.store["p"][1] > 0).long().item()  # 0 for "a", 1 for "b"
    pool.add("index", private_index)
    pool.add("tensor", scientist.store["p"].view((scientist.store["p"][0] * 2).long().item(), -1))
    pool.add("list", scientist.python.List([1.0, 2.0, 3.0]))
    pool.add("dict", scientist.python.Dict({0: 1.0, 1: 2.0}))
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, 0.2, -0.3, 0.4]]))
        model.bias.fill_(0.5)
    pool.add("model", model.send(scientist))
    pool.add(
        "dist", scientist.torch.distributions.Categorical(probs=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    )
    seen: list[str] = []
    for step, a, b in program:
        kind, make = STEPS[step % len(STEPS)]
        try:
            made = make(scientist, pool, a, b)
        except sy.DuetError as exc:  # refused on the scientist's side, before anything is sent
            seen.append("local " + _error(exc))
            continue
        if kind is not None and made is not None:
            pool.add(kind, made)
    for kind, ptr in pool.items:
        try:
            seen.append(f"{kind} = {_shown(ptr.get(timeout_secs=30))}")
        except sy.DuetError as exc:
            seen.append(f"{kind} ! {_error(exc)}")
    scientist.sync(timeout_secs=30)
    seen.extend(f"notice {_IDS.sub('ID', f'{n.op}: {n.message}')}" for n in client.notices)
    return seen


programs = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 50), st.integers(0, 50)),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=int(os.environ.get("DUET_PROPERTY_EXAMPLES", "400")),
    derandomize=True,  # the same programs on every run: a failure here is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
# found by this test: a write through a failed input labeled the list's items, not the list
# (steps 49, 34 and 43: an index into a list, a failing private view, an append through it)
@example(program=[(0, 0, 0), (49, 38, 0), (34, 28, 0), (43, 1, 1)])
# found with 2,500 examples: a handle on a private value of a method's result stood for the
# method's arguments when its target had failed (any op of that name: "all") but not when it
# had not (the one op that ran), and an in-place layer through it labeled them in one world only
@example(program=[(0, 0, 0), (0, 0, 0), (0, 0, 11), (0, 7, 2), (192, 8, 0)])
# ... and the same, the other way: a failed target stood for more than any op of its name shares
@example(program=[(4415, 2, 43), (576, 6, 37), (166, 5, 40), (222, 28, 8), (1432, 2, 49),
                  (342, 13, 21), (1, 27, 48), (2320, 34, 40), (5347, 44, 12), (6210, 12, 22),
                  (4823, 16, 33)])  # fmt: skip
def test_what_a_scientist_sees_without_requests_does_not_depend_on_private_data(pairs, program):
    seen_a = run(pairs["a"][1], program)
    seen_b = run(pairs["b"][1], program)
    assert seen_a == seen_b


def test_the_property_can_fail(pairs):
    """The oracle is not vacuous: a get that bypassed the boundary would differ."""
    owner_a, _ = pairs["a"]
    owner_b, _ = pairs["b"]
    raw = [owner_a.store["p"].value.tolist(), owner_b.store["p"].value.tolist()]
    assert raw[0] != raw[1]
    # own data is seen (and is the same on both sides)
    assert run(pairs["a"][1], [(2, 2, 0)]) == run(pairs["b"][1], [(2, 2, 0)])
    assert any(line.startswith("tensor = [-0.5") for line in run(pairs["a"][1], [(2, 2, 0)]))
