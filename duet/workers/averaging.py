"""Federated averaging: ``sy.utils.federated_avg({"alice": model_a, "bob": model_b})``.

The models are local (fetched from their workers with ``model.get()``); averaging happens
here. Averaging on the owners' side, so that the scientist sees only the average, is for the
federated training over real duets (secure aggregation).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TypeVar, overload

import torch
from torch import nn

from ..errors import UsageError
from .placement import placement_of

StateDict = Mapping[str, torch.Tensor]
Name = TypeVar("Name")  # what the models are keyed by (a worker's id, say)


@overload
def federated_avg(
    models: Mapping[Name, nn.Module], *, weights: Mapping[Name, float] | None = None
) -> nn.Module: ...
@overload
def federated_avg(
    models: Mapping[Name, StateDict], *, weights: Mapping[Name, float] | None = None
) -> dict[str, torch.Tensor]: ...
@overload
def federated_avg(
    models: Mapping[Name, nn.Module | StateDict], *, weights: Mapping[Name, float] | None = None
) -> nn.Module | dict[str, torch.Tensor]: ...
def federated_avg(
    models: Mapping[Name, nn.Module | StateDict],
    *,
    weights: Mapping[Name, float] | None = None,
) -> nn.Module | dict[str, torch.Tensor]:
    """The average of models (or of state dicts) with the same structure.

    Returns a new model (a copy of the first, holding the averages) for models, a new state dict
    for state dicts. Floating point tensors are averaged, weighted by ``weights`` (for example
    each worker's number of examples) when given; other tensors (a BatchNorm's batch counter)
    are taken from the first. Raises UsageError for a model still on a worker or models whose
    tensors differ in names or shapes.
    """
    if not models:
        raise UsageError("federated_avg needs at least one model")
    names = list(models)
    states = [_state(name, models[name]) for name in names]
    if weights is None:
        shares = [1.0 / len(names)] * len(names)
    else:
        missing = [n for n in names if n not in weights]
        if missing:
            raise UsageError(f"no weight for {missing}")
        total = float(sum(weights[n] for n in names))
        if total <= 0:
            raise UsageError("the weights must add up to more than 0")
        shares = [float(weights[n]) / total for n in names]
    first = states[0]
    for name, state in zip(names[1:], states[1:], strict=True):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise UsageError(f"{name!r} does not have the same tensors as {names[0]!r}")
    averaged: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in first.items():
            if not value.is_floating_point():
                averaged[key] = value.clone()
                continue
            total_value = torch.zeros_like(value)
            for share, state in zip(shares, states, strict=True):
                total_value += state[key] * share
            averaged[key] = total_value
    template = models[names[0]]
    if not isinstance(template, nn.Module):
        return averaged
    model = copy.deepcopy(template)
    model.load_state_dict(averaged)
    return model


def _state(name: object, model: nn.Module | StateDict) -> StateDict:
    if isinstance(model, nn.Module):
        if placement_of(model) is not None:
            raise UsageError(f"model {name!r} is on a worker; bring it back first (model.get())")
        return model.state_dict()
    if isinstance(model, Mapping):
        return model
    raise UsageError(f"federated_avg takes models or state dicts, not {type(model).__name__}")


__all__ = ["federated_avg"]
