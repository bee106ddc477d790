"""What an operation changes besides its result, and what a handle may stand for.

The allowlist names each op's write effect and alias class (protocol/allowlist/); this module
binds those names to the objects they denote on the owner's side:

- ``written(...)``: the objects an op may change (its target, a model's buffers, the gradients
  a backward pass writes...), so they can be checked against the owner's published objects
  before the op runs and labeled after it;
- ``alias_candidates(...)``: the existing state an op's result may share, by the op's alias
  class (a view shares its target's storage, ``l[i]`` is one of ``l``'s items). A handle made
  by an op with a private input stands for all of it: writes through the handle label all of
  it, so *which* object was written never tells the scientist anything.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.utils.data as tud
from torch import nn

from ..protocol import allowlist
from ..protocol.allowlist.nn import FRESH_RESULT_LAYERS, RANDOM_FORWARD_LAYERS
from .labels import Walk

MAX_REACH = 100_000  # objects one handle may stand for; more: unknown (see Executor.poisoned)


def _draws_in_forward(module: nn.Module) -> bool:
    if isinstance(module, RANDOM_FORWARD_LAYERS):
        return True
    # recurrent layers apply dropout between their layers
    return isinstance(module, nn.RNNBase) and bool(module.dropout)


class Deep:
    """Written: an object and everything it holds."""

    __slots__ = ("obj",)

    def __init__(self, obj: object):
        self.obj = obj


class Grad:
    """Written: a leaf tensor's ``.grad`` (by backward)."""

    __slots__ = ("obj",)

    def __init__(self, obj: torch.Tensor):
        self.obj = obj


def root(written: object) -> object:
    return written.obj if isinstance(written, Deep | Grad) else written


def walk_written(written: object) -> Walk:
    """The state nodes one written thing covers."""
    walk = Walk()
    if isinstance(written, Deep):
        return walk.add(written.obj)
    if isinstance(written, Grad):
        leaf = written.obj
        walk.nodes[id(leaf)] = leaf
        if leaf.grad is not None:
            walk.add(leaf.grad)
        return walk
    if written is None:
        return walk
    # the object itself: a tensor's storage and metadata, a container (not what it holds)
    walk.nodes[id(written)] = written
    if isinstance(written, torch.Tensor):
        storage = written.untyped_storage()
        walk.nodes[id(storage)] = storage
    return walk


def walks_written(items: Sequence[object]) -> list[Walk]:
    """The walks of what a call wrote, as they are now: one walk holding what each of
    ``items`` covers (each walked as ``walk_written`` walks it alone: within its own limits),
    unknown when any of them is. A backward pass writes one gradient per leaf: its labels,
    charges and ended grants are then made in one pass, not one per leaf."""
    if len(items) < 2:
        return [walk_written(item) for item in items]
    merged = Walk()
    for item in items:
        walk = walk_written(item)
        merged.nodes.update(walk.nodes)
        merged.unknown = merged.unknown or walk.unknown
    return [merged]


def written(
    op: allowlist.Op,
    target: object,
    args: Sequence[object],
    kwargs: Mapping[str, object],
    leaves: list[torch.Tensor],
) -> list[object]:
    """What ``op`` may change besides its result (see allowlist.WRITES). ``target`` or an
    argument may be None when it is a failure (nothing of it to write). ``leaves`` are the
    tensors a backward pass writes gradients into."""
    effect = op.writes
    if effect is None or effect == "rng":
        return []
    if effect == "target":
        return [target] if target is not None else []
    if effect == "target_deep":
        return [Deep(target)] if target is not None else []
    if effect == "graph":
        return [Grad(leaf) for leaf in leaves]
    if effect == "module_call":
        out: list[object] = []
        if isinstance(target, nn.Module):
            modules = layers_in(target)
            if any(m.training for m in modules):
                out.extend(b for m in modules for b in m._buffers.values() if b is not None)
            # (any flag but False: ``inplace=1`` works in place as True does)
            if args and args[0] is not None and any(inplace_flag(m) is not False for m in modules):
                out.append(args[0])
        return out
    if effect == "inplace_arg":
        assert op.impl is not None
        slot = _inplace_slot(op.impl, len(args), tuple(kwargs))
        if slot is _UNBOUND:
            return []  # the call itself will fail
        if isinstance(slot, int):
            inplace = args[slot]
        elif isinstance(slot, str):
            inplace = kwargs[slot]
        elif slot is None:
            inplace = None
        else:  # not one argument: bind this call's own values
            inplace = _signature(op.impl).bind(*args, **kwargs).arguments.get("inplace")
        if inplace and args and args[0] is not None:
            return [args[0]]
        return []
    raise AssertionError(f"unknown write effect {effect}")


