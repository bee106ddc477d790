"""Ring elements as the bytes parties seal for each other (little-endian int64), and back with
their count checked against the shape the message names (a ProtocolError otherwise)."""

from __future__ import annotations

import numpy as np
import torch

from ...errors import ProtocolError


def to_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().numpy().astype("<i8", copy=False).tobytes()


def from_bytes(data: bytes, shape: tuple[int, ...], what: str) -> torch.Tensor:
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(data) != 8 * count:
        raise ProtocolError(
            f"{what} has {len(data)} bytes, not the {8 * count} of shape {list(shape)}"
        )
    return torch.from_numpy(np.frombuffer(data, dtype="<i8").astype(np.int64)).reshape(shape)


__all__ = ["from_bytes", "to_bytes"]
