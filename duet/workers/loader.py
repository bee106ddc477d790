"""``sy.FederatedDataLoader``: batches from every worker of a FederatedDataset, one worker
after the other, as PySyft's did; each batch is a pair of pointers whose ``.location`` is the
worker holding it, so a loop can send the model there (``model.send(data.location)``).

A batch is cut on the worker from its share (a slice, or the indices of a shuffled order drawn
here): no data moves, and nothing but the indices goes over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..errors import UsageError
from ..scientist.pointer import Pointer
from .datasets import FederatedDataset

Batch = tuple[Pointer, Pointer]  # (data, target) on one worker


class FederatedDataLoader:
    """``sy.FederatedDataLoader(federated_dataset, batch_size=64, shuffle=True)``.

    Iterating yields ``(data, target)`` pointer pairs: every batch of the first worker, then
    every batch of the next. With ``iter_per_worker=True`` it yields, per round, a dict
    ``{worker_id: (data, target)}`` with one batch of each worker that still has one (for
    training the workers side by side). ``shuffle`` draws each worker's order anew every epoch
    from ``generator`` (torch's global generator by default), here.
    """

    def __init__(
        self,
        federated_dataset: FederatedDataset,
        batch_size: int = 8,
        shuffle: bool = False,
        drop_last: bool = False,
        *,
        iter_per_worker: bool = False,
        generator: torch.Generator | None = None,
    ):
        if not isinstance(federated_dataset, FederatedDataset):
            raise UsageError(
                "FederatedDataLoader takes a FederatedDataset (dataset.federate(workers))"
            )
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, not {batch_size}")
        self.federated_dataset = federated_dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.iter_per_worker = iter_per_worker
        self.generator = generator

    @property
    def workers(self) -> list[str]:
        return self.federated_dataset.workers

    def _batches(self, size: int) -> int:
        if self.drop_last:
            return size // self.batch_size
        return -(-size // self.batch_size)

    def batches_of(self, worker: object) -> int:
        """How many batches one worker yields per epoch."""
        return self._batches(len(self.federated_dataset[worker]))

    def __len__(self) -> int:
        """Batches per epoch, all workers together (rounds, with ``iter_per_worker``)."""
        counts = [self.batches_of(w) for w in self.workers]
        return max(counts, default=0) if self.iter_per_worker else sum(counts)

    def _worker_batches(self, worker: str) -> Iterator[Batch]:
        dataset = self.federated_dataset[worker]
        data, targets = dataset.data, dataset.targets
        # a FederatedDataset holds only datasets on workers: pointers
        assert isinstance(data, Pointer) and isinstance(targets, Pointer)
        size = len(dataset)
        order = torch.randperm(size, generator=self.generator) if self.shuffle else None
        for index in range(self._batches(size)):
            start = index * self.batch_size
            stop = min(start + self.batch_size, size)
            key = slice(start, stop) if order is None else order[start:stop]
            yield data[key], targets[key]

    # Any: a Batch, or with iter_per_worker a dict of them by worker (set at run time); loops
    # unpack it and chain calls on its parts
    def __iter__(self) -> Iterator[Any]:
        if not self.iter_per_worker:
            for worker in self.workers:
                yield from self._worker_batches(worker)
            return
        running = {worker: self._worker_batches(worker) for worker in self.workers}
        while running:
            round_: dict[str, Batch] = {}
            for worker, batches in list(running.items()):
                batch = next(batches, None)
                if batch is None:
                    del running[worker]
                else:
                    round_[worker] = batch
            if round_:
                yield round_

    def __repr__(self) -> str:
        return (
            f"<FederatedDataLoader over {self.workers}: batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, {len(self)} batches>"
        )


__all__ = ["FederatedDataLoader"]
