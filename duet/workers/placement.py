"""``model.send(worker)`` and ``model.get()`` for a plain ``nn.Module``, PySyft-style: the model
object stays the same one here, its weights move.

Sending puts the model's layers and weights on the worker in one message (no code travels: the
owner rebuilds its allowlisted layers, under plain containers). Then, here:
- each parameter and buffer becomes a stand-in for its twin over there (stand_ins.py), so an
  optimizer made before the send, which holds these very Parameter objects, steps the twins;
- each layer the owner can run on its own (an allowlisted layer, or a Sequential of them) gets
  a forward that is one remote call of its twin; the model's own ``forward`` still runs here,
  so every step of it is a queued remote action and the data never comes back.

``model.get()`` fetches the trained weights (one get: a request, once they depend on the
owner's data), puts them back into the same local tensors and frees the worker's copy, so the
local optimizer goes on working with the local model. The gradients a remote ``backward()`` gave
the weights come back too (a second get), when they are yours to read.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass, field
from itertools import chain

import torch
from torch import nn

from ..errors import PermissionDenied, RequestWarning, UsageError
from ..protocol.modules import CONTAINER, layer_path
from ..scientist.pointer import Pointer
from ..sessions.scientist import ScientistSession
from .stand_ins import Remote, attach, detach_stand_in, remote_of


@dataclass(eq=False)
class Placement:
    """Where a sent model's twin is and what here stands for it."""

    location: ScientistSession
    container: Pointer
    # (name in the model, the local tensor, its class before the send)
    tensors: list[tuple[str, torch.Tensor, type]] = field(default_factory=list)
    layers: list[nn.Module] = field(default_factory=list)


_PLACEMENTS: weakref.WeakKeyDictionary[nn.Module, Placement] = weakref.WeakKeyDictionary()


def placement_of(model: nn.Module) -> Placement | None:
    """The placement of a model sent with ``send_model``, or None while it is here."""
    return _PLACEMENTS.get(model)


class RemoteLayer:
    """A layer's forward while its model is on a worker: one call of the layer's twin there."""

    def __init__(self, layer: nn.Module, twin: Pointer, remotes: list[Remote], training: bool):
        self._layer = weakref.ref(layer)  # the layer holds this object: no cycle
        self.twin = twin
        self.remotes = remotes
        self.training = training  # the twin's mode, as last set

    def __call__(self, *args: object, **kwargs: object) -> Pointer:
        layer = self._layer()
        if layer is not None and layer.training != self.training:
            self.twin.train(layer.training)  # model.train()/eval() here reach the twin
            self.training = layer.training
        if torch.is_grad_enabled():
            for remote in self.remotes:  # autograd records this call: its weights get grads
                if remote.requires_grad:
                    remote.grad_live = True
        return self.twin(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<forward of {self.twin!r}, run on the worker>"


def send_model(model: nn.Module, location: ScientistSession) -> nn.Module:
    """Move ``model``'s weights to ``location`` (a worker); returns ``model`` itself.

    Already there: nothing happens. On another worker: it is fetched first (``get_model``).
    Raises UsageError for a model that shares tensors or layers between two places (tied
    weights), or holds a tensor of another sent model, and NotAllowed for a layer the owner
    cannot rebuild.
    """
    current = _PLACEMENTS.get(model)
    if current is not None:
        if current.location is location:
            return model
        try:
            get_model(model)
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"this model is on {_name(current.location)} and its weights depend on that "
                "owner's data, so moving them is a release: bring the model back first with "
                "model.get(request_block=True, name=..., reason=...), then send it on"
            ) from exc
    _check_sendable(model)
    client = location._client()
    for parameter in model.parameters():
        parameter.grad = None  # gradients stay where they were made (not sent, not kept)
    container = client.pointer(client.put(model), "Module", {}, owned=True)
    placement = Placement(location, container)
    twins: dict[str, Pointer] = {"": container}
    for name, _module in model.named_modules():
        if name:
            parent, _, child = name.rpartition(".")
            twins[name] = _member(twins[parent], child, "Module")
    remotes: dict[str, Remote] = {}
    try:
        for module_name, module in model.named_modules():
            for name, tensor in _own_tensors(module):
                full = f"{module_name}.{name}" if module_name else name
                twin = _member(twins[module_name], name, "Tensor")
                twin.meta.update(shape=list(tensor.shape), dtype=str(tensor.dtype)[6:])
                remote = remotes[full] = Remote(twin, requires_grad=tensor.requires_grad)
                original = type(tensor)
                attach(tensor, remote)
                placement.tensors.append((full, tensor, original))
    except TypeError as exc:  # a tensor class whose objects cannot change class
        _restore(placement)
        raise UsageError(f"this model cannot be sent to a worker: {exc}") from exc
    for name, layer in _remote_layers(model, ""):
        prefix = f"{name}." if name else ""
        owned = [remote for full, remote in remotes.items() if full.startswith(prefix)]
        layer.forward = RemoteLayer(layer, twins[name], owned, model.training)  # type: ignore[method-assign]
        placement.layers.append(layer)
    _PLACEMENTS[model] = placement
    return model


