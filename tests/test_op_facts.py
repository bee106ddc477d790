"""Each op's facts are declared with it (protocol/allowlist/), and the owner binds every one: an op
that allocates has a size rule, an op that writes has an effect, an op that draws is random.

The facts are checked against what torch says where it can be asked (an ``inplace`` parameter,
a layer whose weights differ under two seeds) and against torch's naming otherwise."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from duet.owner import effects, sizes
from duet.protocol import allowlist
from duet.protocol.allowlist import SIZE_RULES, WRITES, Op
from duet.protocol.devices import MODULE_MOVES
from duet.protocol.modules import LAYERS


def every_op() -> list[tuple[str, Op]]:
    """(where, op) for every entry: functions by path, methods by their table and name."""
    ops = [(path, op) for path, op in allowlist.FUNCTIONS.items()]
    for kind, table in allowlist.TABLES.items():
        ops.extend((f"{kind}.{name}", op) for name, op in table.items())
    return ops


def refused(found: list[str]) -> str:
    return "\n".join(found)


# ---------------------------------------------------------------- sizes

# ops whose result is a tensor (or a kind worked out per call) that are declared to make
# nothing of size, and why
MAKES_NOTHING_NEW = {
    "Module.weight": "a tensor the model holds",
    "Module.bias": "a tensor the model holds",
    "Tuple.__getitem__": "an item the tuple holds",
    "Size.__getitem__": "an item the size holds",
    "List.__getitem__": "an item the list holds",
    "Dataset.__getitem__": "a sample: views of a TensorDataset's tensors, or an image bounded "
    "by MAX_IMAGE_SIDE, charged once made",
    "Transform.__call__": "an image bounded by MAX_IMAGE_SIDE, charged once made",
    "torchvision.datasets.MNIST": "a dataset over the owner's files: it makes samples when asked",
    "torchvision.datasets.FashionMNIST": "a dataset over the owner's files",
}


def test_every_op_declares_a_size_rule():
    undeclared = [where for where, op in every_op() if op.size is None]
    assert not undeclared, f"ops without a size rule (size=...):\n{refused(undeclared)}"


def test_every_op_that_makes_a_tensor_has_a_size_rule():
    holes = [
        f"{where} ({op.path})"
        for where, op in every_op()
        if (op.returns == "Tensor" or callable(op.returns))
        and op.size == "nothing"
        and where not in MAKES_NOTHING_NEW
    ]
    assert not holes, f"ops that make a tensor but declare size='nothing':\n{refused(holes)}"


def test_every_size_rule_has_its_estimate_on_the_owner():
    assert set(sizes.RULES) == set(SIZE_RULES), (
        f"size rules without an estimate in owner/sizes.py: {sorted(SIZE_RULES - set(sizes.RULES))}; "
        f"estimates of no rule: {sorted(set(sizes.RULES) - SIZE_RULES)}"
    )
    unbound = [where for where, op in every_op() if op.size not in sizes.RULES]
    assert not unbound, refused(unbound)


def test_an_unknown_size_rule_is_refused_where_the_op_is_declared():
    with pytest.raises(ValueError, match=r"unknown size rule 'huge' for torch\.zeros"):
        Op("torch.zeros", "function", size="huge")  # type: ignore[arg-type]


# ---------------------------------------------------------------- writes

# Python's and torch's ops that change what they are called on, by name
CHANGES_ITS_TARGET = {
    "append", "extend", "insert", "reverse", "clear", "pop", "update", "__setitem__",
    "__next__", "step", "zero_grad", "train", "eval", "load_state_dict", "backward",
}  # fmt: skip


def _in_place_by_name(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name in (
        "__iadd__",
        "__isub__",
        "__imul__",
        "__itruediv__",
    )


def test_every_op_that_writes_in_place_has_an_effect():
    missing = [
        where
        for where, op in every_op()
        if op.kind != "function"
        and (op.mutates or _in_place_by_name(op.name) or op.name in CHANGES_ITS_TARGET)
        and op.writes is None
    ]
    missing += [
        path for path, op in allowlist.FUNCTIONS.items() if "seed" in path and not op.writes
    ]
    missing += [f"Module.{name}" for name in ("__call__", "forward")
                if allowlist.TABLES["Module"][name].writes != "module_call"]  # fmt: skip
    assert not missing, f"ops that write without a write effect (writes=...):\n{refused(missing)}"


def _takes_inplace(impl: object) -> bool:
    try:
        return "inplace" in inspect.signature(impl).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def test_every_function_taking_inplace_writes_its_argument():
    missing = [
        path
        for path, op in allowlist.FUNCTIONS.items()
        if path.startswith("torch.nn.functional.")
        and _takes_inplace(op.impl)
        and op.writes != "inplace_arg"
    ]
    assert not missing, f"functions taking inplace= without writes='inplace_arg': {missing}"


def _inplace_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return torch.relu_(x) if inplace else torch.relu(x)


def test_every_write_effect_is_bound_on_the_owner():
    assert {op.writes for _, op in every_op()} - {None} <= WRITES
    target, leaf = torch.zeros(2), torch.zeros(2, requires_grad=True)
    for effect in sorted(WRITES):
        op = Op("Tensor.test", "method", impl=_inplace_relu, writes=effect, size="nothing")  # type: ignore[arg-type]
        effects.written(op, target, [target], {}, [leaf])  # an unknown one: AssertionError


# ---------------------------------------------------------------- randomness

# torch's ops that draw from the generator, by name
DRAWS = {
    "randn", "rand", "randint", "randn_like", "rand_like", "randperm", "normal", "normal_",
    "uniform_", "bernoulli", "bernoulli_", "multinomial", "exponential_", "random_",
    "dropout", "dropout2d", "dropout1d", "dropout3d", "alpha_dropout", "rrelu", "sample",
    "rsample",
}  # fmt: skip
# entries that may draw, by where: a model's call (dropout), a pass over a shuffling loader
DRAWING_ENTRIES = {"Module.__call__", "Module.forward", "DataLoader.__iter__",
                   "DataLoaderIter.__next__"}  # fmt: skip


def test_every_op_that_draws_is_marked_random():
    unmarked = [
        where
        for where, op in every_op()
        if (op.name in DRAWS or where in DRAWING_ENTRIES) and not op.random
    ]
    assert not unmarked, f"ops that draw without random=True:\n{refused(unmarked)}"


def _built(cls: type[nn.Module], seed: int) -> nn.Module | None:
    for args in ((), (4,), (4, 4), (4, 4, 3)):
        torch.manual_seed(seed)
        try:
            return cls(*args)
        except (TypeError, ValueError):
            continue
    return None


def test_every_layer_whose_weights_are_drawn_is_marked_random():
    unmarked = []
    for path, (cls, _) in LAYERS.items():
        first, second = _built(cls, 0), _built(cls, 1)
        assert first is not None and second is not None, f"could not build {path}"
        drawn = any(
            not torch.equal(a, b)
            for a, b in zip(first.parameters(), second.parameters(), strict=True)
        )
        if drawn and not allowlist.FUNCTIONS[path].random:
            unmarked.append(path)
    assert not unmarked, f"layers built with drawn weights without random=True: {unmarked}"


# ---------------------------------------------------------------- aliasing


def test_every_op_that_writes_its_target_and_hands_it_back_aliases_it():
    # x.add_(y) is x: a handle to the result stands for the target
    missing = [
        where
        for where, op in every_op()
        if where.startswith("Tensor.") and op.mutates and op.aliases != "target"
    ]
    assert not missing, refused(missing)


def test_the_shape_queries_are_the_ops_declared_so():
    assert {"__len__", "size", "numel", "dim", "shape", "ndim"} == allowlist.SHAPE_OPS


def test_every_op_that_can_make_leaves_is_marked_so_and_writes_its_target():
    # requires_grad_() and a model's moves to another device or precision can make tensors
    # gradients flow into; the owner registers them (Executor._record) only when told so
    for _, op in every_op():
        if op.name == "requires_grad_" or (
            op.path.startswith("Module.") and op.name in MODULE_MOVES
        ):
            assert op.makes_leaves, f"{op.path} can make leaves and is not marked makes_leaves"
        if op.makes_leaves:
            assert op.writes is not None, f"{op.path} makes leaves but declares no write"
