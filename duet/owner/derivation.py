"""What a value is in terms of the owner's published objects, where the owner can say exactly.

A label (labels.py) says *which* of the owner's data a value may depend on; an automatic
decision also needs to know *how*, or it releases whatever a scientist shapes into the value
(``ages.reshape(6, 1).mean(dim=1)`` is made by ``mean`` from ``ages`` and is all six ages).
Three facts, recorded when a value is made and checked again when it is asked for:

- ``Whole``: the value is exactly one op applied to one published object *as a whole*: the
  object itself named directly (no view, slice, reshape, index or other computation before), no
  argument at all (no ``dim=``, no ``keepdim``), nothing drawn, and not written since it was
  made. Value-preserving conversions after it (``item``, ``tolist``, ``detach``, ``clone``,
  ``float``, ``double``, ``cpu``, ``contiguous``, all without arguments) keep it: the value
  still tells nothing but that op's result. A loader (or its iterator) over a published dataset,
  made with settings that depend on nothing of the owner's, stands for the dataset itself.
- shapes: which values depend on the owner's data only through shapes (labels.Source.part).
- a model's architecture (layer types, settings, names, shapes and dtypes of its weights: all
  but the weights' values), its settings' label (whether a layer setting, like a LeakyReLU's
  slope, was computed from the owner's data), and the architecture it had when the scientist
  sent it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..protocol import allowlist
from ..protocol.modules import LAYERS, layer_path
from .labels import EMPTY, UNKNOWN, Label, LabelRegistry, Walk

if TYPE_CHECKING:
    from ..protocol.messages import Call
    from .store import StoredObject

ITSELF = ""  # Whole.op of a published object itself (or of a loader over it)
_IMMUTABLE = (bool, int, float, complex, str, bytes, torch.Size, type(None))


@dataclass(frozen=True)
class Whole:
    """``op`` applied to the published object ``source`` as a whole (``op == ""``: the object
    itself). ``version``: a tensor value's version counter when it was made (writes, through
    any alias, change it)."""

    op: str
    source: str
    version: int = -1


def whole_now(entry: StoredObject | None) -> Whole | None:
    """``entry``'s Whole if it still holds: its value was not written since it was made."""
    if entry is None or entry.whole is None or entry.failure is not None:
        return None
    whole = entry.whole
    if whole.op == ITSELF:
        return whole  # a published object (read-only for scientists) or a loader over one
    value = entry.value
    if isinstance(value, torch.Tensor):
        return whole if value._version == whole.version else None
    if isinstance(value, tuple) and all(isinstance(v, _IMMUTABLE) for v in value):
        return whole
    return whole if isinstance(value, _IMMUTABLE) else None


def made(whole: Whole, value: object) -> Whole:
    """``whole`` for a value just made (its version counter as it is now)."""
    version = value._version if isinstance(value, torch.Tensor) else -1
    return Whole(whole.op, whole.source, version)


def _ref(encoded: object) -> bool:
    return isinstance(encoded, dict) and encoded.get("$") == "ref"


def whole_of_call(
    op: allowlist.Op,
    message: Call,
    target: StoredObject | None,
    arguments: list[StoredObject],
    others_public: bool,
) -> Whole | None:
    """The Whole a call's result has, if any (before the result's version is taken).

    ``target``: the entry the method was called on; ``arguments``: the entries the arguments
    named, in order; ``others_public``: nothing but the wrapped object carries a label (no
    other input, no generator draw, no graph state)."""
    if not others_public:
        return None
    bare = not message.args and not message.kwargs
    if op.kind != "function":
        of = whole_now(target)
        if of is None:
            return None
        if op.conversion and bare:
            return of  # the same result, in another form
        if of.op != ITSELF:
            return None
        if op.wraps == "target":
            return Whole(ITSELF, of.source)
        return Whole(op.name, of.source) if bare else None
    if not message.args or not _ref(message.args[0]) or not arguments:
        return None
    of = whole_now(arguments[0])
    if of is None or of.op != ITSELF:
        return None
    if op.wraps == "first":
        return Whole(ITSELF, of.source)  # its settings are public (others_public)
    if len(message.args) == 1 and not message.kwargs and len(arguments) == 1:
        return Whole(op.name, of.source)
    return None


# ---------------------------------------------------------------- models


def _settings(module: nn.Module, path: str) -> tuple[tuple[str, str], ...]:
    out = []
    for name in LAYERS[path][1]:
        value = getattr(module, name, None)
        if name == "bias" and not isinstance(value, bool):
            value = value is not None
        out.append((name, repr(value)))
    return tuple(out)


def _structure(module: nn.Module, depth: int = 0) -> tuple[object, ...]:
    """The layer's path, settings, weights and children, nested: what its digest is of."""
    if depth > 64:
        raise ValueError("a model nested deeper than 64 levels")
    path = layer_path(module)
    settings = _settings(module, path) if path in LAYERS else ()
    tensors = tuple(
        (name, tuple(t.shape), str(t.dtype))
        for name, t in (
            *module.named_parameters(recurse=False),
            *module.named_buffers(recurse=False),
        )
        if t is not None
    )
    children = tuple(
        (name, _structure(child, depth + 1)) for name, child in module.named_children()
    )
    return (path, settings, tensors, children)


def architecture(value: object) -> str | None:
    """A digest of a model's architecture: its layers' types and settings, the names, shapes
    and dtypes of its weights (not their values, nor its training flags); None when ``value``
    is not a model the owner can describe."""
    if not isinstance(value, nn.Module):
        return None
    try:
        structure = _structure(value)
    except Exception:  # a layer it cannot describe: no architecture to match
        return None
    return hashlib.sha256(repr(structure).encode()).hexdigest()[:32]


def settings_count(value: object) -> int:
    """How many numbers a model's layer settings carry (a tuple setting counts each item, a
    string setting each character)."""
    if not isinstance(value, nn.Module):
        return 0
    total = 0
    for module in value.modules():
        try:
            path = layer_path(module)
        except Exception:
            continue
        if path not in LAYERS:
            continue
        for name in LAYERS[path][1]:
            total += _leaves(getattr(module, name, None))
    return total


def _leaves(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, tuple | list):
        return sum(_leaves(v) for v in value)
    return 1


def settings_label(entry: StoredObject, labels: LabelRegistry, poisoned: Label) -> Label:
    """What a model's settings, structure and training flags may depend on: which model the
    handle names, and what was written into its layer objects (not into its weights)."""
    walk = Walk().add(entry.value)
    if walk.unknown:
        return UNKNOWN
    label = entry.label | poisoned
    for node in walk.nodes.values():
        if isinstance(node, nn.Module):
            found = labels.label(node)
            if found:
                label = label | found
    return label if label else EMPTY


__all__ = [
    "ITSELF",
    "Whole",
    "architecture",
    "made",
    "settings_count",
    "settings_label",
    "whole_now",
    "whole_of_call",
]
