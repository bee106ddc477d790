"""The owner's view of a value's real type: the table its methods are looked up in."""

from __future__ import annotations

import torch
import torch.utils.data as tud
from torch import nn


def type_key(obj: object) -> str | None:
    """The table a value's methods are looked up in (the owner's view of its real type)."""
    known = _EXACT_KEYS.get(type(obj))
    if known is not None:  # the common types, by their exact class
        return known
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


_EXACT_KEYS: dict[type, str] = {
    torch.Tensor: "Tensor", nn.Parameter: "Tensor", bool: "Bool", int: "Number",
    float: "Number", str: "String", tuple: "Tuple", list: "List", dict: "Dict",
    torch.Size: "Size",
}  # fmt: skip
