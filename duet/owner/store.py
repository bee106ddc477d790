"""The owner's object store: every value on the owner's side, with tags, provenance and quotas."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from signaling_server.protocol import MAX_DESCRIPTION_CHARS, MAX_TAG_CHARS, MAX_TAGS

from ..errors import QuotaExceeded, UsageError
from ..protocol.allowlist import type_key
from .access import _key as scientist_key
from .derivation import ITSELF, Whole
from .labels import (
    EMPTY,
    Label,
    LabelDict,
    LabelList,
    LabelRegistry,
    Source,
    Walk,
    owner_containers,
    shape_label,
)
from .publishable import check_publishable, is_frame, is_table
from .quota import DEFAULT_MAX_BYTES, DEFAULT_MAX_OBJECTS, DEFAULT_MAX_PENDING, PeerQuota
from .snapshot import Snapshot

if TYPE_CHECKING:
    import pandas
    import pandas as pd

    from ..protocol.messages import ErrorInfo

OWNER = "owner"


class StoreKeyError(KeyError):
    """No object in the store has that id or tag, or more than one does (the message names
    them). Shown as its message, not quoted as a KeyError's key would be."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(eq=False, slots=True, weakref_slot=True)
class StoredObject:
    """One handle on the owner's side: a value, or the failure of the op that was to make it.

    ``label`` is what the entry may depend on besides the state it reaches (see labels.py):
    for the owner's published objects their own source, for a result the labels of everything
    the op that made it read. ``op`` is that op's short name (a tag handlers can match).
    """

    id: str
    value: object
    owner: str  # OWNER, or the peer that created it
    tags: list[str] = field(default_factory=list)
    description: str = ""
    pointable: bool = False
    listed: bool = False  # its metadata registered on the network (duet/registry), if a node
    nbytes: int = 0  # what the entry itself holds (a number, a string); state is held apart
    created: float = field(default_factory=time.time)
    label: Label = EMPTY
    op: str = ""
    failure: ErrorInfo | None = None  # set instead of a value when the op failed
    private_account: bool = False  # counted against the scientist's private quota
    # existing state this handle may stand for besides its value: what it was chosen from (a
    # list item picked by a private index), or what a failed op would have used; writes through
    # the handle label all of it, so which object was written tells nothing (executor.py)
    reach: tuple[weakref.ref[object], ...] = ()
    reach_unknown: bool = False
    # what automatic decisions rely on (derivation.py): the value is exactly one op applied to
    # a published object as a whole; what its shape (a length) depends on when that is less
    # than ``label`` says; a model's architecture when the scientist sent it
    whole: Whole | None = None
    shape_label: Label | None = None
    sent_architecture: str | None = None

    def get(self) -> object:
        """The value itself (the owner's side holds the real object)."""
        return self.value

    def __repr__(self) -> str:
        listed = "listed" if self.pointable else "not listed"
        return f"<{self.type_name} {self.id} owned by {self.owner}, tags={self.tags}, {listed}>"

    @property
    def type_name(self) -> str:
        return "failure" if self.failure is not None else type(self.value).__name__


def check_listable(pointable: bool, tags: list[str], description: str) -> None:
    """Raise UsageError for a dataset the network's registry would refuse to list (the limits
    are the registry's, ``signaling_server.protocol``), before anything is published."""
    if not pointable:
        raise UsageError(
            "listed=True registers the dataset on the network for scientists to find and "
            "point to: it must be pointable too (pointable=True)"
        )
    if len(tags) > MAX_TAGS or any(not 0 < len(str(t)) <= MAX_TAG_CHARS for t in tags):
        raise UsageError(
            f"a listed dataset has at most {MAX_TAGS} tags of 1 to {MAX_TAG_CHARS} characters, "
            f"not {[str(t) for t in tags]!r:.200}"
        )
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise UsageError(
            f"a listed dataset's description is at most {MAX_DESCRIPTION_CHARS} characters, "
            f"not {len(description)}"
        )


