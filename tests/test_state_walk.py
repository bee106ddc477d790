"""The owner's shortcuts in reading state keep its answers: a walk that remembers what each type
is (labels.Walk) sees what isinstance sees, for every object and every time; where an
``inplace`` flag sits is bound once per call shape, and a layer's flag is read without asking
Module.__getattr__, with the answers the plain lookups give (effects.py)."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch import nn

from duet.owner import effects
from duet.owner.labels import MAX_WALK_DEPTH, LabelList, Walk
from duet.protocol import allowlist


def _nodes(value: object) -> tuple[list[int], bool]:
    walk = Walk().add(value)
    return list(walk.nodes), walk.unknown


def test_a_walk_sees_the_same_state_every_time_it_meets_a_type():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    optimizer = torch.optim.Adadelta(model.parameters())
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    state = [model, optimizer, {"lr": 0.1}]
    first = _nodes(state)
    assert first == _nodes(state)
    assert not first[1]
    assert id(optimizer.state[model[0].weight]["square_avg"]) in first[0]

    class Opaque:
        pass

    assert _nodes([Opaque()])[1] and _nodes([Opaque()])[1]  # unknown, the second time too


def test_a_walk_believes_no_remembered_type_for_an_object_that_names_another_class():
    # a proxy says it is what it points to: a tensor once, an optimizer the next time
    tensor, weight = torch.ones(2), torch.ones(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight])
    as_tensor = Walk().add(weakref.proxy(tensor))
    as_optimizer = Walk().add(weakref.proxy(optimizer))
    assert id(tensor.untyped_storage()) in as_tensor.nodes
    assert id(weight) in as_optimizer.nodes


def test_state_nested_too_deep_is_unknown_however_often_it_is_walked():
    deep = inner = LabelList()
    for _ in range(MAX_WALK_DEPTH + 2):
        inner.append(LabelList())
        inner = inner[0]  # type: ignore[assignment]
    assert Walk().add(deep).unknown and Walk().add(deep).unknown


@pytest.mark.parametrize(
    ("args", "kwargs", "writes"),
    [
        ((), {}, False),
        ((True,), {}, True),
        ((False,), {}, False),
        ((), {"inplace": True}, True),
        ((), {"inplace": False}, False),
        ((True, True), {}, False),  # does not bind: the call fails, and writes nothing
        ((), {"inplace": True, "other": 1}, False),
    ],
)
def test_relu_writes_its_input_exactly_when_called_inplace(args, kwargs, writes):
    op = allowlist.function("torch.nn.functional.relu")
    x = torch.ones(2)
    for _ in range(2):  # the second time from what was bound the first
        assert effects.written(op, None, [x, *args], kwargs, []) == ([x] if writes else [])


class _FlagOfItsClass(nn.Module):
    inplace = True


class _FlagByProperty(nn.Module):
    @property
    def inplace(self) -> bool:
        return True


class _AnyAttribute(nn.Module):
    def __getattr__(self, name: str) -> object:
        return True


def _with(kind: str) -> nn.Module:
    module = nn.Module()
    if kind == "buffer":
        module.register_buffer("inplace", torch.ones(1))
    elif kind == "submodule":
        module.inplace = nn.ReLU()
    else:
        module.inplace = nn.Parameter(torch.ones(1))
    return module


@pytest.mark.parametrize(
    "layer",
    [
        nn.ReLU(),
        nn.ReLU(inplace=True),
        nn.Dropout(inplace=True),
        nn.Conv2d(1, 1, 1),
        _FlagOfItsClass(),
        _FlagByProperty(),
        _AnyAttribute(),
        _with("buffer"),
        _with("submodule"),
        _with("parameter"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_a_layers_inplace_flag_is_found_wherever_it_is(layer):
    assert effects.inplace_flag(layer) is getattr(layer, "inplace", False)


class _OwnLayers(nn.Module):
    """A layer that lists layers of its own making (modules() overridden)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = [nn.ReLU(inplace=True)]  # not a submodule: modules() names it anyway

    def modules(self):  # type: ignore[override]
        yield self
        yield from self.hidden


class _Unhashable(nn.Linear):
    __hash__ = None  # type: ignore[assignment]


def _shadowed() -> nn.Module:
    layer, relu = nn.Linear(2, 2), nn.ReLU(inplace=True)
    layer.__dict__["modules"] = lambda: iter([layer, relu])
    return layer


@pytest.mark.parametrize(
    "module",
    [
        nn.Conv2d(1, 1, 1),
        nn.Dropout(),
        nn.Sequential(),
        nn.Sequential(nn.Linear(2, 2), nn.ReLU(inplace=True)),
        _OwnLayers(),
        _shadowed(),
        _AnyAttribute(),
    ],
    ids=lambda m: type(m).__name__,
)
def test_the_layers_of_a_module_are_those_modules_names(module):
    assert list(effects.layers_in(module)) == list(module.modules())


def test_a_layer_that_cannot_be_listed_fails_as_modules_fails():
    with pytest.raises(TypeError):
        list(nn.Linear(2, 2).__class__.modules(_Unhashable(2, 2)))
    with pytest.raises(TypeError):
        effects.layers_in(_Unhashable(2, 2))


def test_an_inplace_layer_listed_by_its_own_modules_makes_its_call_write_its_input():
    # what decides that a call writes its input (and so labels it) reads the same layers
    op = allowlist.TABLES["Module"]["__call__"]
    x = torch.ones(2)
    for layer in (_OwnLayers(), _shadowed()):
        assert effects.written(op, layer, [x], {}, []) == [x]
        assert effects.may_return_input(layer)


def test_the_walks_of_many_writes_hold_what_each_holds_and_are_unknown_if_one_is():
    leaves = [torch.ones(2, requires_grad=True) for _ in range(3)]
    for leaf in leaves[:2]:
        leaf.sum().backward()
    items = [effects.Grad(leaf) for leaf in leaves]
    (merged,) = effects.walks_written(items)
    separate = [effects.walk_written(item) for item in items]
    assert set(merged.nodes) == {key for walk in separate for key in walk.nodes}
    assert id(leaves[0].grad.untyped_storage()) in merged.nodes
    assert not merged.unknown

    deep: list[object] = []
    for _ in range(MAX_WALK_DEPTH + 2):
        deep = [deep]
    (merged,) = effects.walks_written([effects.Deep(LabelList(deep)), *items])
    assert merged.unknown  # one write the owner cannot follow: what was written is unknown
    assert id(leaves[1].grad) in merged.nodes  # and the others are still labeled


class _Chameleon:
    """Each instance names the class it was told to (a proxy does this)."""

    def __init__(self, seen_as: type) -> None:
        self._seen_as = seen_as

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return self._seen_as


def test_the_table_of_an_objects_methods_is_never_remembered_for_a_class_that_can_lie():
    assert allowlist.type_key(_Chameleon(torch.optim.SGD)) == "Optimizer"
    assert allowlist.type_key(_Chameleon(nn.Module)) == "Module"
    assert allowlist.type_key(_Chameleon(object)) is None
    assert allowlist.type_key(weakref.proxy(torch.optim.SGD([torch.ones(1)]))) == "Optimizer"
    assert allowlist.type_key(weakref.proxy(nn.Linear(1, 1))) == "Module"
    # an honest class is remembered, and answers as isinstance does, every time
    assert allowlist.type_key(nn.Conv2d(1, 1, 1)) == allowlist.type_key(nn.Conv2d(2, 2, 2))
    assert allowlist.type_key(nn.Conv2d(1, 1, 1)) == "Module"
