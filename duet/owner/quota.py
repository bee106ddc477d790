"""What one scientist makes the owner hold, counted where it lives and checked before it is taken.

Memory is counted per object, not per handle: each tensor storage once (however many handles,
views, containers or autograd graphs hold it), each owner-side list and dict by its own size
(grown by what is put into it), a data loader iterator by its index order, and the small values
entries hold (numbers, strings). A charge is released when its object dies, whoever held it.
Tensors an autograd graph saves for backward are charged as they are saved.

Bytes are counted in two accounts, each limited to ``max_bytes``: what the scientist's own
inputs made, and what depends on the owner's data. Whether one of the scientist's own
operations fits then never depends on the owner's data (a private value's size could otherwise
be read off a refusal); a private operation that does not fit fails privately.

Thread-safe: the executor thread charges, the garbage collector releases from any thread.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.utils.data as tud
from torch import nn

from ..errors import QuotaExceeded
from .labels import LabelDict, LabelList

DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MAX_OBJECTS = 100_000
DEFAULT_MAX_PENDING = 1000
MODULE_BYTES = 2048  # a layer object itself, besides its parameters
# An autograd graph node (measured: ~720 bytes for a chain of additions). A result's graph is
# charged to the result tensor; a result that extends a chain takes over its input's charge, so
# the nodes of a chain stay counted after the scientist drops its intermediate results.
GRAPH_NODE_BYTES = 768
ITEM_BYTES = 8  # a pointer in a list or dict
SHUFFLED_ITEM_BYTES = 44  # an index of a shuffled pass: an int object, its slot, the permutation


def scalar_bytes(value: object) -> int:
    """Bytes of an immutable value held by an entry or a container (not tensors)."""
    if type(value) is torch.Tensor:  # the common case: a tensor's storage is charged apart
        return 0
    if isinstance(value, bool | int | float | complex | str | bytes):
        return sys.getsizeof(value)
    if isinstance(value, tuple):  # tuples hold values or objects charged on their own
        return sys.getsizeof(value) + sum(
            scalar_bytes(v) for v in value if not isinstance(v, tuple)
        )
    return 0


def node_bytes(node: object) -> int:
    """What one state node holds by itself (its contents are nodes of their own)."""
    if isinstance(node, torch.UntypedStorage):
        return int(node.nbytes())
    if isinstance(node, LabelList):
        return sys.getsizeof(node) + sum(
            scalar_bytes(v) for v in node if not isinstance(v, torch.Tensor | list | dict)
        )
    if isinstance(node, LabelDict):
        return sys.getsizeof(node) + sum(
            scalar_bytes(k) + scalar_bytes(v)
            for k, v in node.items()
            if not isinstance(v, torch.Tensor | list | dict)
        )
    if isinstance(node, nn.Module):
        return MODULE_BYTES
    if isinstance(node, np.ndarray):  # an array the scientist sent (its own memory)
        return int(node.nbytes)
    if isinstance(node, tud.dataloader._BaseDataLoaderIter):
        return iterator_bytes(node._index_sampler, node._dataset)
    return 0


def iterator_bytes(batch_sampler: object, dataset: object) -> int:
    """A pass over a loader: a shuffling one keeps its whole order as a list of Python ints."""
    sampler = getattr(batch_sampler, "sampler", batch_sampler)
    if not isinstance(sampler, tud.RandomSampler):
        return 256
    if not isinstance(dataset, Sized):  # len() would fail: a dataset without a length
        return 256
    try:
        return 256 + SHUFFLED_ITEM_BYTES * len(dataset)
    except TypeError:
        return 256


class _Charge(weakref.ref):  # type: ignore[type-arg]
    """What one object is charged, released when it dies (one callback for all charges). Made
    as ``_Charge(node, _released)`` and then filled in: a constructor of its own would cost
    four times as much, and one is made for every storage an op makes."""

    __slots__ = ("key", "nbytes", "private", "quota")
    quota: PeerQuota
    key: int
    nbytes: int
    private: bool


def _released(charge: _Charge) -> None:
    """A charged object died (the weakref callback, from any thread)."""
    quota = charge.quota
    with quota._lock:
        if quota._held.get(charge.key) is charge:
            del quota._held[charge.key]
            if charge.private:
                quota.private_bytes -= charge.nbytes
            else:
                quota.own_bytes -= charge.nbytes


@dataclass
class PeerQuota:
    """One scientist's limits and what it holds."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_objects: int = DEFAULT_MAX_OBJECTS
    max_pending: int = DEFAULT_MAX_PENDING
    own_bytes: int = 0
    private_bytes: int = 0
    objects: int = 0
    pending: int = 0
    _held: dict[int, _Charge] = field(default_factory=dict, repr=False)
    # re-entrant: the garbage collector may release a charge (a weakref callback) while this
    # thread holds the lock, from inside ``hold``
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def bytes_used(self) -> int:
        return self.own_bytes + self.private_bytes

    def used(self, private: bool) -> int:
        return self.private_bytes if private else self.own_bytes

    def check(self, planned: int, private: bool, what: str = "this") -> None:
        """Refuse, before anything is allocated, what would pass ``max_bytes``."""
        used = self.used(private)
        if used + planned > self.max_bytes:
            raise QuotaExceeded(
                f"{what} would need about {planned:,} bytes; the owner allows {self.max_bytes:,} "
                f"bytes per scientist and {used:,} are in use; delete pointers you no longer need"
            )

    def add(self, nbytes: int, private: bool) -> None:
        with self._lock:
            if private:
                self.private_bytes += nbytes
            else:
                self.own_bytes += nbytes

    # ---- objects held, released when they die
    def hold(self, node: object, nbytes: int, private: bool) -> int:
        """Charge ``nbytes`` for ``node`` unless it is held already; returns what was added."""
        key = id(node)
        with self._lock:
            charge = self._held.get(key)
            if charge is not None and charge() is node:
                return 0
            try:
                charge = _Charge(node, _released)
            except TypeError:
                return 0
            charge.quota, charge.key, charge.nbytes, charge.private = self, key, nbytes, private
            self._held[key] = charge
            if private:
                self.private_bytes += nbytes
            else:
                self.own_bytes += nbytes
            return nbytes

    def grow(self, node: object, nbytes: int) -> None:
        """A held container grew by ``nbytes`` (items put into it)."""
        with self._lock:
            charge = self._held.get(id(node))
            if charge is None or charge() is not node:
                return
            charge.nbytes += nbytes
            if charge.private:
                self.private_bytes += nbytes
            else:
                self.own_bytes += nbytes

    def take(self, node: object) -> int:
        """Move the charge off ``node`` (to be held by something else); returns it."""
        if id(node) not in self._held:  # nothing to move (most inputs): no lock taken
            return 0
        with self._lock:
            charge = self._held.get(id(node))
            if charge is None or charge() is not node:
                return 0
            amount = charge.nbytes
            charge.nbytes = 0
            if charge.private:
                self.private_bytes -= amount
            else:
                self.own_bytes -= amount
            return amount

    def holds(self, node: object) -> bool:
        charge = self._held.get(id(node))
        return charge is not None and charge() is node

    def hold_all(self, nodes: Iterable[object], private: bool) -> int:
        """Charge every node not held yet (new storages, containers, layers...)."""
        added = 0
        held = self._held
        for node in nodes:
            kind = type(node)
            if kind in (list, tuple, dict) or isinstance(node, torch.Tensor):
                continue  # plain containers and tensor objects: their contents are charged
            charge = held.get(id(node))
            if charge is not None and charge() is node:
                continue  # held already (a long list is not counted again)
            size = int(node.nbytes()) if type(node) is torch.UntypedStorage else node_bytes(node)
            if size:
                added += self.hold(node, size, private)
        return added

    def release_all(self) -> None:
        """The scientist left: forget every charge (the objects die with its store)."""
        with self._lock:
            self._held.clear()
            self.own_bytes = self.private_bytes = 0
