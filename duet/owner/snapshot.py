"""What a request releases: the value encoded for the wire at the moment it was asked for.

The owner (or a handler) decides on a snapshot, and exactly that snapshot is sent if the request
is accepted. No copy is made: the value's state is frozen while the request waits (the
scientist's writes to it are refused), so what was reviewed is what is released. A failure (an
op on private data that failed) is snapshotted as its error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import DuetError, RemoteError
from ..protocol.messages import ErrorInfo
from ..protocol.serde import Decoder, Encoder

# the kinds a handler can ask for (``add_handler(kind="int")``)
KINDS = frozenset({"tensor", "int", "float", "bool", "str", "bytes", "complex", "none", "list",
                   "tuple", "dict", "module", "size", "dtype", "device", "error", "other"})  # fmt: skip


def kind_of(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, torch.Size):
        return "size"
    for types, name in ((str, "str"), (bytes, "bytes"), (complex, "complex"), (list, "list"),
                        (tuple, "tuple"), (dict, "dict"), (nn.Module, "module"),
                        (torch.dtype, "dtype"), (torch.device, "device")):  # fmt: skip
        if isinstance(value, types):
            return name
    return "none" if value is None else "other"


def elements_of(value: Any, depth: int = 0) -> int:
    """How many elements releasing ``value`` discloses (a tensor's numel, a list's items...)."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, nn.Module):
        return sum(t.numel() for t in value.parameters()) + sum(t.numel() for t in value.buffers())
    if depth < 64 and isinstance(value, list | tuple):
        return sum(elements_of(v, depth + 1) for v in value)
    if depth < 64 and isinstance(value, dict):
        return sum(elements_of(k, depth + 1) + elements_of(v, depth + 1) for k, v in value.items())
    return 1


@dataclass(eq=False)
class Snapshot:
    """An encoded value (or an error) ready to be sent as a reply."""

    value: Any = None  # serde data
    buffers: list[Any] = field(default_factory=list)
    error: ErrorInfo | None = None
    kind: str = "none"
    elements: int = 0
    nbytes: int = 0

    @classmethod
    def of(cls, value: Any, *, buffers: list[Any] | None = None) -> Snapshot:
        """Encode ``value`` now. Buffers view the object's memory: the owner keeps the object
        from changing until the request is decided (LabelRegistry.freeze).

        ``buffers``: a frame's buffer list to append to (the encoded value indexes into it).
        """
        frame = buffers if buffers is not None else []
        mark = len(frame)
        try:
            encoded = Encoder(frame).encode(value)
        except DuetError as exc:
            del frame[mark:]
            return cls.failed(ErrorInfo(code=exc.code, message=str(exc), op="get"))
        own = frame[mark:]
        nbytes = sum(memoryview(b).nbytes for b in own)
        return cls(encoded, own, None, kind_of(value), elements_of(value), nbytes)

    @classmethod
    def failed(cls, error: ErrorInfo) -> Snapshot:
        return cls(None, [], error, "error", 0, len(error.message))

    def digest(self) -> str:
        """sha-256 of exactly what is released (the encoded value and its bytes)."""
        hasher = hashlib.sha256()
        if self.error is not None:
            hasher.update(self.error.model_dump_json().encode())
        else:
            hasher.update(json.dumps(self.value, sort_keys=True, default=str).encode())
            for buffer in self.buffers:
                hasher.update(memoryview(buffer))
        return hasher.hexdigest()

    def decoded(self) -> Any:
        """The value exactly as the scientist would receive it (a RemoteError for a failure)."""
        if self.error is not None:
            return RemoteError(
                self.error.message, op=self.error.op, remote_type=self.error.remote_type
            )
        return Decoder([memoryview(b) for b in self.buffers], None).decode(self.value)

    def __repr__(self) -> str:
        return f"<snapshot of a {self.kind}, {self.elements} elements, {self.nbytes} bytes>"
