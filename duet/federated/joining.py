"""Joining several owners at once without holding the event loop: ``OwnerAddress``, ``join``,
``join_all`` (each join is ``sy.join_duet`` on a worker thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..identity import Identity
from ..sessions.scientist import ScientistSession


@dataclass(frozen=True)
class OwnerAddress:
    """Where to find one owner: what its ``launch_duet`` printed in the scientist's line."""

    name: str
    session_id: str
    signaling_url: str
    owner_id: str | None = None


async def join(
    address: OwnerAddress, *, identity: Identity, timeout_secs: float
) -> ScientistSession:
    """Join one owner (``sy.join_duet``) without holding the event loop: the join runs on a
    worker thread, bounded by ``timeout_secs``."""
    from ..join import join_duet

    return await asyncio.to_thread(
        join_duet,
        address.session_id,
        address.signaling_url,
        owner_id=address.owner_id,
        identity=identity,
        timeout_secs=timeout_secs,
    )


async def join_all(
    addresses: Sequence[OwnerAddress],
    *,
    identity: Identity | str | None = None,
    timeout_secs: float = 120.0,
) -> dict[str, ScientistSession | BaseException]:
    """Join every owner at once; returns each name's session, or the error that stopped it."""
    if len({a.name for a in addresses}) != len(addresses):
        raise UsageError("each owner needs a name of its own")
    who = (
        identity
        if isinstance(identity, Identity)
        else Identity.load_or_create(identity or "default")
    )
    results = await asyncio.gather(
        *(join(a, identity=who, timeout_secs=timeout_secs) for a in addresses),
        return_exceptions=True,
    )
    return {a.name: r for a, r in zip(addresses, results, strict=True)}


__all__ = ["OwnerAddress", "join", "join_all"]
