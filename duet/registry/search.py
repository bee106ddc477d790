"""``duet.search`` and ``duet.join``: find owners' listed datasets on a network, and join one.

    table = sy.search(tags=["digits"], network_url="ws://host:5000")
    session, images = sy.join("ws://host:5000", owner=table.owner_id[0], dataset="digits")

Every result is verified before it is shown (``duet.registry.client``); joining passes the
owner's ID to ``join_duet``, so the connection is refused unless the other side proves it holds
that owner's key: a registry that pointed at someone else's session gets nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..identity import Identity
from ..pairing.signaling import websocket_url
from ..runtime import run
from .client import REPLY_TIMEOUT_SECS, Found, RegistryClient, canonical_owner_id

if TYPE_CHECKING:
    import pandas

    from ..sessions.scientist import ScientistSession

COLUMNS = ["owner_id", "owner_name", "dataset", "tags", "description", "shape", "dtype", "size",
           "online"]  # fmt: skip


def _tags(tags: Sequence[str] | str | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        return [tags]
    return [str(t) for t in tags]


SearchIdentity = Identity | str | bool | None


def searcher(identity: SearchIdentity) -> Identity | None:
    """Who signs a search: the scientist's identity as ``join_duet`` takes it (None: the
    default one; a str: that key in the duet home), or no one (``False``: anonymous)."""
    if identity is False:
        return None
    if identity is None or identity is True:
        return Identity.for_role("scientist")
    if isinstance(identity, str):
        return Identity.load_or_create(identity)
    if isinstance(identity, Identity):
        return identity
    raise UsageError(f"identity is an Identity, a key name, None or False, not {identity!r:.40}")


def find(
    network_url: str,
    tags: Sequence[str] | str | None = None,
    *,
    owner: str | None = None,
    limit: int = 50,
    identity: SearchIdentity = None,
    timeout_secs: float = REPLY_TIMEOUT_SECS,
) -> list[Found]:
    """The verified records answering a search (see ``search``)."""
    url = websocket_url(network_url)
    wanted = _tags(tags)
    who = searcher(identity)

    async def ask() -> list[Found]:
        async with await RegistryClient.connect(url, timeout_secs=timeout_secs) as registry:
            return await registry.search(
                wanted, owner=owner, limit=limit, identity=who, timeout_secs=timeout_secs
            )

    return run(ask(), timeout_secs=timeout_secs * 2 + 1, what="searching the network")


def search(
    tags: Sequence[str] | str | None = None,
    *,
    network_url: str,
    owner: str | None = None,
    limit: int = 50,
    identity: SearchIdentity = None,
    timeout_secs: float = REPLY_TIMEOUT_SECS,
) -> pandas.DataFrame:
    """The datasets owners listed on the network at ``network_url`` carrying every tag in
    ``tags`` (all listed datasets, with none), of ``owner`` only if given: a pandas DataFrame
    with one row per dataset (``owner_id``, ``owner_name``, ``dataset``, ``tags``,
    ``description``, ``shape``, ``dtype``, ``size``, ``online``).

    Each owner's record is checked here (its signature, that its ID is its key's, that it has
    not expired); one that fails is left out and logged. ``owner_name`` is what the owner calls
    itself, not proof; ``online`` is the server's word that the owner's session is open.

    The search is signed with the scientist's ``identity`` (as ``join_duet`` takes it: None is
    the default one), so owners that list only for the scientists they admit are found by those
    scientists; the server then knows who searched. ``identity=False`` searches anonymously
    (only records open to anyone). Raises SignalingError (the server refused, or cannot be
    reached), DuetTimeout, UsageError.
    """
    import pandas

    wanted = _tags(tags)
    rows: list[dict[str, Any]] = []
    found_records = find(
        network_url, wanted, owner=owner, limit=limit, identity=identity,
        timeout_secs=timeout_secs,
    )  # fmt: skip
    for found in found_records:
        record = found.record
        for dataset in record.datasets:
            if set(wanted) <= set(dataset.tags):
                rows.append({
                    "owner_id": record.owner_id,
                    "owner_name": record.owner_name,
                    "dataset": dataset.id,
                    "tags": list(dataset.tags),
                    "description": dataset.description,
                    "shape": tuple(dataset.shape) if dataset.shape is not None else None,
                    "dtype": dataset.dtype,
                    "size": dataset.size,
                    "online": found.online,
                })  # fmt: skip
    return pandas.DataFrame(rows, columns=COLUMNS)


def join(
    network_url: str,
    *,
    owner: str,
    dataset: str,
    timeout_secs: float = 600.0,
    **join_options: Any,
) -> tuple[ScientistSession, Any]:
    """Join ``owner`` (an owner ID, as ``search`` shows it) found on the network at
    ``network_url``, and return ``(session, pointer)``: the connected session and a pointer to
    its listed dataset ``dataset`` (its id, or a tag only one of its listed datasets carries).

    The owner's current record is looked up (and verified) first; ``join_duet`` then joins its
    session with ``owner_id=owner``, so the connection is refused unless the other side proves
    it is that owner. ``join_options`` go to ``join_duet`` (``identity``, ``name``...). Raises
    UsageError (no such owner or dataset listed), SignalingError, HandshakeError, DuetTimeout.
    """
    from ..join import join_duet

    owner_id = canonical_owner_id(owner)
    found = find(network_url, owner=owner_id, identity=join_options.get("identity"))
    if not found:
        raise UsageError(
            f"owner {owner_id} lists nothing on {network_url} (or its registration expired); "
            "search again for the owners listing what you need"
        )
    record = found[0].record
    matches = [d for d in record.datasets if d.id == dataset]
    if not matches:
        matches = [d for d in record.datasets if dataset in d.tags]
    if len(matches) != 1:
        listed = ", ".join(f"{d.id} {list(d.tags)}" for d in record.datasets) or "nothing"
        what = "no" if not matches else f"{len(matches)}"
        raise UsageError(
            f"owner {owner_id} lists {what} dataset with the id or tag {dataset!r}; it lists "
            f"{listed}: pass one of those ids"
        )
    session = join_duet(
        record.session_id, network_url, owner_id=owner_id, timeout_secs=timeout_secs,
        **join_options,
    )  # fmt: skip
    try:
        pointer = session.store[matches[0].id]
    except BaseException:
        session.close()
        raise
    return session, pointer


__all__ = ["COLUMNS", "find", "join", "search"]
