"""The owner's view of a value's real type: the table its methods are looked up in."""

from __future__ import annotations

import torch
import torch.utils.data as tud
from torch import nn

# the attribute lookups that find an object's real class (isinstance reads ``__class__``)
_GENERIC_GETATTR = (object.__getattribute__, list.__getattribute__, tuple.__getattribute__,
                    dict.__getattribute__)  # fmt: skip
_MAX_KNOWN = 4096


def honest_class(kind: type) -> bool:
    """Whether every instance of ``kind`` is what isinstance believes it is: its attribute
    lookup is the generic one and no class of it redefines ``__class__`` (isinstance also
    believes ``obj.__class__``). Only then may a fact found by isinstance on one instance be
    remembered for its type."""
    return any(kind.__getattribute__ is generic for generic in _GENERIC_GETATTR) and (
        next(c for c in kind.__mro__ if "__class__" in vars(c)) is object
    )


def type_key(obj: object) -> str | None:
    """The table a value's methods are looked up in (the owner's view of its real type)."""
    kind = type(obj)
    known = _EXACT_KEYS.get(kind, "")
    if known != "":  # the common types by their exact class, and classes met before
        return known
    found = _type_key(obj)
    if len(_EXACT_KEYS) < _MAX_KNOWN and honest_class(kind):
        _EXACT_KEYS[kind] = found
    return found


def _type_key(obj: object) -> str | None:
    if isinstance(obj, bool):
        return "Bool"
    if isinstance(obj, int | float):
        return "Number"
    if isinstance(obj, str):
        return "String"
    if isinstance(obj, torch.Size):
        return "Size"
    if isinstance(obj, tuple):
        return "Tuple"
    if isinstance(obj, list):
        return "List"
    if isinstance(obj, dict):
        return "Dict"
    if isinstance(obj, torch.Tensor):
        return "Tensor"
    if isinstance(obj, nn.Module):
        return "Module"
    if isinstance(obj, torch.optim.Optimizer):
        return "Optimizer"
    if isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        return "LRScheduler"
    if isinstance(obj, tud.DataLoader):
        return "DataLoader"
    if isinstance(obj, tud.dataloader._BaseDataLoaderIter):
        return "DataLoaderIter"
    if isinstance(obj, tud.Dataset):
        return "Dataset"
    if isinstance(obj, torch.distributions.Distribution):
        return "Distribution"
    if isinstance(obj, torch.device):
        return "device"
    if isinstance(obj, torch.dtype):
        return "dtype"
    if type(obj).__module__.startswith("torchvision.transforms"):
        return "Transform"
    return None


# type -> its table (None: no methods), for the common types and the honest classes met since
_EXACT_KEYS: dict[type, str | None] = {
    torch.Tensor: "Tensor", nn.Parameter: "Tensor", bool: "Bool", int: "Number",
    float: "Number", str: "String", tuple: "Tuple", list: "List", dict: "Dict",
    torch.Size: "Size",
}  # fmt: skip