@functools.cache
def _signature(impl: Callable[..., object]) -> inspect.Signature:
    return inspect.signature(impl)


class _Slot:
    """Stands for one argument of a call while its shape is bound (see _inplace_slot)."""

    __slots__ = ("at",)

    def __init__(self, at: int | str):
        self.at = at


_UNBOUND = object()  # _inplace_slot: the call does not bind (it will fail)
_ANY = object()  # _inplace_slot: ``inplace`` is not one argument of it


@functools.lru_cache(maxsize=1024)
def _inplace_slot(
    impl: Callable[..., object], count: int, names: tuple[str, ...]
) -> int | str | object | None:
    """Where a call of ``impl`` with ``count`` positional arguments and keywords ``names``
    passes ``inplace``: its position, its keyword, None when it does not. Binding looks at how
    many arguments there are and their names, never at their values, so the answer holds for
    every call of this shape, and the signature is bound once per shape, not once per call."""
    placeholders = [_Slot(i) for i in range(count)]
    try:
        bound = _signature(impl).bind(*placeholders, **{n: _Slot(n) for n in names})
    except TypeError:
        return _UNBOUND
    found = bound.arguments.get("inplace")
    if found is None:
        return None
    return found.at if isinstance(found, _Slot) else _ANY


def draws(op: allowlist.Op, target: object) -> bool:
    """Whether this call draws from (or seeds) the random number generator."""
    if op.writes == "rng":
        return True
    if not op.random:
        return False
    if op.writes == "module_call" and isinstance(target, nn.Module):
        return any(m.training and _draws_in_forward(m) for m in layers_in(target))
    if isinstance(target, tud.dataloader._BaseDataLoaderIter):
        # a pass over a loader draws its order when its first batch is made (a sampler with
        # no generator of its own seeds one from torch's); later batches draw nothing (no
        # random datasets or transforms are on the allowlist), so they need not hold the
        # generator while a slow dataset makes them (executor.RNG_LOCK)
        return target._num_yielded == 0
    return True


_GRAPH_WRITES = frozenset({"graph", "target_deep", "module_call", "inplace_arg"})


def may_change_graphs(op: allowlist.Op) -> bool:
    """Whether ``op`` may decide whether a later backward pass runs, whatever it is called on:
    it may write a tensor in place (a graph that saved it refuses to run) or run a backward
    pass (it frees the graph). For a method, any type's method of that name counts: which type
    a handle names may be private."""
    if op.kind == "function":
        return _changes_graphs(op)
    return _named_changes_graphs(op.name)


def _changes_graphs(op: allowlist.Op) -> bool:
    return op.writes in _GRAPH_WRITES or (op.writes == "target" and op.path.startswith("Tensor."))


@functools.cache
def _named_changes_graphs(name: str) -> bool:
    return any(_changes_graphs(t[name]) for t in allowlist.TABLES.values() if name in t)


_MODULE_GETATTR = nn.Module.__getattr__
_MODULES = nn.Module.modules
_NAMED_MODULES = nn.Module.named_modules


