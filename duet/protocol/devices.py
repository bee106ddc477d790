"""Devices and precision on the owner's side: ``remote_torch.device(...)``, ``x.to(device)``,
``model.cuda(device)``, ``model.cpu()``, ``model.double()``.

A move runs where the object lives, on the owner's machine. The owner's devices are its CPU and,
when it has one, its CUDA device; a move to CUDA on an owner without one fails with an error
that says so (on the scientist's own objects at once; on anything made from the owner's data,
privately, like any other failure there).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import nn

from ..errors import NotAllowed, ProtocolError, UsageError

DEVICE_TYPES = ("cpu", "cuda")
MAX_DEVICE_INDEX = 127  # torch keeps a device's index in 8 bits: cuda:128 would wrap
# what a peer may name on the wire: the owner's cpu, or cuda with an index
_WIRE_DEVICE = re.compile(r"cpu(:0)?|cuda(:(0|[1-9][0-9]{0,2}))?")
MODULE_MOVES = ("cpu", "cuda", "to", "double", "float", "half")
NO_CUDA = (
    "the owner has no CUDA device: its tensors and models stay on its cpu "
    "(torch.device('cpu')); use .cpu(), or ask remote_torch.cuda.is_available() first"
)


def check_device(args: Iterable[object], kwargs: dict[str, object], *, cuda: bool = False) -> None:
    """Refuse devices other than the owner's cpu and cuda, and cuda where the owner has none.
    ``cuda``: the call moves to cuda whatever its arguments say (``.cuda()``)."""
    for value in (kwargs.get("device"), *args):
        if isinstance(value, str):
            try:
                value = torch.device(value)
            except RuntimeError:
                continue  # not a device (torch says what it is)
        if isinstance(value, torch.device):
            if value.type not in DEVICE_TYPES:
                raise NotAllowed(
                    f"device {str(value)!r} is not one of the owner's devices (cpu, cuda)"
                )
            cuda = cuda or value.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise UsageError(NO_CUDA)


def device_from_wire(value: object) -> torch.device:
    """A device a peer named in a message: ``cpu``, ``cuda`` or ``cuda:<n>``, nothing else.

    Raises ProtocolError for anything else (``"mps"``, ``"meta"``, ``"cuda:../../etc"``, a
    number): the owner has no other devices, and torch's own parser fails with a RuntimeError.
    """
    match = _WIRE_DEVICE.fullmatch(value) if isinstance(value, str) else None
    if match is None or (match.group(3) is not None and int(match.group(3)) > MAX_DEVICE_INDEX):
        raise ProtocolError(
            f"device {value!r:.60} is not one of the owner's devices "
            f"(cpu, cuda, cuda:0 to cuda:{MAX_DEVICE_INDEX})"
        )
    return torch.device(cast(str, value))  # matched above: a str


# args, kwargs: whatever the peer sent, handed to torch.device, which checks them
def make_device(*args: Any, **kwargs: Any) -> torch.device:  # Any: torch.device checks them
    """``remote_torch.device("cuda" if use_cuda else "cpu")``."""
    device = torch.device(*args, **kwargs)
    if device.type not in DEVICE_TYPES:
        raise NotAllowed(f"device {str(device)!r} is not one of the owner's devices (cpu, cuda)")
    return device


def tensor_move(name: str) -> Callable[..., object]:
    """``Tensor.to`` / ``Tensor.cuda``, checked (``name`` is a fixed key, never the peer's)."""

    def move(tensor: torch.Tensor, *args: object, **kwargs: object) -> object:
        check_device(args, kwargs, cuda=name == "cuda")
        return getattr(tensor, name)(*args, **kwargs)

    return move


def module_move(name: str) -> Callable[..., nn.Module]:
    """``Module.cpu / cuda / to / double / float / half`` on the owner's side; returns the module,
    as torch does."""

    def move(module: nn.Module, *args: object, **kwargs: object) -> nn.Module:
        check_device(args, kwargs, cuda=name == "cuda")
        getattr(module, name)(*args, **kwargs)
        return module

    return move