def listed_nbytes(value: object, depth: int = 0) -> int:
    """The size shown for a published object in the store's listing."""
    if is_table(value):
        return int(value.nbytes)  # type: ignore[attr-defined]
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, nn.Module):
        return sum(listed_nbytes(t) for t in value.parameters()) + sum(
            listed_nbytes(t) for t in value.buffers()
        )
    if isinstance(value, torch.utils.data.TensorDataset):
        return sum(listed_nbytes(t) for t in value.tensors)
    if isinstance(value, torch.utils.data.Dataset):  # e.g. MNIST: its tensors are attributes
        return 64 + sum(
            listed_nbytes(v) for v in vars(value).values() if isinstance(v, torch.Tensor)
        )
    if depth < 4 and isinstance(value, list | tuple):
        return 64 + sum(listed_nbytes(v, depth + 1) for v in value[:10_000])
    if depth < 4 and isinstance(value, dict):
        return 64 + sum(listed_nbytes(v, depth + 1) for v in list(value.values())[:10_000])
    if isinstance(value, str | bytes):
        return len(value)
    return 64


_SHOWN_TYPES: dict[type, str] = {LabelList: "list", LabelDict: "dict"}


def describe(value: object) -> dict[str, object]:
    """Metadata the scientist may see about a published object."""
    if is_table(value):  # what the owner published about it: columns, dtypes, rows
        return value.describe()  # type: ignore[attr-defined, no-any-return]
    # the owner's own containers are lists and dicts to whoever reads the listing
    shown = _SHOWN_TYPES.get(type(value), type(value).__name__)
    meta: dict[str, object] = {"kind": type_key(value), "type": shown}
    if isinstance(value, torch.Tensor):
        meta["shape"] = list(value.shape)
        meta["dtype"] = str(value.dtype).removeprefix("torch.")
    elif isinstance(value, torch.utils.data.TensorDataset):
        meta["fields"] = len(value.tensors)
        meta["shape"] = [list(t.shape) for t in value.tensors]
    elif isinstance(value, torch.utils.data.Dataset):
        meta["fields"] = 2
    return meta