def layers_in(module: nn.Module) -> Sequence[nn.Module]:
    """``list(module.modules())``: the module and every layer under it, once each.

    Most calls are on a layer with no layers of its own (a convolution, a dropout), which is
    then alone, without the generator and the set ``modules()`` makes per call: when its class
    finds attributes, lists its layers and hashes as every Module does, and it holds no layer
    (``_modules`` empty), ``modules()`` would yield exactly it."""
    kind = type(module)
    own = getattr(module, "__dict__", None)
    if (
        kind.__getattribute__ is object.__getattribute__
        and kind.modules is _MODULES
        and kind.named_modules is _NAMED_MODULES
        and kind.__hash__ is object.__hash__
        and type(own) is dict
        and "modules" not in own
        and "named_modules" not in own
        and type(own.get("_modules")) is dict
        and not own["_modules"]
    ):
        return (module,)
    return list(module.modules())


def inplace_flag(module: nn.Module) -> object:
    """``getattr(module, "inplace", False)``: a layer's in-place flag, False when it has none.

    Most layers have none, and a missing attribute costs a Module an exception raised and
    caught (per layer, per call): for a layer that looks attributes up the way every Module
    does, the places ``inplace`` could be found are read directly, and only when it is in one
    of them is it looked up."""
    kind = type(module)
    if (
        kind.__getattr__ is not _MODULE_GETATTR
        or kind.__getattribute__ is not object.__getattribute__
    ):
        return getattr(module, "inplace", False)
    own = module.__dict__
    if (
        "inplace" in own
        or hasattr(kind, "inplace")
        or "inplace" in own.get("_parameters", ())
        or "inplace" in own.get("_buffers", ())
        or "inplace" in own.get("_modules", ())
    ):
        return getattr(module, "inplace", False)
    return False  # what Module.__getattr__ would have raised, and getattr's default


def may_return_input(module: object) -> bool:
    """Whether calling ``module`` may hand back its input (or a view of it): an identity, a
    flatten, a dropout in evaluation mode, a layer working in place, an empty Sequential."""
    if not isinstance(module, nn.Module):
        return True
    for layer in layers_in(module):
        if inplace_flag(layer) is not False:
            return True
        if isinstance(layer, nn.Sequential):
            if len(layer) == 0:
                return True
            continue
        if not isinstance(layer, FRESH_RESULT_LAYERS):
            return True
    return False


def may_draw(op: allowlist.Op) -> bool:
    """Whether ``op`` may draw from (or seed) the generator, whatever state it finds: whether a
    model's forward draws depends on its training flags, which may be private."""
    return op.random or op.writes == "rng"


def mutable(nodes: Iterable[object]) -> list[object]:
    """The nodes that carry state of their own (not plain containers)."""
    return [n for n in nodes if type(n) not in (list, tuple, dict)]


def alias_candidates(
    op: allowlist.Op | None, target: object, values: Iterable[object], *, aliases: str | None = ""
) -> Walk:
    """The existing state a result of ``op`` may share (``values``: its named arguments), by
    its alias class (or ``aliases``, when given).

    An unknown op (its target failed, or was of a type chosen privately) may alias anything it
    was given: a layer's call hands back its input, and the op that would have run is not known
    (a failed target's own candidates stand in for the target)."""
    walk = Walk()
    if aliases == "":
        aliases = "all" if op is None else op.aliases
    if aliases is None:
        return walk
    if aliases in ("target", "all") and target is not None:
        walk.add(target)
    if aliases in ("args", "all"):
        for value in values:
            walk.add(value)
    return walk


def refs(nodes: Iterable[object]) -> tuple[tuple[weakref.ref[object], ...], bool]:
    """Weak references to ``nodes`` (once each); True when there are too many to keep."""
    seen: dict[int, weakref.ref[object]] = {}
    for node in nodes:
        key = id(node)
        if key in seen:
            continue
        try:
            seen[key] = weakref.ref(node)
        except TypeError:
            continue
        if len(seen) > MAX_REACH:
            return (), True
    return tuple(seen.values()), False


def leaves_in(value: object) -> list[torch.Tensor]:
    """Leaf tensors that require gradients, held by ``value`` (bounded)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.requires_grad and value.is_leaf else []
    if isinstance(value, int | float | str | bool | type(None)):
        return []
    walk = Walk(limit=50_000).add(value)
    return [
        n
        for n in walk.nodes.values()
        if isinstance(n, torch.Tensor) and n.requires_grad and n.is_leaf
    ]
