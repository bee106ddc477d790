"""``sy.VirtualWorker``: a duet owner in this process, as the scientist's own simulation.

A VirtualWorker is a real owner node (``OwnerSession``) joined to a scientist session (the
worker object itself) over the in-memory channel, like ``sy.duet_pair()``: every value goes
through real frames, the owner's allowlist, labels and quotas. What the scientist sends to it
stays the scientist's own, so it comes back without requests, as on any duet; data the owner
side publishes (``bob.owner.publish(...)``, or ``x.send(bob.owner)``) keeps its requests.

As in PySyft, ``ptr.get()`` on a worker's pointer moves the value back (the worker no longer
holds it), ``model.send(worker)`` moves a plain ``nn.Module`` and ``bob._objects`` shows what
the worker holds.

Each worker has its own owner, connection and worker thread on the library's one event loop;
``close()`` (or leaving a ``with`` block, or the interpreter's exit) stops them.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

import torch
from torch import nn

from ..errors import UsageError
from ..identity import Identity
from ..runtime import run
from ..scientist.pointer import Pointer
from ..sessions.owner import OwnerSession
from ..sessions.scientist import ScientistSession, connect_scientist
from ..transport.memory import memory_pair
from .placement import send_model
from .stand_ins import describe, remote_of

if TYPE_CHECKING:
    from ..owner.audit import AuditLog


class OwnerOptions(TypedDict, total=False):
    """``OwnerSession``'s keywords, which a worker passes on to its owner."""

    max_bytes: int
    max_objects: int
    max_pending_requests: int
    redact_errors: bool
    data_root: str | Path | None
    identity: Identity | None
    audit: AuditLog | str | Path | None
    max_scientists: int
    unknown: str
    request_timeout_secs: float | None


class VirtualWorker(ScientistSession):
    """A worker named ``id``: ``sy.VirtualWorker(hook, id="bob")``.

    ``owner_options`` go to the worker's ``OwnerSession`` (``max_bytes=``, ``max_objects=``,
    ...). ``bob.owner`` is that owner: publish its data there, add handlers to its requests.
    """

    def __init__(
        self,
        hook: object = None,
        id: str | int | None = None,  # PySyft's keyword
        *,
        timeout_secs: float = 30.0,
        **owner_options: Unpack[OwnerOptions],
    ):
        super().__init__()
        self.id = str(id) if id is not None else "worker-" + secrets.token_hex(3)
        self.hook = hook
        self.owner = OwnerSession(**owner_options)
        try:
            self._join(timeout_secs)
        except BaseException:
            self.owner.close()
            raise
        client = self._client()
        client.location = self
        client.moves_on_get = True
        client.gets_grads = True

    def _join(self, timeout_secs: float) -> None:
        node = self.owner
        identity = Identity.ephemeral(self.id)

        async def join() -> None:
            a, b = memory_pair()
            await asyncio.gather(
                node.admit(a, preapproved=True, timeout_secs=timeout_secs),
                connect_scientist(self, b, identity=identity, timeout_secs=timeout_secs),
            )

        run(join(), timeout_secs=timeout_secs + 5, what=f"starting the worker {self.id!r}")

    # Any: a Pointer, or the sent model itself for an nn.Module; it overrides send_value's
    # Pointer, and callers chain calls on either
    def send_value(
        self, value: object, *, tags: list[str] | None = None, description: str = ""
    ) -> Any:
        """What ``x.send(worker)`` does: a tensor or value goes over and a pointer comes back;
        a model (``nn.Module``) goes over and stays this same object (``send_model``)."""
        if isinstance(value, nn.Module):
            return send_model(value, self)
        if isinstance(value, torch.Tensor) and remote_of(value) is not None:
            raise UsageError(
                f"{describe(value)} is on a worker already; to copy it here use .copy().get()"
            )
        return super().send_value(value, tags=tags, description=description)

    @property
    def _objects(self) -> dict[str, object]:
        """What this worker holds, by id (``ptr.id_at_location``): the owner's published
        values and the scientist's. Waits for the actions sent so far to run."""
        self.sync()
        objects = self.owner.objects
        held = {e.id: e.value for e in objects.published()}
        for scientist in list(self.owner.links):
            prefix = f"{scientist}:"  # the owner keeps each scientist's ids apart
            for entry in objects.peer_objects(scientist):
                if entry.failure is None:
                    held[entry.id.removeprefix(prefix)] = entry.value
        return held

    def close(self, *, timeout_secs: float = 10.0) -> None:
        """Stop the worker: its session, then its owner (and the owner's thread)."""
        # the scientist leaves first: that is what stops the owner's worker thread for it
        super().close(timeout_secs=timeout_secs)
        self.owner.close(timeout_secs=timeout_secs)

    def __repr__(self) -> str:
        state = "" if self.connected else ", closed"
        return f"<VirtualWorker id:{self.id}{state}>"


def location_of(value: object) -> object:
    """The worker (or session) a pointer, stand-in or sent model lives on; None if local."""
    if isinstance(value, Pointer):
        return value.location
    remote = remote_of(value)
    if remote is not None:
        return remote.location
    if isinstance(value, nn.Module):
        from .placement import placement_of

        placement = placement_of(value)
        return None if placement is None else placement.location
    return None


__all__ = ["VirtualWorker", "location_of"]
