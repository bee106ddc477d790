"""``torch.distributions`` on the owner's side: the distributions a scientist may build there.

``m = duet.torch.distributions.Categorical(probs_ptr)`` builds the distribution on the owner's
side; ``m.sample()`` draws from the scientist's own random number generator there and
``m.log_prob(action)`` stays a pointer, as in PySyft's reinforcement learning examples.

A distribution holds the tensors it was made from (``Normal(loc, scale).loc`` is ``loc``
itself) and those it derives (``probs`` from ``logits``): the owner labels it by what it holds
(owner/labels.py), its constructors may alias their arguments and its members may alias it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .allowlist import Op

# name -> the keyword arguments its constructor takes
DISTRIBUTIONS: dict[str, frozenset[str]] = {
    "Categorical": frozenset({"probs", "logits", "validate_args"}),
    "Bernoulli": frozenset({"probs", "logits", "validate_args"}),
    "Normal": frozenset({"loc", "scale", "validate_args"}),
}
SAMPLING = ("sample", "rsample")  # draw from the generator
METHODS = ("log_prob", "entropy", "cdf", "icdf")
ATTRIBUTES: dict[str, str] = {
    "probs": "Tensor",
    "logits": "Tensor",
    "loc": "Tensor",
    "scale": "Tensor",
    "mean": "Tensor",
    "stddev": "Tensor",
    "variance": "Tensor",
    "batch_shape": "Size",
    "event_shape": "Size",
}


def _call(name: str) -> Any:
    # `name` is a fixed entry of the tables above, never a peer's string
    def call(distribution: torch.distributions.Distribution, *args: Any, **kwargs: Any) -> Any:
        return getattr(distribution, name)(*args, **kwargs)

    return call


def _read(name: str) -> Any:
    def read(distribution: torch.distributions.Distribution) -> Any:
        return getattr(distribution, name)

    return read


def register_distributions(
    op_type: type[Op], functions: dict[str, Op], tables: dict[str, dict[str, Op]]
) -> None:
    """Add the constructors and the ``Distribution`` table to the allowlist."""
    for name, kwargs in DISTRIBUTIONS.items():
        path = f"torch.distributions.{name}"
        cls = getattr(torch.distributions, name)  # `name` is a fixed entry of DISTRIBUTIONS
        functions[path] = op_type(path, "function", "Distribution", impl=cls, kwargs=kwargs)
    table: dict[str, Op] = {}
    for name in SAMPLING:
        table[name] = op_type(
            f"Distribution.{name}", "method", "Tensor", impl=_call(name), random=True
        )
    for name in METHODS:
        table[name] = op_type(f"Distribution.{name}", "method", "Tensor", impl=_call(name))
    for name, kind in ATTRIBUTES.items():
        table[name] = op_type(f"Distribution.{name}", "attribute", kind, impl=_read(name))
    tables["Distribution"] = table
