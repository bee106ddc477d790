"""Provenance: which objects hold something derived from the owner's private data.

Results computed from a private input are private. Mutations spread privacy too: an in-place op,
a module's forward (batch-norm statistics), ``backward`` (gradients land in the graph's leaves)
and ``optimizer.step`` mark what they changed. Marks are kept per object identity (weakly), so
two ids naming one tensor (a parameter reached through a model and through ``parameters()``)
agree.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

MAX_WALK = 100_000


class Taint:
    """Marks, per object, that it holds the owner's data, and the owner's tags of that data."""

    def __init__(self) -> None:
        self._marked: dict[int, weakref.ref[Any]] = {}
        self._tags: dict[int, frozenset[str]] = {}

    def mark(self, obj: Any, tags: frozenset[str] = frozenset()) -> bool:
        """Mark ``obj`` private; False when it cannot be tracked by identity (plain numbers)."""
        key = id(obj)
        if self.is_marked(obj):
            if tags:
                self._tags[key] = self._tags.get(key, frozenset()) | tags
            return True

        def forget(_ref: weakref.ref[Any]) -> None:
            self._marked.pop(key, None)
            self._tags.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            return False
        self._marked[key] = ref
        self._tags[key] = tags
        return True

    def is_marked(self, obj: Any) -> bool:
        ref = self._marked.get(id(obj))
        return ref is not None and ref() is obj

    def touches(self, obj: Any) -> bool:
        """True when ``obj`` or anything it holds is marked."""
        return any(self.is_marked(part) for part in _holdings(obj))

    def tags_of(self, obj: Any) -> frozenset[str]:
        """The owner's tags of the data ``obj`` (or anything it holds) was derived from."""
        tags: frozenset[str] = frozenset()
        for part in _holdings(obj):
            if self.is_marked(part):
                tags |= self._tags.get(id(part), frozenset())
        return tags

    def mark_deep(self, obj: Any, tags: frozenset[str] = frozenset()) -> None:
        """Mark an object and what it holds (used when the owner publishes data)."""
        for part in _holdings(obj):
            self.mark(part, tags)

    def mark_mutated(self, op_path: str, target: Any, tags: frozenset[str] = frozenset()) -> None:
        """``target`` was changed by an op that had a private input."""
        if op_path == "Tensor.backward" and isinstance(target, torch.Tensor):
            for leaf in graph_leaves(target):
                self.mark(leaf, tags)
        else:
            self.mark_deep(target, tags)


def _holdings(obj: Any, depth: int = 0) -> Iterator[Any]:
    """``obj`` and the tensors and values it holds, as far as privacy is concerned."""
    yield obj
    if depth > 8:
        return
    if isinstance(obj, nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, torch.optim.Optimizer):
        for group in obj.param_groups:
            yield from group["params"]
    elif isinstance(obj, torch.utils.data.TensorDataset):
        yield from obj.tensors
    elif isinstance(obj, list | tuple):
        for value in obj[:10_000]:
            yield from _holdings(value, depth + 1)
    elif isinstance(obj, dict):
        for value in list(obj.values())[:10_000]:
            yield from _holdings(value, depth + 1)


def graph_leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors whose ``.grad`` a backward pass from ``tensor`` writes."""
    leaves: list[torch.Tensor] = []
    stack = [tensor.grad_fn]
    seen: set[int] = set()
    while stack and len(seen) < MAX_WALK:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.Tensor):
            leaves.append(variable)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return leaves
