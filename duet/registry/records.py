"""An owner's registration as a signed record: what its node lists, signed with its identity.

Only metadata of the datasets the owner listed (``publish(..., listed=True)``) goes in: an id,
tags, a description, the shape, dtype and size in bytes, never a value. Sequence numbers are
microseconds since the epoch (or one above the last used, if the clock is slow), so they grow
across restarts with nothing to remember.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from signaling_server.protocol import (
    MAX_DATASETS,
    MAX_DESCRIPTION_CHARS,
    MAX_OWNER_NAME_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    DatasetListing,
    OwnerRecord,
    Search,
    SearchProof,
    SignedRecord,
    SignedWithdrawal,
    Withdrawal,
)
from signaling_server.records import record_payload, search_payload, withdrawal_payload

from ..errors import UsageError
from ..identity import Identity

#: how long a registration lives unless renewed; the node renews it at half this
DEFAULT_TTL_SECS = 120


class Sequence:
    """Sequence numbers for one owner's records: each above the last, across restarts too."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


def dataset_listing(entry: Any) -> DatasetListing:
    """The listing of one published store entry (``duet.owner.store.StoredObject``): its
    metadata only. Raises UsageError for tags or a description the registry would refuse."""
    tags = [str(t) for t in entry.tags]
    if len(tags) > MAX_TAGS or any(not 0 < len(t) <= MAX_TAG_CHARS for t in tags):
        raise UsageError(
            f"a listed dataset has at most {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} characters; "
            f"{entry.id} has {tags!r:.200}"
        )
    if len(entry.description) > MAX_DESCRIPTION_CHARS:
        raise UsageError(
            f"a listed dataset's description is at most {MAX_DESCRIPTION_CHARS} characters; "
            f"{entry.id}'s has {len(entry.description)}"
        )
    value = entry.value
    tensors = getattr(value, "tensors", None)  # a TensorDataset: its inputs' shape and dtype
    if isinstance(tensors, tuple) and tensors and hasattr(tensors[0], "shape"):
        value = tensors[0]
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    dims: list[int] | None = None
    try:
        if shape is not None:
            dims = [int(n) for n in shape][:8]
        elif hasattr(value, "__len__"):
            dims = [len(value)]
    except (TypeError, ValueError):  # a value whose shape is not a list of sizes: none shown
        dims = None
    return DatasetListing(
        id=entry.id,
        tags=tags,
        description=entry.description,
        shape=dims,
        dtype=str(dtype).removeprefix("torch.")[:32] if dtype is not None else "",
        size=int(entry.nbytes),
    )


def sign_record(
    identity: Identity,
    *,
    session_id: str,
    datasets: Iterable[DatasetListing],
    seq: int,
    ttl_secs: int = DEFAULT_TTL_SECS,
    owner_name: str = "",
    issued_at: int | None = None,
    audience: list[str] | None = None,
) -> SignedRecord:
    """The owner's record, signed with ``identity``; ``audience``: the only scientists (IDs)
    the server may show it to (None: anyone)."""
    listed = list(datasets)
    if len(listed) > MAX_DATASETS:
        raise UsageError(
            f"an owner lists at most {MAX_DATASETS} datasets on the network, not {len(listed)}; "
            "publish the others without listed=True"
        )
    record = OwnerRecord(
        owner_key=identity.public_key.hex(),
        owner_id=identity.id,
        session_id=session_id,
        owner_name=owner_name[:MAX_OWNER_NAME_CHARS],
        datasets=listed,
        issued_at=int(time.time()) if issued_at is None else issued_at,
        seq=seq,
        ttl_secs=ttl_secs,
        audience=sorted(set(audience)) if audience is not None else None,
    )
    return SignedRecord(record=record, signature=identity.sign(record_payload(record)).hex())


def sign_withdrawal(
    identity: Identity, *, seq: int, issued_at: int | None = None
) -> SignedWithdrawal:
    """The owner's withdrawal of its registration, signed with ``identity``."""
    body = Withdrawal(
        owner_key=identity.public_key.hex(),
        owner_id=identity.id,
        issued_at=int(time.time()) if issued_at is None else issued_at,
        seq=seq,
    )
    return SignedWithdrawal(
        withdrawal=body, signature=identity.sign(withdrawal_payload(body)).hex()
    )


def sign_search(identity: Identity, search: Search, *, issued_at: int | None = None) -> Search:
    """``search`` with a proof that ``identity``'s scientist asks it (records whose audience
    names it are shown to it)."""
    when = int(time.time()) if issued_at is None else issued_at
    key = identity.public_key.hex()
    signature = identity.sign(search_payload(search, key, identity.id, when)).hex()
    proof = SearchProof(
        scientist_key=key, scientist_id=identity.id, issued_at=when, signature=signature
    )
    return search.model_copy(update={"proof": proof})


__all__ = [
    "DEFAULT_TTL_SECS",
    "Sequence",
    "dataset_listing",
    "sign_record",
    "sign_search",
    "sign_withdrawal",
]
