"""The owner's side of a federation: handlers that release what a round needs, and no more.

A federation asks each owner for three kinds of values, each a request in the owner's queue:
the number of samples it trains on (once), its trained model after each round, and that
round's mean training loss. ``allow_federated_training`` adds handlers that accept exactly
those, each bound to the federation's request names (so one federation's handlers never decide
another's requests) and constrained by what is released:

- the sample count is the length of the published dataset itself (or of a loader over it): a
  value that depends on the data's shape alone, never a length computed from its values;
- an update is a model of exactly the architecture the federation declared when it started
  (the one it sent, or the one the owner names), whose layer settings depend on nothing of
  the owner's: only its weights carry what training learned;
- a loss is one float computed from the data.

A handler whose quota is spent stops matching: the request waits for the owner, and the
scientist is told why.

With ``dp=...`` the owner releases updates only as DP jobs under its privacy budget
(``dp.py``): the sample count's handler is the only one added, so a raw update or loss request
of that federation waits for the owner like any other.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TypedDict, Unpack

from torch import nn

from ..errors import UsageError
from ..owner.handlers import AS_SENT, Handler
from ..owner.privacy_desk import ANYONE
from ..secure import MIN_OWNERS
from ..sessions.owner import OwnerSession
from .dp import PrivacyBudget
from .names import RequestNames


def allow_federated_training(
    owner: OwnerSession,
    data: str,
    *,
    model_elements: int | None = None,
    rounds: Iterable[int] | None = None,
    federation: str = "federated",
    scientist: str | None = None,
    release_loss: bool = True,
    model: nn.Module | None = None,
    dp: PrivacyBudget | bool = False,
    secure_aggregation: bool = False,
    owners: Collection[str] | None = None,
    min_owners: int = MIN_OWNERS,
    min_threshold: int | None = None,
) -> list[Handler]:
    """Accept a federation's requests about the data tagged ``data``; returns the handlers.

    - the sample count (``"<federation> samples"``): the length of the published dataset
      tagged ``data``, or of a loader over it (a shape, never a value of the data); once, when
      ``rounds`` is given;
    - each round's update (``"<federation> round <n> update"``): a model computed from that
      data alone, of at most ``model_elements`` weights (``sum(p.numel() for p in
      model.state_dict().values())``), with the architecture of ``model`` if you give one (a
      model of the class the scientist told you, built here), else the architecture it had
      when the scientist sent it at the federation's start; either way its layer settings
      must not depend on your data;
    - each round's loss (``"<federation> round <n> loss"``, ``release_loss``): one float
      computed from that data.

    ``rounds``: accept updates and losses only for these rounds, one handler each, releasing
    one model and one float at most: the rounds you allow are exactly what you release; other
    requests wait for you in ``owner.requests``. None: any round, any number of times.
    ``scientist``: only this scientist's requests (its ID). Raises UsageError if handlers for a
    federation of that name are in place already (two federations need two names).

    What these handlers cannot tell: whether a released model (or float) is what the
    federation says it is. A scientist may train a model whose weights copy your data, up to
    ``model_elements`` values per release, or ask for ``item`` of one data element as a
    "loss"; ``rounds`` bounds how much of either leaves.

    ``dp``: release updates only as DP jobs (a federation with ``dp=DpRound(...)``), charged
    to the scientist's privacy budget on ``data`` and released without a request while it
    lasts; only the sample-count handler is added (FedAvg weighs the updates by it), so a
    plain update or loss request waits for you in ``owner.requests``. ``dp=True``: the budgets
    are yours to set (``owner.privacy.set_budget``); ``dp=PrivacyBudget(epsilon=, delta=)``
    sets one for ``scientist`` (or, without one, ``"*"``: every scientist, each their own) on
    ``data``, over all rounds. ``model_elements``, ``release_loss`` and ``model`` are for
    plain rounds; the DP job checks the model itself (Opacus must train it as it is, its
    per-sample gradients within the scientist's memory quota).

        sy.federated.allow_federated_training(
            duet, "digits", dp=sy.federated.PrivacyBudget(epsilon=5.0, delta=1e-5),
            scientist="3fa2-91bc-0d4e-77a1",
        )

    ``secure_aggregation``: release updates only masked, in rounds of secure aggregation
    (a federation with ``secure_aggregation=True``) whose roster is exactly ``owners`` (the
    identity IDs of every owner of the federation, yours among them: you are told them by the
    other owners, not by the scientist, who could otherwise make up owners of its own), at
    least ``min_owners`` of them (3 or more). A round unmasks with the inputs of more than half
    the roster (``duet.secure.threshold_against``: the scientist alone cannot unmask you), or of
    ``min_threshold`` owners if you ask for more (against owners colluding with it; fewer
    dropouts are then survived). Each round's update
    (the model trained here minus the round's global model, times your sample count) leaves
    masked, without a request; only the sample-count handler is added, so a plain update or
    loss request waits for you in ``owner.requests``. ``model_elements`` bounds the model.

        sy.federated.allow_federated_training(
            duet, "digits", model_elements=10_000, secure_aggregation=True, min_owners=3,
            owners=["3fa2-91bc-0d4e-77a1", "77a1-0d4e-91bc-3fa2", "91bc-3fa2-77a1-0d4e"],
        )
    """
    if secure_aggregation:
        if dp is not False:
            raise UsageError("give dp= or secure_aggregation=True, not both")
        if owners is None:
            raise UsageError(
                "secure_aggregation needs owners=: the identity IDs of every owner of the "
                "federation (yours among them), as the owners told each other"
            )
    elif owners is not None:
        raise UsageError("owners= names a secure aggregation's roster: add secure_aggregation=True")
    if dp is not False:
        if not isinstance(dp, PrivacyBudget) and dp is not True:
            raise UsageError(
                f"dp is True or a sy.federated.PrivacyBudget(epsilon=, delta=), not {dp!r}"
            )
        if model is not None or model_elements is not None:
            raise UsageError(
                "with dp, updates are DP jobs the owner checks itself: give no model or "
                "model_elements"
            )
    elif model_elements is None or model_elements < 1:
        raise UsageError("model_elements is the number of weights of the model, at least 1")
    names = RequestNames(federation)
    taken = {h.name for h in owner.requests.handlers} | {
        h.name_pattern.pattern for h in owner.requests.handlers if h.name_pattern is not None
    }
    if names.samples.lower() in taken or _pattern(federation, "update") in taken:
        raise UsageError(
            f"handlers for a federation named {federation!r} are in place already; give the "
            "other federation another name (Federation(..., name=...))"
        )
    if secure_aggregation:  # before any handler: a rule refused adds none
        assert owners is not None and model_elements is not None
        owner.secure_aggregation.allow(
            federation, data, owners=owners, min_owners=min_owners,
            model_elements=model_elements, scientist=scientist, min_threshold=min_threshold,
        )  # fmt: skip
    if isinstance(dp, PrivacyBudget):  # before any handler: a budget refused adds none
        owner.privacy.set_budget(scientist or ANYONE, data, epsilon=dp.epsilon, delta=dp.delta)
    allowed = None if rounds is None else sorted(set(rounds))
    architecture = AS_SENT if model is None else model
    handlers = [
        owner.requests.add_handler(
            name=names.samples, tags=[data, "__len__"], kind="int", scientist=scientist,
            element_quota=None if allowed is None else 1,
        )
    ]  # fmt: skip
    if dp is not False or secure_aggregation:
        return handlers
    assert model_elements is not None

    def update(**where: Unpack[_Where]) -> Handler:
        return owner.requests.add_handler(
            tags=[data], kind="module", max_elements=model_elements, architecture=architecture,
            scientist=scientist, **where,
        )  # fmt: skip

    def loss(**where: Unpack[_Where]) -> Handler:
        return owner.requests.add_handler(
            tags=[data, "item"], derived_inputs=True, kind="float", max_elements=1,
            scientist=scientist, **where,
        )  # fmt: skip

    if allowed is None:
        handlers.append(update(name_pattern=_pattern(federation, "update")))
        if release_loss:
            handlers.append(loss(name_pattern=_pattern(federation, "loss")))
        return handlers
    for round_ in allowed:
        handlers.append(update(name=names.update(round_), element_quota=model_elements))
        if release_loss:
            handlers.append(loss(name=names.loss(round_), element_quota=1))
    return handlers


class _Where(TypedDict, total=False):
    """Which requests a handler takes: by name (each round's, with a quota) or by pattern."""

    name: str
    name_pattern: str
    element_quota: int | None


def _pattern(federation: str, what: str) -> str:
    """The names of every round's ``what`` ("update", "loss") of a federation."""
    return rf"(?i)\s*{re.escape(federation)} round \d+ {what}\s*"


__all__ = ["allow_federated_training"]
