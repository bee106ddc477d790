"""One exception tree for everything duet raises.

    DuetError
    ├── UsageError             the API was called wrongly or in the wrong state
    ├── NotAllowed             an operation outside the allowlist (refused before or after sending)
    ├── PermissionDenied       a value that is the owner's to release was read without a request
    ├── QuotaExceeded          the owner's limits for this scientist (bytes, objects) were reached
    │   └── BudgetExceeded     a DP release the scientist's privacy budget cannot take (or none)
    ├── RemoteError            an operation failed on the owner's side (carries the op and message)
    ├── RequestDenied          a request was denied or timed out (raised only when asked to)
    ├── DuetTimeout            a blocking call did not get its reply in time
    ├── ProtocolError          a frame or message is malformed, oversized or of another version
    ├── SecureAggregationAborted  an owner (or the aggregator) stopped a secure-aggregation round
    └── NetworkError           anything about reaching the peer
        ├── SignalingError     the signaling server refused or failed
        ├── HandshakeError     versions or allowlists of the two sides do not match
        └── ConnectionLost     the peer went away; every blocking call on the session raises this

Errors that happen on the owner's side cross the wire as data (a code and a message) and are
raised on the scientist's side as the class the code names.
"""

from __future__ import annotations

import re


class DuetError(Exception):
    """Base class of every error duet raises."""

    code = "duet_error"


class UsageError(DuetError):
    code = "usage_error"


class ConfigError(UsageError):
    """A ``duet serve`` configuration that cannot be used; the message names the file and line."""


class NotAllowed(DuetError):
    code = "not_allowed"


class PermissionDenied(DuetError):
    code = "permission_denied"


class QuotaExceeded(DuetError):
    code = "quota_exceeded"


class BudgetExceeded(QuotaExceeded):
    """A charge the scientist's privacy budget on a dataset cannot take (or the owner set no
    budget): nothing was reserved or run. The message carries the numbers. Its own code on
    the wire, so a scientist (a federation leaving an owner out "over budget") can tell it
    from the owner's other limits."""

    code = "budget_exceeded"


class RemoteError(DuetError):
    """An operation failed on the owner's side.

    ``op`` names the remote operation (``torch.Tensor.matmul``), ``remote_type`` the exception
    type raised there, and the message is the owner's (or a redacted note).
    """

    code = "remote_error"

    def __init__(self, message: str, *, op: str | None = None, remote_type: str | None = None):
        self.op = op
        self.remote_type = remote_type
        self.remote_message = message
        prefix = f"{op} failed on the owner's side" if op else "remote operation failed"
        kind = f" ({remote_type})" if remote_type else ""
        super().__init__(f"{prefix}{kind}: {message}")


class RequestDenied(DuetError):
    code = "request_denied"


class DuetTimeout(DuetError, TimeoutError):
    code = "timeout"


class ProtocolError(DuetError):
    code = "protocol_error"


class SecureAggregationAborted(DuetError):
    """An owner (or the scientist's aggregator) stopped a round of secure aggregation.

    ``reason`` is a short word for what went wrong (``roster``, ``signature``, ``replay``,
    ``model``, ``parameters``, ``both_kinds``, ``below_threshold``, ``protocol``, ``shares``,
    ``history``: the owner could not record the round in its history file);
    the message says it in full. An owner that aborts has released no unmasked update, and
    reveals nothing more for the round. From the wire (an owner's abort) the reason is read
    back from the message; ``owner`` is then empty (the operation names the owner).
    """

    code = "secure_aggregation_aborted"

    def __init__(self, message: str, *, reason: str = "", owner: str = ""):
        if not reason:  # rebuilt from the wire: "... aborted (roster): ..."
            found = re.search(r"secure aggregation aborted \(([a-z_]{1,20})\)", message)
            reason = found.group(1) if found else "protocol"
            self.reason, self.owner, self.detail = reason, owner, message
            super().__init__(message)
            return
        self.reason = reason
        self.owner = owner
        self.detail = message
        who = f"owner {owner}: " if owner else ""
        super().__init__(f"secure aggregation aborted ({reason}): {who}{message}")


class NetworkError(DuetError):
    code = "network_error"


class SignalingError(NetworkError):
    code = "signaling_error"


class HandshakeError(NetworkError):
    code = "handshake_error"


class ConnectionLost(NetworkError):
    code = "connection_lost"


_BY_CODE: dict[str, type[DuetError]] = {
    cls.code: cls
    for cls in (
        DuetError,
        UsageError,
        NotAllowed,
        PermissionDenied,
        QuotaExceeded,
        BudgetExceeded,
        RemoteError,
        RequestDenied,
        DuetTimeout,
        ProtocolError,
        SecureAggregationAborted,
        NetworkError,
        SignalingError,
        HandshakeError,
        ConnectionLost,
    )
}


def error_from_wire(
    code: str, message: str, *, op: str | None, remote_type: str | None
) -> DuetError:
    """Rebuild the exception the owner reported (unknown codes become RemoteError)."""
    cls = _BY_CODE.get(code, RemoteError)
    if cls is RemoteError:
        return RemoteError(message, op=op, remote_type=remote_type)
    text = f"{op}: {message}" if op else message
    return cls(text)


class RequestWarning(UserWarning):
    """A request was denied or timed out and ``get`` returned None (not an error)."""
