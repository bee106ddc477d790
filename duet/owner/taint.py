"""Provenance: which objects hold something derived from the owner's private data.

Results computed from a private input are private. Mutations spread privacy too: an in-place op,
a module's forward (batch-norm statistics), ``backward`` (gradients land in the graph's leaves)
and ``optimizer.step`` mark what they changed. Marks are kept per object identity (weakly), so
two ids naming one tensor (a parameter reached through a model and through ``parameters()``)
agree.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

MAX_WALK = 100_000


class Taint:
    def __init__(self) -> None:
        self._marked: dict[int, weakref.ref[Any]] = {}

    def mark(self, obj: Any) -> bool:
        """Mark ``obj`` private; False when it cannot be tracked by identity (plain numbers)."""
        key = id(obj)

        def forget(_ref: weakref.ref[Any]) -> None:
            self._marked.pop(key, None)

        try:
            ref = weakref.ref(obj, forget)
        except TypeError:
            return False
        self._marked[key] = ref
        return True

    def is_marked(self, obj: Any) -> bool:
        ref = self._marked.get(id(obj))
        return ref is not None and ref() is obj

    def touches(self, obj: Any, depth: int = 0) -> bool:
        """True when ``obj`` or anything it holds is marked."""
        if self.is_marked(obj):
            return True
        if depth > 8:
            return False
        if isinstance(obj, nn.Module):
            return any(self.is_marked(t) for t in obj.parameters()) or any(
                self.is_marked(t) for t in obj.buffers()
            )
        if isinstance(obj, torch.optim.Optimizer):
            return any(self.is_marked(p) for group in obj.param_groups for p in group["params"])
        if isinstance(obj, list | tuple):
            return any(self.touches(v, depth + 1) for v in obj[:10_000])
        if isinstance(obj, dict):
            return any(self.touches(v, depth + 1) for v in list(obj.values())[:10_000])
        if isinstance(obj, torch.utils.data.TensorDataset):
            return any(self.is_marked(t) for t in obj.tensors)
        return False

    def mark_deep(self, obj: Any) -> None:
        """Mark an object and what it holds (used when the owner publishes data)."""
        self.mark(obj)
        if isinstance(obj, torch.utils.data.TensorDataset):
            for t in obj.tensors:
                self.mark(t)
        elif isinstance(obj, nn.Module):
            for t in obj.parameters():
                self.mark(t)
            for t in obj.buffers():
                self.mark(t)
        elif isinstance(obj, list | tuple):
            for v in obj:
                self.mark_deep(v)

    def mark_mutated(self, op_path: str, target: Any) -> None:
        """``target`` was changed by an op that had a private input."""
        if op_path == "Tensor.backward" and isinstance(target, torch.Tensor):
            for leaf in graph_leaves(target):
                self.mark(leaf)
        elif isinstance(target, torch.optim.Optimizer):
            self.mark(target)
            for group in target.param_groups:
                for p in group["params"]:
                    self.mark(p)
        elif isinstance(target, nn.Module):
            self.mark_deep(target)
        else:
            self.mark(target)


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
