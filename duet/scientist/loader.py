"""Iterating a remote DataLoader: one length request, then one queued ``next`` per batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..protocol import allowlist

if TYPE_CHECKING:
    from .pointer import Pointer


def iterate_loader(loader: Pointer) -> Iterator[Pointer]:
    """Yield a pointer per batch without a round trip per batch.

    The number of batches is asked for once (the owner releases it as a request named
    ``train_size``); each batch is then a queued ``next`` on a remote iterator.
    """
    batches = len(loader)
    iterator = loader._call("__iter__")
    iterator.kind = "DataLoaderIter"
    next_op = allowlist.member("DataLoaderIter", "__next__")
    for _ in range(batches):
        yield loader._client.call(next_op, iterator, (), {})
