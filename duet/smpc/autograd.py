"""Gradients of computations on shared tensors: ``loss.backward()`` (PySyft's Part 12).

Reverse mode over a graph recorded as the operations run, as torch's autograd does: an
operation on a shared tensor that requires a gradient records a ``Node`` (its inputs and the
rule giving their gradients from the output's); ``backward()`` visits the graph from the loss
back, in reverse topological order, and adds each leaf's gradient into its ``.grad``. Gradients
are shared tensors computed with the same shared arithmetic as the forward pass (a product's
rule is Beaver products, ReLU's a product with the comparison bit kept from the forward pass),
so nothing is revealed by training that the forward pass would not reveal.

Operations with a rule: + - (shared or public operands, broadcasting), unary -, * (shared or
public), 2-D @ / mm / matmul and F.linear, / by an int, ** n (as products), .sum(), ReLU, and
the reshapes (t, transpose, permute, view, reshape, flatten, [un]squeeze). Comparisons give 0/1
results without a gradient, as torch's do. Any other operation on a tensor that requires a
gradient (indexing, abs, max) is refused rather than silently cut from the graph.

Recording is per thread; ``no_recording()`` turns it off (the optimiser's update, the rules
themselves), like ``torch.no_grad()``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..errors import UsageError

_state = threading.local()

# a rule takes the output's gradient and gives one gradient (or None) per recorded input
Rule = Callable[[Any], Sequence[Any]]
Method = TypeVar("Method", bound=Callable[..., Any])


def recording() -> bool:
    return bool(getattr(_state, "enabled", True))


@contextmanager
def no_recording() -> Iterator[None]:
    """Operations inside record nothing (``torch.no_grad()`` for shared tensors)."""
    before = recording()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = before


@dataclass(frozen=True)
class Node:
    """How an output was made: the operation's name, its differentiable inputs, its rule."""

    name: str
    inputs: tuple[Differentiable, ...]
    rule: Rule


class Differentiable:
    """What a shared tensor carries for training: ``requires_grad``, ``grad``, ``grad_fn``."""

    requires_grad: bool = False
    grad: Any = None
    grad_fn: Node | None = None

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    def backward(self, gradient: Any = None) -> None:
        """Add d(self)/d(leaf) into every leaf's ``.grad`` that requires a gradient. ``self``
        must be a single value (a loss) unless ``gradient`` (a shared tensor of self's shape) is
        given."""
        backward(self, gradient)


def _requires(value: object) -> bool:
    return isinstance(value, Differentiable) and value.requires_grad


def tracked(
    name: str, rule_of: Callable[..., tuple[tuple[Differentiable, ...], Rule]]
) -> Callable[[Method], Method]:
    """Record ``name`` on outputs whose operands require a gradient; ``rule_of(self, *args,
    **kwargs)`` gives the inputs to differentiate and the rule."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def wrapper(self: Differentiable, *args: object, **kwargs: object) -> object:
            if not recording() or not (_requires(self) or any(map(_requires, args))):
                return method(self, *args, **kwargs)
            with no_recording():
                out = method(self, *args, **kwargs)
            inputs, rule = rule_of(self, *args, **kwargs)
            out.grad_fn = Node(name, inputs, rule)
            out.requires_grad = True
            return out

        return wrapper  # type: ignore[return-value]

    return decorate


def untracked(name: str) -> Callable[[Method], Method]:
    """Refuse ``name`` on a tensor that requires a gradient: it has no rule here."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def wrapper(self: Differentiable, *args: object, **kwargs: object) -> object:
            if recording() and (_requires(self) or any(map(_requires, args))):
                raise UsageError(
                    f"{name} on a shared tensor that requires grad: training on shares "
                    "differentiates + - * @ / ** .sum(), ReLU and reshapes only; compute it "
                    "outside the training graph (share without requires_grad=True)"
                )
            return method(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def record(out: Differentiable, name: str, inputs: tuple[Differentiable, ...], rule: Rule) -> None:
    """Record by hand, for an operation whose rule needs a value from its forward pass."""
    if recording() and any(map(_requires, inputs)):
        out.grad_fn = Node(name, inputs, rule)
        out.requires_grad = True


def _order(root: Differentiable) -> list[Differentiable]:
    """Every tensor the root depends on through requires_grad, each after all its consumers."""
    seen: set[int] = set()
    post: list[Differentiable] = []
    stack: list[tuple[Differentiable, bool]] = [(root, False)]
    while stack:
        tensor, expanded = stack.pop()
        if expanded:
            post.append(tensor)
            continue
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        stack.append((tensor, True))
        if tensor.grad_fn is not None:
            stack.extend((i, False) for i in tensor.grad_fn.inputs if id(i) not in seen)
    return post[::-1]


def backward(root: Differentiable, gradient: Any = None) -> None:
    """See ``Differentiable.backward``."""
    if not root.requires_grad:
        raise UsageError(
            "backward(): this shared tensor does not require grad; share the data or the model "
            "with requires_grad=True (model.fix_precision().share(..., requires_grad=True))"
        )
    shape = getattr(root, "shape", None)
    if gradient is None:
        if shape != torch.Size([]):
            raise UsageError(
                f"backward() without a gradient needs a single value (a loss), not shape "
                f"{tuple(shape or ())}: sum it first, e.g. ((pred - target) ** 2).sum()"
            )
        gradient = root._constant(1)  # type: ignore[attr-defined]
    grads: dict[int, Any] = {id(root): gradient}
    with no_recording():
        for tensor in _order(root):
            grad = grads.pop(id(tensor), None)
            if grad is None:
                continue
            node = tensor.grad_fn
            if node is None:
                tensor.grad = grad if tensor.grad is None else tensor.grad + grad
                continue
            for value, part in zip(node.inputs, node.rule(grad), strict=True):
                if part is None or not value.requires_grad:
                    continue
                known = grads.get(id(value))
                grads[id(value)] = part if known is None else known + part


__all__ = ["Differentiable", "Node", "backward", "no_recording", "record", "tracked", "untracked"]
