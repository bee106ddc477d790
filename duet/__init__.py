"""duet: remote data science where the data never leaves its owner.

The owner publishes data and answers requests; the scientist drives PyTorch on the owner's
machine through pointers::

    import duet as sy
    owner, scientist = sy.duet_pair()          # both sides in one process
"""

from . import lib, logger, util
from ._version import __version__
from .errors import (
    BudgetExceeded,
    ConfigError,
    ConnectionLost,
    DuetError,
    DuetTimeout,
    HandshakeError,
    NetworkError,
    NotAllowed,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    RemoteError,
    RequestDenied,
    RequestWarning,
    SignalingError,
    UsageError,
)
from .identity import Identity
from .in_process import duet_pair, install_send
from .join import join_duet
from .launch import launch_duet
from .lib import load
from .network import duet
from .owner.handlers import AS_SENT, Handler
from .owner.requests import Request, RequestQueue, RequestStatus
from .registry import join, search
from .scientist.module import Module
from .scientist.pointer import Pointer, RequestHandle
from .scientist.tables import TablePointer
from .sessions.owner import OwnerSession
from .sessions.scientist import ScientistSession
from .smpc import FixedPrecisionTensor, SharedTensor, install_smpc
from .workers import (
    BaseDataset,
    FederatedDataLoader,
    FederatedDataset,
    TorchHook,
    VirtualWorker,
    install_workers,
    utils,
)

install_send()
install_workers()
install_smpc()  # x.fix_precision(), x.share(bob, alice, crypto_provider=carol)

#: PySyft's ``sy.gym``, like a session's ``duet.gym``: refused, with the reason
gym = ScientistSession.gym


def __getattr__(name: str) -> object:
    """``duet.federated`` (training across owners) is imported on first use."""
    if name == "federated":
        import importlib

        return importlib.import_module(".federated", __name__)
    raise AttributeError(f"module 'duet' has no attribute {name!r}")


__all__ = [
    "AS_SENT",
    "BaseDataset",
    "BudgetExceeded",
    "ConfigError",
    "ConnectionLost",
    "DuetError",
    "DuetTimeout",
    "FederatedDataLoader",
    "FederatedDataset",
    "FixedPrecisionTensor",
    "Handler",
    "HandshakeError",
    "Identity",
    "Module",
    "NetworkError",
    "NotAllowed",
    "OwnerSession",
    "PermissionDenied",
    "Pointer",
    "ProtocolError",
    "QuotaExceeded",
    "RemoteError",
    "Request",
    "RequestDenied",
    "RequestHandle",
    "RequestQueue",
    "RequestStatus",
    "RequestWarning",
    "ScientistSession",
    "SharedTensor",
    "SignalingError",
    "TablePointer",
    "TorchHook",
    "UsageError",
    "VirtualWorker",
    "__version__",
    "duet",
    "duet_pair",
    "federated",
    "gym",
    "join",
    "join_duet",
    "launch_duet",
    "lib",
    "load",
    "logger",
    "search",
    "util",
    "utils",
]
