"""Information-flow labels: which of the owner's data a value may depend on.

A *label* is the set of sources a value may depend on. A source is one published object of the
owner (named by its tags), one piece of the owner's own information (its files, its machine),
or ``UNKNOWN`` when the owner cannot tell (fail closed). The empty label means the value depends
only on what the scientist sent: it may be released without a request.

Labels live where the state lives, so aliases cannot launder them:

- every *entry* (a handle the scientist holds) carries the label of the operation that made it;
  this covers immutable values (numbers, strings, tuples) and which object the handle names;
- every piece of mutable state carries its own label in a ``LabelRegistry``: tensor storages
  (views and aliases share them), tensor objects (shape, ``.grad``), models, optimizers,
  schedulers, loaders, iterators, datasets, transforms, and the owner-side lists and dicts.
  An operation with a labeled input joins its label into everything it writes.

The label of a value is its entry's label joined with the labels of every piece of state
reachable from it (``StateWalk``). A walk that meets an object of unknown kind, or that would go
too far or too deep, yields ``UNKNOWN``: private.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.utils.data as tud
from torch import nn

from ..protocol.allowlist.type_keys import honest_class

MAX_WALK_NODES = 200_000  # state nodes visited to label one value; more: UNKNOWN
MAX_WALK_DEPTH = 64


@dataclass(frozen=True)
class Source:
    """One thing of the owner's a value may depend on.

    ``part`` says how: "values" (the data itself: any of its numbers may show in the value) or
    "shape" (only its shape: a published tensor's size, a dataset's length, the number of
    batches of a loader over it). Shape sources are made only where the owner can tell that a
    value depends on nothing else (executor.py); every other dependency is on the values."""

    kind: str  # "data" (a published object), "owner" (its files, its machine), "unknown"
    name: str  # the published object's id, or the operation that read the owner's information
    tags: frozenset[str] = frozenset()
    part: str = "values"  # or "shape"

    def __repr__(self) -> str:
        shown = ",".join(sorted(self.tags)) or self.name
        kind = "shape" if self.part == "shape" else self.kind
        return f"<{kind}:{shown}>"

    def shape(self) -> Source:
        """The source of this object's shape alone."""
        return Source(self.kind, self.name, self.tags, "shape")


Label = frozenset[Source]
EMPTY: Label = frozenset()
UNKNOWN_SOURCE = Source("unknown", "unknown")
UNKNOWN: Label = frozenset({UNKNOWN_SOURCE})


def join(*labels: Label) -> Label:
    out = EMPTY
    for label in labels:
        if label:
            out = label if not out else out | label
    return out


def tags_of(label: Label) -> list[str]:
    """The owner's tags of the sources in ``label``, sorted."""
    return sorted({tag for source in label for tag in source.tags})


def shapes_only(label: Label) -> bool:
    """Whether ``label`` depends on the owner's data through shapes alone (and on something)."""
    return bool(label) and all(source.part == "shape" for source in label)


def shape_label(label: Label) -> Label:
    """What the shape of a value labeled ``label`` depends on, when that value is one of the
    owner's published objects itself (its data sources become shape sources)."""
    return frozenset(s.shape() if s.kind == "data" else s for s in label)


class LabelList(list[object]):
    """A list on the owner's side that can carry a label (plain lists cannot be weakly
    referenced). Every list a scientist can name is one of these."""

    __slots__ = ("__weakref__",)


class LabelDict(dict[object, object]):
    """A dict on the owner's side that can carry a label (see LabelList)."""

    __slots__ = ("__weakref__",)


