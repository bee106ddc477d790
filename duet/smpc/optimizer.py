"""``optim.SGD(params=model.parameters(), lr=0.1).fix_precision()``: plain SGD on shared weights.

A model shared with ``requires_grad=True`` keeps its shared weights where its ``forward`` finds
them and lists, as its parameters, one ``SharedParameter`` each: an empty torch parameter (on
the meta device, no data) that names the shared weight it stands for. That lets torch's own
optimiser constructor take ``model.parameters()`` as PySyft's Part 12 writes it; its
``.fix_precision()`` then returns a ``SharedSGD`` over the shared weights, whose ``step()``
computes w - lr * w.grad on shares (lr in fixed point) and ``zero_grad()`` clears the gradients.

Only plain SGD is supported: momentum, weight decay, Nesterov, ``maximize`` and other optimisers
are refused (their state would be more shared tensors; not built). A ``SharedParameter``'s
``.grad`` is its shared weight's gradient, so ``model.zero_grad()`` clears it, and torch's own
``step()`` (an optimiser not converted) meets a shared gradient and is a ``UsageError`` naming
the fix.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .autograd import no_recording

Shared = Any  # a SharedTensor


class SharedParameter(nn.Parameter):
    """A shared model's parameter as torch's optimisers see it: the shape, no data. ``shared``
    is the shared weight."""

    shared: Shared

    def __new__(cls, shared: Shared) -> SharedParameter:
        placeholder = torch.empty(tuple(shared.shape), device="meta")
        parameter = super().__new__(cls, placeholder, requires_grad=True)
        parameter.shared = shared
        return parameter

    # torch reads and clears a parameter's gradient through .grad (model.zero_grad(), an
    # optimiser's step): here that is the shared weight's gradient
    @property  # type: ignore[override]
    def grad(self) -> Shared:
        return self.shared.grad

    @grad.setter
    def grad(self, value: object) -> None:
        if value is not None:
            raise UsageError("a shared weight's gradient comes from loss.backward() on shares")
        self.shared.grad = None

    def __repr__(self) -> str:  # type: ignore[override]  # not the meta tensor
        holders = ", ".join(w.id for w in self.shared.holders)
        return f"SharedParameter(shape={tuple(self.shape)}, shared among {holders})"


class SharedSGD:
    """SGD on shared weights (``w <- w - lr * w.grad``), made by ``optimizer.fix_precision()``."""

    def __init__(self, groups: list[tuple[float, list[Shared]]]):
        self.groups = groups

    @property
    def param_groups(self) -> list[dict[str, object]]:
        return [{"lr": lr, "params": params} for lr, params in self.groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (the next ``backward()`` starts from none)."""
        for _lr, params in self.groups:
            for param in params:
                param.grad = None

    def step(self) -> None:
        """One update of every weight that has a gradient, on shares."""
        with no_recording():
            for lr, params in self.groups:
                for param in params:
                    if param.grad is not None:
                        param._assign(param - param.grad * lr)

    def __repr__(self) -> str:
        rates = ", ".join(f"lr={lr}" for lr, _ in self.groups)
        return f"SharedSGD({rates}, {sum(len(p) for _, p in self.groups)} shared weights)"


def fix_optimizer(self: torch.optim.Optimizer, *args: object, **_ignored: object) -> SharedSGD:
    """``optimizer.fix_precision()``: the optimizer, over a shared model's weights."""
    if type(self) is not torch.optim.SGD:
        raise UsageError(
            f"{type(self).__name__}.fix_precision(): training on shares supports plain "
            "optim.SGD(params=model.parameters(), lr=...) only"
        )
    groups = []
    for group in self.param_groups:
        extras = [
            key
            for key, plain in (("momentum", 0), ("dampening", 0), ("weight_decay", 0))
            if group.get(key, plain) != plain
        ] + [key for key in ("nesterov", "maximize") if group.get(key)]
        if extras:
            raise UsageError(
                f"SGD with {', '.join(extras)} on shares is not supported: use plain SGD (lr only)"
            )
        params = group["params"]
        if not all(isinstance(p, SharedParameter) for p in params):
            raise UsageError(
                "optimizer.fix_precision() takes a shared model's parameters: "
                "model.fix_precision().share(alice, bob, crypto_provider=james, "
                "requires_grad=True), then optim.SGD(params=model.parameters(), lr=0.1)"
            )
        lr = group["lr"]
        if isinstance(lr, torch.Tensor):
            lr = float(lr)
        groups.append((float(lr), [p.shared for p in params]))
    return SharedSGD(groups)


__all__ = ["SharedParameter", "SharedSGD", "fix_optimizer"]
