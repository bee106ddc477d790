"""``t.tag(...)`` and ``t.describe(...)``: a tensor's or a model's tags and description, given
before it is sent (PySyft's names), and what ``send`` sends with it.

    noise = torch.randn(64, 100, 1, 1).tag("noise").describe("fixed noise for samples")
    noise_ptr = noise.send(duet)            # noise_ptr.tags == ["noise"]

Tags given to ``send(tags=...)`` win over those given to ``tag``; a description likewise.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

from ..errors import UsageError

# what tag and describe are installed on (install_tagging); they return it as it came
_Taggable = TypeVar("_Taggable", bound=torch.Tensor | nn.Module)


def tag(self: _Taggable, *tags: str) -> _Taggable:
    """Add tags to this tensor or model (kept in order, once each); returns it."""
    current = list(getattr(self, "tags", None) or [])
    for value in tags:
        if not isinstance(value, str):
            raise TypeError(f"a tag is a string, not {type(value).__name__}")
        if value not in current:
            current.append(value)
    setattr(self, "tags", current)  # an attribute torch does not declare
    return self


def describe(self: _Taggable, description: str) -> _Taggable:
    """Set this tensor's or model's description; returns it."""
    if not isinstance(description, str):
        raise TypeError(f"a description is a string, not {type(description).__name__}")
    setattr(self, "description", description)  # as tag's
    return self


def sent_tags(value: object, tags: list[str] | None, description: str) -> tuple[list[str], str]:
    """The tags and description ``value`` is sent with: those given to ``send``, else its own."""
    if tags is None:
        tags = list(getattr(value, "tags", None) or [])
    if not description:
        own = getattr(value, "description", "")
        description = own if isinstance(own, str) else ""
    return [str(t) for t in tags], description


def visibility(pointable: bool | None, searchable: bool | None) -> bool:
    """``pointable``, or ``searchable`` (PySyft's older name for it); True when neither is given.
    Raises UsageError when both are given and disagree."""
    if pointable is not None and searchable is not None and bool(pointable) != bool(searchable):
        raise UsageError(
            f"pointable={pointable!r} and searchable={searchable!r} (PySyft's older name for "
            "pointable) disagree; pass one of them"
        )
    chosen = pointable if pointable is not None else searchable
    return True if chosen is None else bool(chosen)


def install_tagging() -> None:
    """Add ``tag`` and ``describe`` to torch.Tensor and torch.nn.Module."""
    for cls in (torch.Tensor, nn.Module):
        cls.tag = tag  # type: ignore[union-attr]
        cls.describe = describe  # type: ignore[union-attr]