def owner_containers(value: object, depth: int = 0) -> object:
    """``value`` with every plain list and dict (inside lists, tuples and dicts) replaced by a
    LabelList / LabelDict copy, so that every container a scientist can name carries a label.

    Tensors and other objects are kept as they are (they carry labels of their own); owner-side
    containers already in place are kept too, so aliases stay aliases.
    """
    if depth > MAX_WALK_DEPTH:
        raise ValueError(f"containers nested deeper than {MAX_WALK_DEPTH} levels")
    if type(value) is list:
        if all(type(v) in _SCALAR_TYPES for v in value):
            return LabelList(value)
        return LabelList([owner_containers(v, depth + 1) for v in value])
    if type(value) is dict:
        return LabelDict({k: owner_containers(v, depth + 1) for k, v in value.items()})
    if type(value) is tuple:
        items = tuple(owner_containers(v, depth + 1) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


_SCALARS = (int, float, bool, str, bytes, complex, type(None), torch.dtype, torch.device,
            torch.Size, slice, type(Ellipsis))  # fmt: skip
_SCALAR_TYPES = frozenset({int, float, bool, str, bytes, complex, type(None)})
_SCALAR_EXACT = frozenset({*_SCALAR_TYPES, torch.dtype, torch.device, torch.Size, slice,
                           type(Ellipsis)})  # fmt: skip
_PLAIN_TENSORS = frozenset({torch.Tensor, nn.Parameter})
# common node types that are not tensors (their isinstance check is skipped)
_NOT_TENSORS = frozenset({LabelList, LabelDict, list, tuple, dict})


def _is_vision_object(obj: object) -> bool:
    module = type(obj).__module__
    return module.startswith("torchvision.datasets") or module.startswith("torchvision.transforms")


# What Walk.add does with a node, by kind (the order of its checks, see _kind_of)
(_TENSOR, _SCALAR, _LABEL_LIST, _LABEL_DICT, _SEQUENCE, _DICT, _MODULE, _OPTIMIZER, _SCHEDULER,
 _LOADER, _LOADER_ITER, _TENSOR_DATASET, _ARRAY, _DISTRIBUTION, _VISION, _OPAQUE) = range(16)  # fmt: skip
_MAX_KINDS = 4096
# type -> its kind, for types whose instances cannot claim another class (see _kind_of)
_KINDS: dict[type, int] = {}


def _kind_of(obj: object) -> int:
    """What a walk does with ``obj``: the first of its checks ``obj`` passes. Remembered for its
    type when every instance of it passes the same ones: its attribute lookup is the generic
    one and it does not redefine ``__class__`` (isinstance also believes ``obj.__class__``)."""
    kind = type(obj)
    if kind not in _NOT_TENSORS and isinstance(obj, torch.Tensor):
        found = _TENSOR
    elif isinstance(obj, _SCALARS):
        found = _SCALAR
    elif isinstance(obj, LabelList):
        found = _LABEL_LIST
    elif isinstance(obj, LabelDict):
        found = _LABEL_DICT
    elif isinstance(obj, list | tuple):
        found = _SEQUENCE
    elif isinstance(obj, dict):
        found = _DICT
    elif isinstance(obj, nn.Module):
        found = _MODULE
    elif isinstance(obj, torch.optim.Optimizer):
        found = _OPTIMIZER
    elif isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        found = _SCHEDULER
    elif isinstance(obj, tud.DataLoader):
        found = _LOADER
    elif isinstance(obj, tud.dataloader._BaseDataLoaderIter):
        found = _LOADER_ITER
    elif isinstance(obj, tud.TensorDataset):
        found = _TENSOR_DATASET
    elif isinstance(obj, np.ndarray):
        found = _ARRAY
    elif isinstance(obj, torch.distributions.Distribution):
        found = _DISTRIBUTION
    elif _is_vision_object(obj):
        found = _VISION
    else:
        found = _OPAQUE
    if len(_KINDS) < _MAX_KINDS and honest_class(kind):
        _KINDS[kind] = found
    return found


class Walk:
    """The state nodes reachable from some values (what their labels are read from).

    ``nodes`` maps id -> node for every labeled piece of state met; ``unknown`` is set when the
    walk met an object it cannot see into or went past its limits: the values are then private.
    """

    __slots__ = ("_limit", "nodes", "unknown")

    def _tensor(self, tensor: torch.Tensor) -> bool:
        """Add a tensor without a gradient; False when it needs the general walk."""
        if tensor.is_leaf and tensor.grad is not None:
            return False
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return False
        self.nodes[id(tensor)] = tensor
        self.nodes[id(storage)] = storage
        return True

    def __init__(self, limit: int = MAX_WALK_NODES):
        self.nodes: dict[int, object] = {}
        self.unknown = False
        self._limit = limit

    def add(self, value: object) -> Walk:
        # the common case, quickly (a plain tensor: its type checked first)
        if type(value) in _PLAIN_TENSORS and self._tensor(cast(torch.Tensor, value)):
            return self
        # (the loop is the owner's hottest: names are locals, a node's kind is looked up by its
        # type, children are pushed by list comprehensions, in the order a plain walk would)
        stack: list[tuple[Any, int]] = [(value, 0)]
        pop, push = stack.pop, stack.append
        nodes = self.nodes
        limit = self._limit
        kinds = _KINDS
        scalars, scalar_exact, plain_tensors = _SCALARS, _SCALAR_EXACT, _PLAIN_TENSORS
        while stack:
            obj, depth = pop()
            kind = type(obj)
            if kind in scalar_exact:
                continue
            if depth > MAX_WALK_DEPTH or len(nodes) > limit:
                self.unknown = True
                return self
            key = id(obj)
            if key in nodes:
                continue
            if kind in plain_tensors:
                found = _TENSOR
            else:
                found = kinds.get(kind, -1)
                if found < 0:
                    found = _kind_of(obj)
            if found == _TENSOR:
                nodes[key] = obj
                try:
                    storage = obj.untyped_storage()
                except (RuntimeError, NotImplementedError):  # no storage to label: fail closed
                    self.unknown = True
                    continue
                nodes[id(storage)] = storage
                if obj.is_leaf:
                    grad = obj.grad
                    if grad is not None:
                        push((grad, depth + 1))
                continue
            if found == _SCALAR:
                continue
            if found == _OPAQUE:
                self.unknown = True
                continue
            nodes[key] = obj
            deeper = depth + 1
            if found == _LABEL_LIST or found == _SEQUENCE:  # a plain one: only its contents
                stack.extend([(v, deeper) for v in obj if not isinstance(v, scalars)])
            elif found == _DICT:  # (what would be skipped when popped is not pushed)
                for k, v in obj.items():
                    if type(k) not in scalar_exact:
                        push((k, deeper))
                    if type(v) not in scalar_exact:
                        push((v, deeper))
            elif found == _MODULE:
                stack.extend([(t, deeper) for t in obj._parameters.values() if t is not None])
                stack.extend([(t, deeper) for t in obj._buffers.values() if t is not None])
                stack.extend([(m, deeper) for m in obj._modules.values() if m is not None])
            elif found == _LABEL_DICT:
                for k, v in obj.items():
                    if not isinstance(k, scalars):
                        push((k, deeper))
                    if not isinstance(v, scalars):
                        push((v, deeper))
            elif found == _OPTIMIZER:
                push((obj.param_groups, deeper))
                stack.extend([(s, deeper) for s in obj.state.values()])
            elif found == _SCHEDULER:
                push((obj.optimizer, deeper))
            elif found == _LOADER:
                push((obj.dataset, deeper))
            elif found == _LOADER_ITER:
                push((obj._dataset, deeper))
            elif found == _TENSOR_DATASET:
                stack.extend([(t, deeper) for t in obj.tensors])
            elif found == _DISTRIBUTION:
                # what it holds: the tensors it was made from and those it derived (probs,
                # logits, loc...); anything else in it is unknown
                stack.extend(
                    [(v, deeper) for v in vars(obj).values() if not isinstance(v, scalars)]
                )
            # (_ARRAY: numbers only (serde refuses object arrays), never a view the owner made:
            # the array is one piece of state, like a storage; _VISION: opened from the owner's
            # files or built from plain settings, nothing a scientist can change in place: the
            # object's own label covers it)
        return self


class _Record(weakref.ref):  # type: ignore[type-arg]
    """What the registry knows of one node: a weak reference to it (the record itself), its
    label, whether it is protected (published), and how many reviews it is frozen for. Made as
    ``_Record(node, _forget)`` and then filled in (LabelRegistry._set): one object and no
    callback of its own per node, as quota._Charge."""

    __slots__ = ("frozen", "key", "label", "protected", "records")
    frozen: int
    key: int
    label: Label
    protected: bool
    records: dict[int, _Record]


def _forget(record: _Record) -> None:
    """A labeled node died (the weakref callback): its record goes."""
    records = record.records
    if records.get(record.key) is record:
        del records[record.key]


class LabelRegistry:
    """Labels of mutable state, kept per object and forgotten when the object dies.

    ``protected`` state belongs to the owner's published objects: its label is fixed when it
    is published and nothing a scientist does may write it. ``frozen`` state is under review:
    a request for it waits for the owner, and until it is decided the scientist may not change
    what will be released.

    Thread-safe for the owner's use: the executor threads write, anyone may read.
    """

    def __init__(self) -> None:
        # id(node) -> its record (a weak reference to it, its label, protected, times frozen)
        self._records: dict[int, _Record] = {}
        self._lock = threading.Lock()

    def _record(self, node: object) -> _Record | None:
        record = self._records.get(id(node))
        if record is not None and record() is node:
            return record
        return None

    def label(self, node: object) -> Label:
        record = self._records.get(id(node))
        if record is None or record() is not node:
            return EMPTY
        return record.label

    def is_protected(self, node: object) -> bool:
        """Whether ``node`` belongs to the owner's published objects."""
        record = self._record(node)
        return record is not None and record.protected

    def _set(self, node: object, label: Label, protected: bool) -> _Record | None:
        key = id(node)
        try:
            record = _Record(node, _forget)
        except TypeError:
            return None
        record.key, record.label, record.protected, record.frozen = key, label, protected, 0
        record.records = self._records
        self._records[key] = record
        return record

    def join(self, node: object, label: Label) -> None:
        """Add ``label`` to what ``node`` may depend on (protected nodes stay as published)."""
        if not label:
            return
        with self._lock:
            record = self._record(node)
            if record is None:
                self._set(node, label, False)
            elif not record.protected and not label <= record.label:
                record.label = record.label | label

    def protect(self, node: object, label: Label) -> None:
        with self._lock:
            record = self._record(node)
            if record is None:
                self._set(node, label, True)
            else:
                record.label = record.label | label
                record.protected = True

    def freeze(self, nodes: Iterable[object], delta: int = 1) -> None:
        """Mark ``nodes`` under review (``delta=-1``: one review fewer)."""
        with self._lock:
            for node in nodes:
                if type(node) in (list, tuple, dict):
                    continue
                record = self._record(node)
                if record is None:
                    record = self._set(node, EMPTY, False)
                if record is not None:
                    record.frozen = max(0, record.frozen + delta)

    # ---- over walks
    def label_of(self, walk: Walk) -> Label:
        label = UNKNOWN if walk.unknown else EMPTY
        records = self._records
        for key, node in walk.nodes.items():
            record = records.get(key)
            if record is not None and record() is node:
                found = record.label
                # (most nodes of a walk carry the same label object: no union made for those)
                if found and found is not label:
                    label = found if not label else label | found
        return label

    def protected_in(self, walk: Walk) -> tuple[object, str] | None:
        """The first node of ``walk`` a scientist may not write, and why
        ("published" or "under review"); None when there is none."""
        records = self._records
        for key, node in walk.nodes.items():
            record = records.get(key)
            if record is not None and (record.protected or record.frozen) and record() is node:
                return node, "published" if record.protected else "under review"
        return None

    def join_all(
        self, nodes: Iterable[object], label: Label, *, skip: Mapping[int, object]
    ) -> None:
        """Join ``label`` into every node not in ``skip`` (plain containers carry none)."""
        if not label:
            return
        records = self._records
        with self._lock:
            for node in nodes:
                key = id(node)
                if key in skip or type(node) in (list, tuple, dict):
                    continue
                record = records.get(key)  # (self._record, inline: once per node written)
                if record is None or record() is not node:
                    self._set(node, label, False)
                elif not record.protected and not label <= record.label:
                    record.label = record.label | label

    def protect_all(self, walk: Walk, label: Label) -> None:
        for node in walk.nodes.values():
            if type(node) not in (list, tuple, dict):
                self.protect(node, label)

    def __len__(self) -> int:
        return len(self._records)
