"""Iterating a remote DataLoader: one length request, then one queued ``next`` per batch."""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import RequestDenied
from ..protocol import allowlist

if TYPE_CHECKING:
    from .pointer import Pointer


def iterate_loader(loader: Pointer) -> Iterator[Pointer]:
    """Yield a pointer per batch without a round trip per batch.

    The number of batches is asked for once per loader (the owner releases it as a request
    named ``train_size``) and remembered for later epochs; each batch is then a queued ``next``
    on a remote iterator. Raises RequestDenied when the owner does not release the length.
    """
    try:
        batches = operator.index(loader.len())  # len(loader): released once, then remembered
    except RequestDenied as exc:
        raise RequestDenied(
            f"cannot iterate the remote DataLoader {loader.id}: {exc}; the owner can allow it "
            "with duet.requests.add_handler(name='train_size', action='accept')"
        ) from exc
    iterator = loader._call("__iter__")
    next_op = allowlist.member("DataLoaderIter", "__next__")
    for _ in range(batches):
        yield loader._client.call(next_op, iterator, (), {})
