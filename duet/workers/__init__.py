"""PySyft 0.2's workers API on duet: ``TorchHook``, ``VirtualWorker``, ``send``/``get`` of
tensors and plain models, ``dataset.federate``, ``FederatedDataset``, ``FederatedDataLoader``
and ``utils.federated_avg``.

Users reach these through ``duet`` (``import duet as sy``); the modules here are private:
- worker.py: VirtualWorker, an owner in this process over the in-memory channel;
- stand_ins.py: local stand-ins for tensors on a worker (``__torch_function__``);
- placement.py: ``model.send(worker)`` / ``model.get()`` for a plain nn.Module;
- datasets.py, loader.py: data spread over workers and batches from it;
- averaging.py: ``federated_avg``.
"""

from __future__ import annotations

from torch import nn

from . import averaging
from .averaging import federated_avg
from .datasets import BaseDataset, FederatedDataset, federate, install_federate
from .hook import TorchHook
from .loader import FederatedDataLoader
from .placement import get_model, send_model
from .worker import VirtualWorker


def _module_get(
    self: nn.Module,
    request_block: bool = False,
    name: str | None = None,
    reason: str = "",
    timeout_secs: float | None = None,
) -> nn.Module | None:
    """Bring this model back from the worker it was sent to (``model.send(worker)``); returns
    the model. A request once its weights depend on the owner's data (see ``get_model``)."""
    return get_model(
        self, request_block=request_block, name=name, reason=reason, timeout_secs=timeout_secs
    )


def install_workers() -> None:
    """Add ``get`` to torch.nn.Module and ``federate`` to torch's Dataset."""
    nn.Module.get = _module_get  # type: ignore[attr-defined]
    install_federate()


utils = averaging  # ``sy.utils.federated_avg``, where PySyft users look for it

__all__ = [
    "BaseDataset",
    "FederatedDataLoader",
    "FederatedDataset",
    "TorchHook",
    "VirtualWorker",
    "federate",
    "federated_avg",
    "get_model",
    "install_workers",
    "send_model",
    "utils",
]
