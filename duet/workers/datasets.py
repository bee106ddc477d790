"""Datasets spread over workers: ``dataset.federate(workers)``, ``sy.BaseDataset`` and
``sy.FederatedDataset``.

``federate`` simulates data that is born on several sites: it splits a local dataset into
contiguous, near-equal shares (in the dataset's order) and sends each share to one worker as
two tensors, data and targets. On real sites the data is already there; a ``BaseDataset`` is
then built from pointers to it, and a ``FederatedDataset`` gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, SupportsIndex, runtime_checkable

import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import UsageError
from ..scientist.pointer import Pointer

# a dataset's data or targets: tensors here, pointers on a worker
Part = torch.Tensor | Pointer


@runtime_checkable
class Destination(Protocol):
    """Where a dataset can be sent: a worker, or a scientist's session (``send_value``)."""

    def send_value(self, value: object, /) -> Pointer: ...


class BaseDataset(Dataset[tuple[Part, Part]]):
    """Data and targets, here (tensors) or on one worker (pointers).

    ``send(worker)`` moves both there; ``location`` is their worker (None while here).
    """

    def __init__(self, data: Part, targets: Part):
        where = {id(_location(v)): _location(v) for v in (data, targets)}
        if len(where) != 1:
            raise UsageError("a dataset's data and targets must live in the same place")
        self.data = data
        self.targets = targets

    @property
    def location(self) -> object:
        """The worker (or session) holding the data, or None while it is here."""
        return _location(self.data)

    def send(self, location: Destination) -> BaseDataset:
        """The same data on ``location``: a new dataset of pointers."""
        if self.location is not None:
            raise UsageError("this dataset is on a worker already")
        return BaseDataset(location.send_value(self.data), location.send_value(self.targets))

    def get(self) -> BaseDataset:
        """The data back here (freed on the worker); a request for data that is the owner's."""
        data, targets = self.data, self.targets
        # on a worker (a location) both are pointers
        if (
            self.location is None
            or not isinstance(data, Pointer)
            or not isinstance(targets, Pointer)
        ):
            return self
        return BaseDataset(data.get(), targets.get())

    def __len__(self) -> int:
        shape = _shape(self.data)
        if shape is not None:
            return int(shape[0])
        if isinstance(self.data, Pointer):  # as len(ptr): asks the owner (request "train_size")
            return self.data.len().__index__()
        return len(self.data)

    def __getitem__(self, index: SupportsIndex | slice | torch.Tensor) -> tuple[Part, Part]:
        return self.data[index], self.targets[index]

    def federate(self, *workers: Destination | Sequence[Destination]) -> FederatedDataset:
        return federate(self, *workers)

    def __repr__(self) -> str:
        where = self.location
        place = "here" if where is None else f"on {getattr(where, 'id', where)}"
        return f"<BaseDataset of {len(self)} items {place}>"


class FederatedDataset:
    """Datasets on several workers, by worker id: ``fed["alice"]`` (or ``fed[alice]``)."""

    def __init__(self, datasets: Iterable[BaseDataset]):
        self.datasets: dict[str, BaseDataset] = {}
        for dataset in datasets:
            location = dataset.location
            if location is None:
                raise UsageError("send each dataset to its worker first (dataset.send(worker))")
            key = location_id(location)
            if key in self.datasets:
                raise UsageError(f"two datasets are on the worker {key!r}")
            self.datasets[key] = dataset

    @property
    def workers(self) -> list[str]:
        """The workers' ids, in order."""
        return list(self.datasets)

    def __getitem__(self, worker: object) -> BaseDataset:
        key = worker if isinstance(worker, str) else location_id(worker)
        try:
            return self.datasets[key]
        except KeyError:
            raise KeyError(f"no dataset on worker {key!r}; workers: {self.workers}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.datasets)

    def __len__(self) -> int:
        """The number of items on all workers together."""
        return sum(len(d) for d in self.datasets.values())

    def __repr__(self) -> str:
        shares = ", ".join(f"{k}: {len(d)}" for k, d in self.datasets.items())
        return f"<FederatedDataset {shares}>"


def federate(
    dataset: Dataset[object], *workers: Destination | Sequence[Destination]
) -> FederatedDataset:
    """Split ``dataset`` into one contiguous share per worker and send each share there.

    ``workers`` may be given one by one or as one sequence: ``federate(ds, alice, bob)`` or
    ``ds.federate((alice, bob))``. A share is two tensors (data, targets): a TensorDataset's
    own, or every item stacked (a torchvision dataset, with its transform applied here).
    """
    first = workers[0] if len(workers) == 1 else None
    sites = tuple(first) if isinstance(first, list | tuple) else workers
    if not sites:
        raise UsageError("federate() needs at least one worker")
    data, targets = _tensors(dataset)
    shares = torch.arange(len(data)).tensor_split(len(sites))
    return FederatedDataset(
        BaseDataset(data[share], targets[share]).send(_destination(worker))
        for share, worker in zip(shares, sites, strict=True)
    )


def _destination(worker: object) -> Destination:
    if not isinstance(worker, Destination):  # sent to in turn: the shares before it are sent
        raise UsageError(f"federate() sends shares to workers, not to {type(worker).__name__}")
    return worker


def _tensors(dataset: Dataset[object]) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, BaseDataset) and dataset.location is None:
        return torch.as_tensor(dataset.data), torch.as_tensor(dataset.targets)
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    if not hasattr(dataset, "__len__"):
        raise UsageError("only datasets with a length can be federated")
    items = [dataset[i] for i in range(len(dataset))]
    if not items:
        raise UsageError("cannot federate an empty dataset")
    pairs = [item for item in items if isinstance(item, tuple | list) and len(item) == 2]
    if len(pairs) != len(items):
        raise UsageError("federate() needs a dataset of (data, target) pairs")
    data = torch.stack([torch.as_tensor(x) for x, _ in pairs])
    targets = torch.stack([torch.as_tensor(y) for _, y in pairs])
    return data, targets


def location_id(location: object) -> str:
    """The name a worker (or session) goes by: its ``id``, else its owner's ID."""
    name = getattr(location, "id", None) or getattr(location, "owner_id", None)
    return str(name) if name else f"session-{id(location):x}"


def _location(value: object) -> object:
    return value.location if isinstance(value, Pointer) else None


def _shape(value: object) -> list[int] | None:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, Pointer):
        shape = value.meta.get("shape")
        if isinstance(shape, list) and shape and isinstance(shape[0], int):
            return shape
    return None


def install_federate() -> None:
    """Add ``federate`` to torch's Dataset (and so to torchvision's datasets)."""
    Dataset.federate = federate  # type: ignore[attr-defined]


__all__ = ["BaseDataset", "FederatedDataset", "federate", "install_federate", "location_id"]
