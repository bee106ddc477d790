"""What a request releases: the value encoded for the wire at the moment it was asked for.

The owner (or a handler) decides on a snapshot, and exactly that snapshot is sent if the request
is accepted. No copy is made: the value's state is frozen while the request waits (the
scientist's writes to it are refused), so what was reviewed is what is released. A failure (an
op on private data that failed) is snapshotted as its error.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from ..errors import DuetError, RemoteError
from ..protocol.messages import ErrorInfo
from ..protocol.serde import Decoder, Encoder, JSONValue
from .derivation import settings_count
from .json_text import encoder

# the kinds a handler can ask for (``add_handler(kind="int")``)
KINDS = frozenset({"tensor", "int", "float", "bool", "str", "bytes", "complex", "none", "list",
                   "tuple", "dict", "module", "size", "dtype", "device", "error", "other"})  # fmt: skip


def kind_of(value: object) -> str:
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


def elements_of(value: object, depth: int = 0, *, settings: bool = False) -> int:
    """How many numbers releasing ``value`` discloses: a tensor's elements (a complex one
    counts two per element), a string's or bytes' characters, a container's leaves (keys
    included), a model's weights and buffers, and (``settings``: they were computed from the
    owner's data) its layers' settings. A container too deep to count counts as unbounded."""
    if isinstance(value, torch.Tensor):
        return value.numel() * (2 if value.is_complex() else 1)
    if isinstance(value, nn.Module):
        weights = sum(t.numel() for t in value.parameters()) + sum(
            t.numel() for t in value.buffers()
        )
        return weights + (settings_count(value) if settings else 0)
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, complex):
        return 2
    if value is None:
        return 0
    if isinstance(value, list | tuple | dict):
        if depth >= 64:
            return UNBOUNDED
        items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
        total = 0
        for key, item in items:
            total += elements_of(key, depth + 1) + elements_of(item, depth + 1)
            if total >= UNBOUNDED:
                return UNBOUNDED
        return total
    return 1  # a number, a dtype, a device


# made once (json.dumps builds an encoder per call); what a digest hashes
_encode = encoder(sort_keys=True)
UNBOUNDED = 2**62  # more elements than any handler allows


@dataclass(eq=False)
class Snapshot:
    """An encoded value (or an error) ready to be sent as a reply."""

    value: JSONValue = None  # serde data
    buffers: list[memoryview] = field(default_factory=list)
    error: ErrorInfo | None = None
    kind: str = "none"
    elements: int = 0
    nbytes: int = 0
    dropped: bool = False  # the value was let go (its request is decided); ``sha256`` stays
    _digest: str = ""
    shape: tuple[int, ...] | None = None  # a tensor's shape, for the owner to see

    @classmethod
    def of(
        cls, value: object, *, buffers: list[memoryview] | None = None, settings: bool = False
    ) -> Snapshot:
        """Encode ``value`` now. Buffers view the object's memory: the owner keeps the object
        from changing until the request is decided (LabelRegistry.freeze).

        ``buffers``: a frame's buffer list to append to (the encoded value indexes into it).
        ``settings``: a model's layer settings count as elements (they carry the owner's data).
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
        if isinstance(value, torch.Tensor) and isinstance(encoded, dict):
            # a tensor's facts from its encoding (the shape it was sent with), not asked of
            # torch again: a get's reply costs fewer calls into torch
            shape = tuple(cast("list[int]", encoded["shape"]))
            elements = math.prod(shape) * (2 if value.dtype.is_complex else 1)
            return cls(encoded, own, None, "tensor", elements, nbytes, shape=shape)
        elements = elements_of(value, settings=settings)
        return cls(encoded, own, None, kind_of(value), elements, nbytes)

    @classmethod
    def failed(cls, error: ErrorInfo) -> Snapshot:
        """A failure's snapshot: its text is what leaves (each character counts)."""
        return cls(None, [], error, "error", len(error.message), len(error.message))

    @property
    def sha256(self) -> str:
        return self.digest()

    def drop(self) -> None:
        """Let go of the value (its digest is kept): the request was decided."""
        if not self.dropped:
            self.digest()
            self.value, self.buffers, self.dropped = None, [], True

    def digest(self) -> str:
        """sha-256 of exactly what is released (the encoded value and its bytes)."""
        if self._digest:
            return self._digest
        hasher = hashlib.sha256()
        if self.error is not None:
            hasher.update(self.error.model_dump_json().encode())
        else:
            value, buffers = self.value, self.buffers
            hasher.update(_encode(value).encode())
            for buffer in buffers:
                hasher.update(memoryview(buffer))
        # another thread (the owner's review page) may read it while the request is decided:
        # ``drop`` sets the digest before it lets go of anything, so a digest set meanwhile is
        # the one of the whole value
        if not self._digest:
            self._digest = hasher.hexdigest()  # what it encodes cannot change: it is frozen
        return self._digest

    def decoded(self) -> object:
        """The value exactly as the scientist would receive it (a RemoteError for a failure)."""
        if self.error is not None:
            return RemoteError(
                self.error.message, op=self.error.op, remote_type=self.error.remote_type
            )
        return Decoder([memoryview(b) for b in self.buffers], None).decode(self.value)

    def __repr__(self) -> str:
        return f"<snapshot of a {self.kind}, {self.elements} elements, {self.nbytes} bytes>"