class ObjectStore:
    """All objects, by id. The owner's view (``owner.store``) lists the objects the owner published.

    Thread-safe: the executor thread writes, the owner's notebook reads.
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_objects: int = DEFAULT_MAX_OBJECTS,
        max_pending: int = DEFAULT_MAX_PENDING,
    ):
        self._objects: dict[str, StoredObject] = {}
        self._lock = threading.RLock()
        self.labels = LabelRegistry()
        self.default_quota = (max_bytes, max_objects, max_pending)
        self.quotas: dict[str, PeerQuota] = {}

    # ---- the owner's own objects
    def publish(
        self,
        value: object,
        *,
        pointable: bool = True,
        tags: list[str] | None = None,
        description: str = "",
        listed: bool = False,
    ) -> StoredObject:
        """Store one of the owner's values: private, and read-only for every scientist.
        ``listed``: its metadata (tags, description, shape, size; never values) is registered
        on the network by an owner node (``duet.search`` finds it); it must be pointable. A pandas
        DataFrame becomes a table only DP statistics read (duet/privacy/tables.py). Raises
        UsageError for what no remote operation works on (a NumPy array, a pandas Series, a
        DataFrame in a container), naming what to publish instead, and for a DataFrame that
        cannot be a table (a column of text, missing values)."""
        if listed:
            check_listable(pointable, tags or [], description)
        check_publishable(value)
        if is_frame(value):
            from ..privacy.tables import Table

            value = Table(value)  # type: ignore[arg-type]
        tags = [str(t) for t in (tags or [])]
        if isinstance(value, list | dict):
            value = owner_containers(value)
        object_id = "o" + uuid.uuid4().hex
        label = frozenset({Source("data", object_id, frozenset(tags))})
        entry = StoredObject(
            id=object_id,
            value=value,
            owner=OWNER,
            tags=tags,
            description=description,
            pointable=pointable,
            listed=listed,
            nbytes=listed_nbytes(value),
            label=label,
            whole=Whole(ITSELF, object_id),
            shape_label=shape_label(label),
        )
        self.labels.protect_all(Walk().add(value), label)
        with self._lock:
            self._objects[entry.id] = entry
        return entry

    def published(self) -> list[StoredObject]:
        with self._lock:
            return [e for e in self._objects.values() if e.owner == OWNER]

    # ---- everything
    def get(self, object_id: str) -> StoredObject | None:
        return self._objects.get(object_id)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def quota(self, peer: str) -> PeerQuota:
        q = self.quotas.get(peer)
        if q is None:
            q = self.quotas[peer] = PeerQuota(*self.default_quota)
        return q

    def add_for_peer(self, peer: str, entry: StoredObject, *, check_bytes: bool = True) -> None:
        """Store a peer's object, within the peer's quota (raises QuotaExceeded, stores nothing).

        ``check_bytes=False`` for failures: they count as objects, and their few bytes are not
        checked, so storing one never depends on how much private data the scientist holds.
        """
        quota = self.quotas.get(peer) or self.quota(peer)
        with self._lock:
            if entry.id in self._objects:
                raise UsageError(f"object id {entry.id!r} is already in use; ids cannot be reused")
            if quota.objects + 1 > quota.max_objects:
                raise QuotaExceeded(
                    f"the owner allows {quota.max_objects} objects per scientist and you hold "
                    f"{quota.objects}; delete pointers you no longer need"
                )
            if check_bytes and entry.nbytes:
                quota.check(entry.nbytes, entry.private_account, "storing this value")
            quota.objects += 1
            if entry.nbytes:
                quota.add(entry.nbytes, entry.private_account)
            self._objects[entry.id] = entry

    def remove(self, object_id: str) -> StoredObject | None:
        with self._lock:
            entry = self._objects.pop(object_id, None)
            if entry is not None and entry.owner != OWNER:
                quota = self.quota(entry.owner)
                quota.objects -= 1
                quota.add(-entry.nbytes, entry.private_account)
            return entry

    def drop_peer(self, peer: str) -> int:
        with self._lock:
            ids = [i for i, e in self._objects.items() if e.owner == peer]
            for object_id in ids:
                self.remove(object_id)
            quota = self.quotas.pop(peer, None)
        if quota is not None:
            quota.release_all()
        return len(ids)

    def scientists_objects(self) -> list[StoredObject]:
        """Every handle a scientist holds (not the owner's published objects)."""
        with self._lock:
            return [e for e in self._objects.values() if e.owner != OWNER]

    def peer_objects(self, peer: str) -> list[StoredObject]:
        with self._lock:
            return [e for e in self._objects.values() if e.owner == peer]


class OwnerStoreView:
    """``owner.store``: the objects the owner published, list-like, with ``.pandas``."""

    def __init__(self, store: ObjectStore, names: Callable[[str], str] | None = None):
        self._store = store
        self._names = names or (lambda scientist: "")

    def __len__(self) -> int:
        return len(self._store.published())

    def __iter__(self) -> Iterator[StoredObject]:
        return iter(self._store.published())

    def __getitem__(self, key: int | str) -> StoredObject | SentObject:
        """A published object by position, id or tag; else an object a scientist sent
        (``x.send(duet, searchable=True, tags=[...])``) by its id or tag, as a SentObject.

        Your published objects come first: a scientist's tag never hides one of yours. A tag
        that objects of several scientists (or several objects) carry is a KeyError naming
        them; ``sent_by(scientist_id)[tag]`` picks that scientist's. Raises KeyError when
        nothing has that id or tag."""
        entries = self._store.published()
        if isinstance(key, int):
            return entries[key]
        for entry in entries:
            if entry.id == key:
                return entry
        matches = [e for e in entries if key in e.tags]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise StoreKeyError(
                f"tag {key!r} matches {len(matches)} objects: {[e.id for e in matches]}"
            )
        return self._sent(key, None)

    def sent_by(self, scientist: str) -> SentObjects:
        """What the scientist with this ID sent: ``sent_by("3fa2-91bc-0d4e-77a1")["tag"]``
        (by tag, or by the id its pointer shows)."""
        return SentObjects(self, scientist_key(scientist))

    def _sent(self, key: str, scientist: str | None) -> SentObject:
        entries = (
            self._store.scientists_objects()
            if scientist is None
            else self._store.peer_objects(scientist)
        )
        entries = [e for e in entries if e.failure is None]
        found = [e for e in entries if e.id == key or e.id == f"{e.owner}:{key}"]
        if not found:
            found = [e for e in entries if key in e.tags]
        if len(found) == 1:
            return SentObject(found[0], self._names(found[0].owner))
        whose = "" if scientist is None else f" sent by {scientist}"
        if not found:
            nothing = "no published object, and no object" if scientist is None else "no object"
            raise StoreKeyError(f"{nothing}{whose} has the id or tag {key!r}")
        senders = sorted({e.owner for e in found})
        listed = "; ".join(
            f"{_who(e.owner, self._names(e.owner))}: id {e.id.removeprefix(e.owner + ':')!r}"
            for e in found
        )
        if len(senders) > 1:
            pick = f"pick one scientist's: duet.store.sent_by({senders[0]!r})[{key!r}]"
        else:
            pick = f"pick one by its id: duet.store.sent_by({senders[0]!r})['<id>']"
        raise StoreKeyError(
            f"tag {key!r} is on {len(found)} objects scientists sent ({listed}); {pick}"
        )

    @property
    def pandas(self) -> pandas.DataFrame:
        from ..display import store_frame

        return store_frame(
            [
                {"id": e.id, "tags": e.tags, "description": e.description, **describe(e.value),
                 "size": e.nbytes, "pointable": e.pointable}
                for e in self._store.published()
            ]
        )  # fmt: skip

    def held(self, scientist: str | None = None) -> pd.DataFrame:
        """What scientists hold on this machine (one of them: ``scientist``, an ID), one row per
        handle: its scientist's ID and name, type, shape, size in bytes, the op that made it, and
        whether it depends on the owner's data."""
        from ..display import held_frame

        return held_frame(self.held_rows(scientist))

    def held_rows(self, scientist: str | None = None) -> list[dict[str, object]]:
        """What ``held`` shows, as plain rows."""
        entries = (
            self._store.scientists_objects()
            if scientist is None
            else self._store.peer_objects(scientist)
        )
        rows = []
        for e in entries:
            meta = describe(e.value) if e.failure is None else {"type": "failure"}
            rows.append(
                {
                    "id": e.id, "scientist": e.owner, "scientist_name": self._names(e.owner),
                    "type": meta.get("type", ""), "shape": meta.get("shape"), "size": e.nbytes,
                    "op": e.op, "owners_data": bool(e.label),
                }
            )  # fmt: skip
        return rows

    def __repr__(self) -> str:
        return f"<owner store: {len(self)} published objects>"


def _who(scientist: str, name: str) -> str:
    return f"{scientist} {name}" if name else scientist


class SentObjects:
    """``owner.store.sent_by(scientist_id)``: what that scientist sent, by tag or id."""

    def __init__(self, view: OwnerStoreView, scientist: str):
        self._view = view
        self.scientist = scientist

    def __getitem__(self, key: str) -> SentObject:
        return self._view._sent(key, self.scientist)

    def __repr__(self) -> str:
        return f"<objects scientist {self.scientist} sent>"


@dataclass(frozen=True, eq=False)
class SentObject:
    """An object a scientist sent, as the owner looks it up (``owner.store["tag"]``)."""

    entry: StoredObject
    scientist_name: str = ""

    @property
    def id(self) -> str:
        return self.entry.id

    @property
    def scientist(self) -> str:
        """The ID of the scientist who sent it."""
        return self.entry.owner

    @property
    def tags(self) -> list[str]:
        return list(self.entry.tags)

    @property
    def description(self) -> str:
        return self.entry.description

    def get(self, *, delete_obj: bool = False) -> object:
        """A copy of the value as it is now, as it would travel: what you do with it changes
        nothing the scientist holds. ``delete_obj`` (PySyft's) must stay False: the object is
        the scientist's, its pointer keeps it."""
        if delete_obj:
            raise UsageError(
                f"object {self.id} is the scientist's; its pointer keeps it (get() gives you a "
                "copy; leave delete_obj out)"
            )
        snapshot = Snapshot.of(self.entry.value)
        if snapshot.error is not None:
            raise UsageError(f"object {self.id} cannot be copied: {snapshot.error.message}")
        return snapshot.decoded()

    def __repr__(self) -> str:
        who = _who(self.scientist, self.scientist_name)
        return f"<{self.entry.type_name} {self.id} sent by scientist {who}, tags={self.tags}>"
