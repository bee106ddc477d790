"""What works in one process: ``duet_pair`` (an owner and a scientist joined over an in-memory
channel, real frames and all), and ``.send`` on torch tensors and models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import torch
from torch import nn

from .errors import UsageError
from .identity import Identity
from .owner.quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING
from .owner.store import StoredObject
from .runtime import run
from .scientist.pointer import Pointer
from .scientist.tagging import install_tagging, sent_tags, visibility
from .sessions.owner import OwnerSession
from .sessions.scientist import ScientistSession, connect_scientist


def duet_pair(
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_pending_requests: int = DEFAULT_MAX_PENDING,
    redact_errors: bool = False,
    data_root: str | Path | None = None,
    timeout_secs: float = 30.0,
    owner: OwnerSession | None = None,
    identity: Identity | None = None,
) -> tuple[OwnerSession, ScientistSession]:
    """An owner and a scientist joined in this process over an in-memory channel.

    The channel carries real encoded frames, exactly as the network does. Pass ``owner`` to
    join another scientist (``identity``: who it is; a fresh one by default) to an existing
    owner.

    >>> owner, scientist = duet_pair()
    """
    from .transport.memory import memory_pair

    if owner is None:
        owner = OwnerSession(
            max_bytes=max_bytes,
            max_objects=max_objects,
            max_pending_requests=max_pending_requests,
            redact_errors=redact_errors,
            data_root=data_root,
            max_scientists=1_000,
        )
    node = owner
    scientist = ScientistSession()
    who = identity or Identity.ephemeral()

    async def join() -> None:
        a, b = memory_pair()
        await asyncio.gather(
            node.admit(a, preapproved=True, timeout_secs=timeout_secs),
            connect_scientist(scientist, b, identity=who, timeout_secs=timeout_secs),
        )

    run(join(), timeout_secs=timeout_secs + 5, what="joining the in-memory duet")
    return node, scientist


def _send(
    self: torch.Tensor | nn.Module,
    session: object,
    *,
    pointable: bool | None = None,
    tags: list[str] | None = None,
    description: str = "",
    searchable: bool | None = None,
    listed: bool = False,
) -> StoredObject | Pointer:
    """Send this tensor or model to a duet session.

    To an owner session: publish it in the owner's store (``pointable=False`` keeps it out of the
    scientist's listing; ``listed=True`` registers its metadata on the network, see
    ``OwnerSession.publish``); returns the stored entry. To a scientist session: store it on the
    owner's side as the scientist's own object; returns a pointer.
    """
    tags, description = sent_tags(self, tags, description)  # or those given to .tag()
    on_network = bool(listed)  # registered on the network, not only in the owner's store
    listed = visibility(pointable, searchable)  # (``searchable``: PySyft's older name)
    if isinstance(session, OwnerSession):
        return session.publish(
            self, pointable=listed, tags=tags, description=description, listed=on_network
        )
    if isinstance(session, ScientistSession):
        return session.send_value(self, tags=tags, description=description)
    raise UsageError(f"send() takes a duet session, not {type(session).__name__}")


def install_send() -> None:
    """Add ``send`` to torch.Tensor and torch.nn.Module (and nothing else in torch)."""
    torch.Tensor.send = _send  # type: ignore[attr-defined]
    nn.Module.send = _send  # type: ignore[attr-defined]
    install_tagging()  # t.tag("noise").describe("...") before sending, as PySyft had it


__all__ = ["duet_pair", "install_send"]
