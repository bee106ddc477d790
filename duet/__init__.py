"""duet: remote data science where the data never leaves its owner.

The owner publishes data and answers requests; the scientist drives PyTorch on the owner's
machine through pointers::

    import duet as sy
    owner, scientist = sy.duet_pair()          # both sides in one process
"""

from .errors import (
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

__version__ = "0.1.0"

from .network import join_duet, launch_duet
from .owner.requests import Handler, Request, RequestQueue, RequestStatus
from .scientist.module import Module
from .scientist.pointer import Pointer, RequestHandle
from .session import OwnerSession, ScientistSession, duet_pair, install_send

install_send()

__all__ = [
    "ConnectionLost",
    "DuetError",
    "DuetTimeout",
    "Handler",
    "HandshakeError",
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
    "SignalingError",
    "UsageError",
    "__version__",
    "duet_pair",
    "join_duet",
    "launch_duet",
]
