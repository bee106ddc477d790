"""The owner's side of a federation: handlers that release what a round needs, and no more.

A federation asks each owner for three kinds of values, each a request in the owner's queue:
the number of samples it trains on (once), its trained model after each round, and that
round's mean training loss. ``allow_federated_training`` adds handlers that accept exactly
those, each constrained by what is released (the data it was computed from, the op that made
it, its kind and size) and, if given, by the scientist: a request merely *named* like a
round's update but carrying anything else does not match, and waits for the owner.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import UsageError
from ..node import OwnerSession
from ..owner.requests import Handler
from .names import RequestNames


def allow_federated_training(
    owner: OwnerSession,
    data: str,
    *,
    model_elements: int,
    rounds: Iterable[int] | None = None,
    federation: str = "federated",
    scientist: str | None = None,
    release_loss: bool = True,
) -> list[Handler]:
    """Accept a federation's requests about the data tagged ``data``; returns the handlers.

    - the sample count: an int made by ``__len__`` of that data;
    - each round's update: a model computed from that data alone, of at most
      ``model_elements`` weights (the size of the model you agreed to train: ``sum(p.numel()
      for p in model.state_dict().values())``);
    - each round's loss (``release_loss``): a float made by ``item`` from that data.

    ``rounds``: accept updates only for these rounds, one handler each, named for the round
    (``"<federation> round 3 update"``) and releasing one model at most; the loss handler then
    releases one float per round at most. The rounds you allow are exactly what you release;
    other requests wait for you in ``owner.requests``. None: any round, any number of times.
    ``scientist``: only this scientist's requests (its ID).

    What these handlers cannot tell: whether a released model (or float) is what the
    federation says it is. A scientist may build a "model" whose weights copy your data, up to
    ``model_elements`` values per release, or ask for ``item`` of one data element as a
    "loss"; ``rounds`` bounds how much of either leaves.
    """
    if model_elements < 1:
        raise UsageError("model_elements is the number of weights of the model, at least 1")
    names = RequestNames(federation)
    allowed = None if rounds is None else sorted(set(rounds))
    handlers = [
        owner.requests.add_handler(
            name=names.samples, tags=[data, "__len__"], kind="int", scientist=scientist
        )
    ]
    if allowed is None:
        handlers.append(
            owner.requests.add_handler(
                tags=[data], kind="module", max_elements=model_elements, scientist=scientist
            )
        )
    else:
        for round_ in allowed:
            handlers.append(
                owner.requests.add_handler(
                    name=names.update(round_), tags=[data], kind="module",
                    max_elements=model_elements, element_quota=model_elements,
                    scientist=scientist,
                )
            )  # fmt: skip
    if release_loss:
        handlers.append(
            owner.requests.add_handler(
                tags=[data, "item"],
                kind="float",
                max_elements=1,
                scientist=scientist,
                element_quota=None if allowed is None else len(allowed),
            )
        )
    return handlers


__all__ = ["allow_federated_training"]
