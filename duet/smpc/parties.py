"""Who takes part in a sharing: the share holders and the crypto provider, checked once.

Over VirtualWorkers every party is an owner in the scientist's own process, so the scientist
also plays the parties' part of the protocol here: it sends each party what is that party's
(its share, its dealing from the provider) and relays the masked values the parties open to
each other. What it relays is uniform (a value plus a mask only the provider could remove).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import UsageError
from ..scientist.pointer import Pointer
from ..workers import VirtualWorker

# a pointer to one holder's share: Pointer's operators are made at import, so to the type
# checker its arithmetic (which runs on the holder) is Any
Share = Any


def _name(party: object) -> str:
    return repr(getattr(party, "id", None) or type(party).__name__)


def check_holders(workers: Sequence[object]) -> tuple[VirtualWorker, ...]:
    """Two or more distinct, open VirtualWorkers, in the order given."""
    if len(workers) == 1 and isinstance(workers[0], list | tuple):
        workers = tuple(workers[0])  # share((bob, alice)) as well as share(bob, alice)
    if len(workers) < 2:
        raise UsageError(
            f"share() needs 2 or more workers to hold the shares, got {len(workers)}: "
            "x.share(bob, alice, crypto_provider=carol)"
        )
    for worker in workers:
        if not isinstance(worker, VirtualWorker):
            raise UsageError(
                f"share() holders must be sy.VirtualWorker, not {type(worker).__name__} "
                "(secret sharing over real duets is not built yet: reconstructing there needs "
                "each owner's approval)"
            )
        if not worker.connected:
            raise UsageError(f"the worker {worker.id!r} is closed")
    if len({id(w) for w in workers}) != len(workers):
        raise UsageError("share() holders must be distinct workers: one was given twice")
    return tuple(workers)  # type: ignore[arg-type]


def check_provider(provider: object, holders: Sequence[VirtualWorker]) -> VirtualWorker | None:
    """None, or a VirtualWorker that holds no share (it could reconstruct what it deals)."""
    if provider is None:
        return None
    if not isinstance(provider, VirtualWorker):
        raise UsageError(
            f"crypto_provider must be a worker (sy.VirtualWorker), not {type(provider).__name__}: "
            "the provider's randomness must not be the scientist's"
        )
    if any(provider is holder for holder in holders):
        raise UsageError(
            f"the crypto provider {provider.id!r} is also a share holder: a provider that holds "
            "a share can remove the masks it dealt and read the values; use another worker"
        )
    if not provider.connected:
        raise UsageError(f"the crypto provider {provider.id!r} is closed")
    return provider


def deliver(value: torch.Tensor, worker: VirtualWorker) -> Share:
    """Put ``value`` on ``worker`` (a share, a dealing, an opened value)."""
    pointer: Pointer = worker.send_value(value)
    return pointer


def open_value(pieces: Sequence[Share]) -> torch.Tensor:
    """The sum of every party's piece of a masked value: what the parties open to each other.
    The pieces are temporaries, so they move back (the workers no longer hold them)."""
    total: torch.Tensor | None = None
    for piece in pieces:
        value = piece.get()
        if not isinstance(value, torch.Tensor):  # pragma: no cover - our own pointers
            raise UsageError("a share came back as something other than a tensor")
        total = value if total is None else total + value
    assert total is not None
    return total


__all__ = ["Share", "check_holders", "check_provider", "deliver", "open_value"]
