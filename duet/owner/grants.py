"""Grants: an accepted request lets its scientist get the same, unchanged object again.

PySyft let a scientist whose request the owner accepted ``.get()`` that object again without
asking. Here a request the owner accepted by hand leaves a *grant* (handlers decide each
request afresh, so their quotas count and removing one stops it) naming the scientist, the object (the very
handle, not only its id, which a scientist could reuse after deleting it) and exactly what the
owner reviewed: the digest of the released value, its label, the pieces of state it is made of
and their versions. A later get of that object by that scientist is served through the grant
only while all of it still holds; anything else goes through the request queue as usual.

A grant stops holding (fail closed) when
- anything the executor writes, may have written, or would have written had a private input not
  failed, touches a piece of the object's state (through any view or alias: they share their
  storage) or when a write's reach cannot be told: ``written()``, called by the executor;
- the object's value, label, pieces of state or tensor versions differ from the reviewed ones
  (the owner's own writes, say): ``check()``, on each get;
- the owner revokes it, or the scientist leaves.

Another scientist never benefits: grants live with the service of the scientist they name.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING

import torch

from .labels import Label, Walk

if TYPE_CHECKING:
    from .store import StoredObject

log = logging.getLogger(__name__)
_ENDING = threading.Lock()


class GrantState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"  # by the owner
    STALE = "stale"  # the object changed (or may have), or the scientist left


class Grant:
    """What an accepted request leaves: ``state``, ``why`` it ended, ``uses`` so far."""

    def __init__(
        self,
        *,
        request_id: str,
        peer: str,
        entry: StoredObject,
        walk: Walk,
        label: Label,
        digest: str,
    ):
        self.request_id = request_id
        self.peer = peer
        self.object_id = entry.id
        self.label = label
        self.digest = digest
        self.state = GrantState.ACTIVE
        self.why = ""
        self.uses = 0
        self._entry = weakref.ref(entry)
        self._book: GrantBook | None = None
        # the pieces of state reviewed, by id: a weak reference where one can be taken (so a
        # recycled id is not mistaken for the piece), and each tensor's version counter
        self.nodes: dict[int, weakref.ref[object] | None] = {}
        self.versions: dict[int, int] = {}
        for key, node in walk.nodes.items():
            try:
                self.nodes[key] = weakref.ref(node)
            except TypeError:
                self.nodes[key] = None
            if isinstance(node, torch.Tensor):
                self.versions[key] = node._version

    @property
    def active(self) -> bool:
        return self.state is GrantState.ACTIVE

    def revoke(self, why: str = "revoked by the owner") -> bool:
        """End the grant: the next get of the object is a request again. False if it had
        ended already."""
        book = self._book
        if book is not None:
            return book.end(self, GrantState.REVOKED, why)
        return self.end(GrantState.REVOKED, why)

    def end(self, state: GrantState, why: str) -> bool:
        """Stop the grant; False if it had ended already."""
        with _ENDING:
            if self.state is not GrantState.ACTIVE:
                return False
            self.state = state
            self.why = why
        log.info("grant of request %s %s: %s", self.request_id, state.value, why)
        return True

    def check(self, entry: StoredObject, walk: Walk, label: Label, digest: str) -> str | None:
        """Why the grant does not cover ``entry`` as it is now (its state ``walk``, ``label``
        and value ``digest``), or None when it does."""
        if not self.active:
            return f"the grant is {self.state.value}"
        if self._entry() is not entry:
            return "the object is not the one reviewed"
        if walk.unknown:
            return "the object's state cannot be told"
        if walk.nodes.keys() != self.nodes.keys():
            return "the object's state is not the reviewed one"
        for key, node in walk.nodes.items():
            ref = self.nodes[key]
            if ref is not None and ref() is not node:
                return "the object's state is not the reviewed one"
            if isinstance(node, torch.Tensor) and node._version != self.versions.get(key):
                return "a tensor of the object was written"
        if label != self.label:
            return "what the object depends on changed"
        if digest != self.digest:
            return "the object's value changed"
        return None

    def __repr__(self) -> str:
        return f"<grant of request {self.request_id} on {self.object_id}: {self.state.value}>"


class GrantBook:
    """One scientist's grants, by object and by the pieces of state they cover.

    Thread-safe: the executor thread reports writes and checks grants, the owner's thread
    revokes them and (deciding a request) adds them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_object: dict[str, Grant] = {}
        self._by_node: dict[int, list[Grant]] = {}

    def add(self, grant: Grant) -> None:
        with self._lock:
            old = self._by_object.get(grant.object_id)
            if old is not None:
                self._drop(old)
                old.end(GrantState.STALE, f"replaced by the grant of request {grant.request_id}")
            self._by_object[grant.object_id] = grant
            grant._book = self
            for key in grant.nodes:
                self._by_node.setdefault(key, []).append(grant)

    def find(self, object_id: str) -> Grant | None:
        """The active grant on ``object_id``, if any (``check`` it before use)."""
        with self._lock:
            grant = self._by_object.get(object_id)
        return grant if grant is not None and grant.active else None

    def written(self, nodes: Iterable[object] | None) -> None:
        """Pieces of state were (or may have been) written: the grants covering any of them end.
        ``None``: what was written cannot be told, so every grant ends."""
        if not self._by_object:  # nothing granted: the common case, without the lock
            return
        with self._lock:
            if nodes is None:
                ended = list(self._by_object.values())
            else:
                found: dict[int, Grant] = {}
                for node in nodes:
                    for grant in self._by_node.get(id(node), ()):
                        ref = grant.nodes.get(id(node))
                        # a recycled id ends the grant too: a wrong guess only asks again
                        if ref is None or ref() is node or ref() is None:
                            found[id(grant)] = grant
                ended = list(found.values())
            for grant in ended:
                self._drop(grant)
        for grant in ended:
            grant.end(GrantState.STALE, "the object was written after it was reviewed")

    def end(self, grant: Grant, state: GrantState, why: str) -> bool:
        with self._lock:
            if self._by_object.get(grant.object_id) is grant:
                self._drop(grant)
        return grant.end(state, why)

    def end_all(self, state: GrantState, why: str) -> None:
        with self._lock:
            grants = list(self._by_object.values())
            for grant in grants:
                self._drop(grant)
        for grant in grants:
            grant.end(state, why)

    def _drop(self, grant: Grant) -> None:
        if self._by_object.get(grant.object_id) is grant:
            del self._by_object[grant.object_id]
        for key in grant.nodes:
            grants = self._by_node.get(key)
            if grants is not None:
                grants[:] = [g for g in grants if g is not grant]
                if not grants:
                    del self._by_node[key]

    def __len__(self) -> int:
        return len(self._by_object)


__all__ = ["Grant", "GrantBook", "GrantState"]
