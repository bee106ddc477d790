"""``torch.distributions`` on the owner's side: the distributions a scientist may build there.

``m = duet.torch.distributions.Categorical(probs_ptr)`` builds the distribution on the owner's
side; ``m.sample()`` draws from the scientist's own random number generator there and
``m.log_prob(action)`` stays a pointer, as in PySyft's reinforcement learning examples.

A distribution holds the tensors it was made from (``Normal(loc, scale).loc`` is ``loc``
itself) and those it derives (``probs`` from ``logits``): the owner labels it by what it holds
(owner/labels.py), its constructors may alias their arguments and its members may alias it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .facts import Op

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


def _call(name: str) -> Callable[..., object]:
    # `name` is a fixed entry of the tables above, never a peer's string
    def call(
        distribution: torch.distributions.Distribution, *args: object, **kwargs: object
    ) -> object:
        return getattr(distribution, name)(*args, **kwargs)

    return call


def _read(name: str) -> Callable[..., object]:
    def read(distribution: torch.distributions.Distribution) -> object:
        return getattr(distribution, name)

    return read


# a distribution holds its arguments (Normal(loc, scale).loc is loc); its size: its tensor
# arguments' broadcast. `name` is a fixed entry of DISTRIBUTIONS.
FUNCTIONS: dict[str, Op] = {
    f"torch.distributions.{name}": Op(
        f"torch.distributions.{name}", "function", "Distribution",
        impl=getattr(torch.distributions, name), kwargs=kwargs, aliases="args", size="broadcast",
    )
    for name, kwargs in DISTRIBUTIONS.items()
}  # fmt: skip
# what a distribution hands out may be what it holds; its size: its batch and event shape
DISTRIBUTION: dict[str, Op] = {
    **{
        name: Op(f"Distribution.{name}", "method", "Tensor", impl=_call(name), random=True,
                 aliases="target", size="distribution")
        for name in SAMPLING
    },
    **{
        name: Op(f"Distribution.{name}", "method", "Tensor", impl=_call(name), aliases="target",
                 size="distribution")
        for name in METHODS
    },
    **{
        name: Op(f"Distribution.{name}", "attribute", kind, impl=_read(name), aliases="target",
                 size="distribution")
        for name, kind in ATTRIBUTES.items()
    },
}  # fmt: skip