def get_model(
    model: nn.Module,
    request_block: bool = False,
    name: str | None = None,
    reason: str = "",
    timeout_secs: float | None = None,
) -> nn.Module | None:
    """Bring a sent model's weights back into it; returns the model (as it is, if it was never
    sent). The worker's copy is freed.

    Once the weights depend on the owner's data this is a request: without
    ``request_block=True`` it raises PermissionDenied; denied or timed out, it returns None with
    a RequestWarning and the model stays on the worker.
    """
    placement = _PLACEMENTS.get(model)
    if placement is None:
        return model
    # the gradients backward gave the twin's weights, asked for before the model leaves
    live = [(tensor, remote_of(tensor)) for _, tensor, _ in placement.tensors]
    with_grads = [(tensor, remote.twin) for tensor, remote in live if remote and remote.grad_live]
    grads = (
        placement.location.python.List([twin.grad for _, twin in with_grads])
        if with_grads
        else None
    )
    twin = placement.container.get(
        request_block=request_block,
        name=name,
        reason=reason,
        timeout_secs=timeout_secs,
        delete_obj=True,
    )
    if twin is None:
        return None
    values = dict(
        chain(
            twin.named_parameters(remove_duplicate=False),
            twin.named_buffers(remove_duplicate=False),
        )
    )
    del _PLACEMENTS[model]
    _restore(placement)
    with torch.no_grad():
        for full, tensor, _ in placement.tensors:
            tensor.copy_(values[full])
    if grads is not None:
        _bring_grads([tensor for tensor, _ in with_grads], grads, timeout_secs, request_block)
    return model


def _bring_grads(
    tensors: list[torch.Tensor], grads: Pointer, timeout_secs: float | None, requested: bool
) -> None:
    """Set the gradients ``grads`` (a remote list, one per tensor) on the local tensors, as
    PySyft 0.2's ``model.get()`` brought them. Gradients that depend on the owner's data stay
    there: said in a warning, unless the model itself was asked for with a request (its weights
    were the owner's to release too, and the request released those only)."""
    try:
        fetched = grads.get(timeout_secs=timeout_secs)
    except PermissionDenied as exc:
        if not requested:
            warnings.warn(
                f"the model came back without its gradients: {exc}", RequestWarning, stacklevel=3
            )
        return
    for tensor, grad in zip(tensors, fetched, strict=True):
        if isinstance(grad, torch.Tensor):
            tensor.grad = grad


def _restore(placement: Placement) -> None:
    for _, tensor, original in placement.tensors:
        detach_stand_in(tensor, original)
    for layer in placement.layers:
        layer.__dict__.pop("forward", None)


def _name(location: object) -> str:
    return str(getattr(location, "id", None) or location)


def _member(parent: Pointer, name: str, kind: str) -> Pointer:
    pointer: Pointer = parent.member(name)  # queued: no round trip
    pointer.kind = kind
    return pointer


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    own = chain(module._parameters.items(), module._buffers.items())
    return [(name, tensor) for name, tensor in own if tensor is not None]


def _check_sendable(model: nn.Module) -> None:
    seen: dict[int, str] = {}
    for name, item in chain(
        model.named_modules(remove_duplicate=False),
        model.named_parameters(remove_duplicate=False),
        model.named_buffers(remove_duplicate=False),
    ):
        if id(item) in seen:
            raise UsageError(
                f"{name or 'the model'} and {seen[id(item)] or 'the model'} are the same object "
                "(tied weights or a shared layer); a model sent to a worker cannot share them yet"
            )
        seen[id(item)] = name
        if isinstance(item, torch.Tensor) and remote_of(item) is not None:
            raise UsageError(f"{name} is on a worker already, as part of another sent model")


def _runs_remotely(module: nn.Module) -> bool:
    """True when the owner rebuilds this layer with its own forward (an allowlisted layer, or a
    Sequential of them): calling it is then one remote action."""
    if layer_path(module) == CONTAINER:
        return False
    return all(_runs_remotely(child) for child in module.children())


def _remote_layers(module: nn.Module, name: str) -> list[tuple[str, nn.Module]]:
    if _runs_remotely(module):
        return [(name, module)]
    found = []
    for child_name, child in module.named_children():
        found.extend(_remote_layers(child, f"{name}.{child_name}" if name else child_name))
    return found


__all__ = ["Placement", "RemoteLayer", "get_model", "placement_of", "send_model"]
