"""``sy.TorchHook(torch)``: accepted so that PySyft code runs; it changes nothing.

PySyft's hook rewrote torch's classes so that tensors could point elsewhere. duet adds
``send`` to tensors and models, and ``get`` to models and ``federate`` to datasets, when it is
imported; pointers and the stand-ins of a sent model's parameters speak torch's
``__torch_function__`` protocol, so torch's own functions accept them as they are.
"""

from __future__ import annotations


class TorchHook:
    """``hook = sy.TorchHook(torch)``; pass it to ``sy.VirtualWorker(hook, id=...)``."""

    def __init__(self, torch: object = None, **_ignored: object):
        self.torch = torch

    def __repr__(self) -> str:
        return "<TorchHook (duet: nothing to hook)>"


__all__ = ["TorchHook"]
