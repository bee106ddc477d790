"""``sy.Module``: a model written once against ``torch_ref`` that runs here or on the owner's side.

Locally, ``SyNet(torch)`` is an ordinary ``nn.Module``. ``SyNet(torch).send(duet)`` ships the
layers and weights to the owner in one message (no code travels: the owner rebuilds the layers
from its allowlist, under a plain container) and returns a ``RemoteModule``: calling it runs the
user's own ``forward`` here, with ``torch_ref`` set to the session's remote torch and each layer
attribute set to a pointer to that layer on the owner's side, so every step of ``forward`` is a
queued remote action and the data never comes back.

    class SyNet(sy.Module):
        def __init__(self, torch_ref):
            super().__init__(torch_ref=torch_ref)
            self.fc1 = self.torch_ref.nn.Linear(4, 2)

        def forward(self, x):
            return self.torch_ref.nn.functional.log_softmax(self.fc1(x), dim=1)

    remote = SyNet(torch).send(duet)
    opt = duet.torch.optim.SGD(remote.parameters(), lr=0.1)
    trained = remote.get(request_block=True, name="model_download", reason="keep the model")
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from ..errors import UsageError, error_from_wire
from ..protocol.messages import Sync
from ..protocol.modules import CONTAINER, layer_path, match_dtypes
from . import tagging
from .library import RemoteLibrary
from .pointer import Pointer


class Module(nn.Module):
    """Base class for models that can be sent to a duet: build layers from ``self.torch_ref``.

    ``torch_ref`` is the torch the model is built and run with: pass ``torch`` for a local
    model. The constructor's arguments are remembered, so a model downloaded with
    ``remote.get(...)`` is rebuilt the same way.
    """

    # Any: torch itself, or a RemoteLibrary mirroring it: layers are built through either by
    # attribute (``self.torch_ref.nn.Linear``), which the type checker cannot follow
    torch_ref: Any

    def __new__(cls, *args: object, **kwargs: object) -> Module:
        self = super().__new__(cls)
        # how this instance was built, to build its twin when the trained weights come back
        object.__setattr__(self, "_sy_init", (args, kwargs))
        return self

    def __init__(self, torch_ref: types.ModuleType | RemoteLibrary = torch) -> None:
        super().__init__()
        self.torch_ref = torch_ref

    @property
    def is_local(self) -> bool:
        """True: this model lives here (a sent model's ``is_local`` is False)."""
        return True

    tag = tagging.tag
    describe = tagging.describe

    def send(
        self,
        session: object,
        *,
        pointable: bool | None = None,
        tags: list[str] | None = None,
        description: str = "",
        searchable: bool | None = None,
    ) -> Any:  # Any: a RemoteModule, or what an owner session's send gives (duet/owner)
        """Send the model to a duet.

        To a scientist session: one message carries the layers and weights to the owner;
        returns a ``RemoteModule`` whose ``forward`` runs there. To an owner session: publish
        the model in the owner's store, like any ``nn.Module``.
        """
        tags, description = tagging.sent_tags(self, tags, description)
        sent = super().send(  # type: ignore[misc]
            session,
            pointable=tagging.visibility(pointable, searchable),
            tags=tags,
            description=description,
        )
        if isinstance(sent, Pointer):
            # pack the weights into a frame now: training this local model right after send()
            # must not change what the owner receives
            sent._client.flush()
            sent.meta.update(tags=tags, description=description)
            return RemoteModule(sent, self)
        return sent

    def __getstate__(self) -> dict[str, object]:
        # copies of a model (copy.deepcopy) share its torch library instead of copying a module
        state = super().__getstate__()
        for key in ("torch_ref", "_sy_init"):
            if key in state:
                state[key] = _Shared(state[key])
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        state = {k: v.value if isinstance(v, _Shared) else v for k, v in state.items()}
        super().__setstate__(state)

    def save(self, path: str | Path) -> None:
        """Write this model's weights (its ``state_dict``) to a local file."""
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """Load weights written by ``save`` from a local file into this model."""
        # the user's own local file, read as plain tensors only (weights_only): never wire bytes
        self.load_state_dict(torch.load(path, weights_only=True))


class _Shared:
    """A value that copies of a model share (deepcopy returns it as it is)."""

    __slots__ = ("value",)

    def __init__(self, value: object):
        self.value = value

    def __deepcopy__(self, memo: dict[int, object]) -> _Shared:
        return self


def _rebuild(template: nn.Module) -> nn.Module:
    args, kwargs = getattr(template, "_sy_init", ((), {}))
    return type(template)(*args, **kwargs)


class RemoteModule:
    """A model sent to the owner: its ``forward`` runs here, every op of it runs there.

    ``template`` is the local model it was sent from: its class gives ``forward`` (and any
    helper methods), its attributes give plain settings (``self.hidden_size``), and its layers
    name the pointers this object hands to ``forward``. Layers of the user's own classes
    (``sy.Module``, any ``nn.Module`` subclass, ``nn.ModuleList``/``nn.ModuleDict``) become
    ``RemoteModule`` too, their ``forward`` run here; torch's layers become pointers (``send``
    refuses a model holding one of torch's layers the owner cannot rebuild).

    Device and precision moves (``cpu()``, ``cuda(device)``, ``to(...)``, ``double()``,
    ``float()``, ``half()``) run on the owner's side and return this object, as torch's do.
    """

    def __init__(self, pointer: Pointer, template: nn.Module):
        self._pointer = pointer
        self._template = template
        self._members: dict[str, Pointer | RemoteModule] = {}
        self.torch_ref = RemoteLibrary(pointer._client, "torch")
        self.training = template.training

    is_local = False

    @property
    def pointer(self) -> Pointer:
        """The pointer to the model's container on the owner's side."""
        return self._pointer

    @property
    def real_module(self) -> Pointer:
        """PySyft's name for ``pointer`` (what its Opacus notebook handed the engine)."""
        return self._pointer

    # ---- running
    # Any: what the model's own forward returns (pointers, as a rule), which callers chain on
    def __call__(self, *args: object, **kwargs: object) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: object, **kwargs: object) -> Any:
        """Run the model's own ``forward`` with remote torch and remote layers; returns a pointer."""
        return type(self._template).forward(self, *args, **kwargs)  # type: ignore[arg-type]

    def _member(self, name: str) -> Pointer | RemoteModule:
        member = self._members.get(name)
        if member is not None:
            return member
        template = self._template
        pointer = self._pointer.member(name)  # queued: no round trip
        if name in template._modules:
            child = template._modules[name]
            path = layer_path(child) if child is not None else CONTAINER
            if child is not None and path == CONTAINER:  # the user's own class: forward runs here
                member = RemoteModule(pointer, child)
            else:
                pointer.kind = "Module"
                pointer.meta["layer"] = path  # what calling it returns (LSTM: a tuple)
                member = pointer
        else:
            pointer.kind = "Tensor"
            member = pointer
        self._members[name] = member
        return member

    # Any: a layer, a parameter, a method or a setting of the model, found at run time
    def __getattr__(self, name: str) -> Any:
        # only reached for names this object does not have: the model's layers, parameters and
        # buffers (as remote objects), its methods (bound to this object) and plain settings
        if name.startswith("__") or "_template" not in self.__dict__:
            raise AttributeError(name)
        template = self._template
        if name in template._modules or name in template._parameters or name in template._buffers:
            return self._member(name)
        if name in template.__dict__:
            return template.__dict__[name]
        missing = object()
        attribute = inspect.getattr_static(type(template), name, missing)
        if isinstance(attribute, types.FunctionType):
            return types.MethodType(attribute, self)
        if isinstance(attribute, property) and attribute.fget is not None:
            return attribute.fget(self)
        if isinstance(attribute, staticmethod | classmethod):
            return attribute.__get__(None, type(template))
        if attribute is not missing:
            return attribute
        raise AttributeError(f"remote {type(template).__name__} has no attribute {name!r}")

    # ---- containers (nn.ModuleList, nn.ModuleDict) used from forward
    def __getitem__(self, key: object) -> Pointer | RemoteModule:
        names = list(self._template._modules)
        if isinstance(self._template, nn.ModuleList) and isinstance(key, int):
            return self._member(names[key])
        if isinstance(key, str) and key in self._template._modules:
            return self._member(key)
        raise UsageError(f"remote {type(self._template).__name__} has no layer {key!r}")

    # Any: layers (a ModuleList's) or names (a ModuleDict's), as torch's containers iterate;
    # forward calls the layers it gets
    def __iter__(self) -> Iterator[Any]:
        if isinstance(self._template, nn.ModuleList):
            return (self._member(name) for name in self._template._modules)
        if isinstance(self._template, nn.ModuleDict):
            return iter(list(self._template._modules))
        raise UsageError(f"a remote {type(self._template).__name__} is not iterable")

    def __len__(self) -> int:
        return len(self._template._modules)

    # ---- nn.Module's training API, on the owner's side
    def parameters(self, recurse: bool = True) -> Pointer:
        """A pointer to the list of the model's parameters, e.g. for ``duet.torch.optim.SGD``."""
        return self._pointer.parameters(recurse)

    def named_parameters(self) -> Pointer:
        return self._pointer.named_parameters()

    def state_dict(self) -> Pointer:
        """A pointer to the remote model's state dict (fetching it is a request)."""
        return self._pointer.state_dict()

    def load_state_dict(self, state_dict: object, strict: bool = True) -> None:
        """Load weights (a local state dict, or a pointer to one) into the remote model."""
        self._pointer.load_state_dict(state_dict, strict=strict)

    def train(self, mode: bool = True) -> RemoteModule:
        self._pointer.train(mode)
        self._set_training(mode)
        return self

    def eval(self) -> RemoteModule:
        self._pointer.eval()
        self._set_training(False)
        return self

    def _set_training(self, mode: bool) -> None:
        self.training = mode
        for member in self._members.values():
            if isinstance(member, RemoteModule):
                member._set_training(mode)

    def zero_grad(self) -> None:
        self._pointer.zero_grad()

    # ---- what it was sent with
    @property
    def tags(self) -> list[str]:
        return self._pointer.tags

    @property
    def description(self) -> str:
        return self._pointer.description

    # ---- bringing it back
    def get(
        self,
        request_block: bool = False,
        name: str | None = None,
        reason: str = "",
        timeout_secs: float | None = None,
        delete_obj: bool = False,
        verbose: bool = False,
    ) -> nn.Module | None:
        """Download the trained model: one get (a request, once it has seen the owner's data).

        Returns a new local instance of the model's class, built like the one that was sent,
        holding the remote weights; None (with a RequestWarning) if the owner denies the
        request or it times out.
        """
        container = self._pointer.get(
            request_block=request_block,
            name=name,
            reason=reason,
            timeout_secs=timeout_secs,
            delete_obj=delete_obj,
            verbose=verbose,
        )
        if container is None:
            return None
        local = _rebuild(self._template)
        state = container.state_dict()
        match_dtypes(local, state)  # a model moved to double() comes back in double
        local.load_state_dict(state)
        local.train(container.training)
        return local

    def send(self, *args: object, **kwargs: object) -> NoReturn:
        raise UsageError("this model is already on the owner's side; get() it back first")

    def __repr__(self) -> str:
        return f"<remote {type(self._template).__name__} {self._pointer.id}>"

    # ---- where it lives: every move runs on the owner's side, and returns the model as
    # torch's do (last in the class: ``float`` names a method from here on)
    def cpu(self) -> RemoteModule:
        self._pointer.cpu()
        return self

    def cuda(self, device: object = None) -> RemoteModule:
        """Move the model to the owner's CUDA device. Raises UsageError (naming the owner's
        device) where the owner has none; waits for the owner to say so."""
        self._checked(self._pointer.cuda() if device is None else self._pointer.cuda(device))
        return self

    def to(self, *args: object, **kwargs: object) -> RemoteModule:
        """Move or convert the model on the owner's side (waits for the owner: a device it does
        not have raises here)."""
        self._checked(self._pointer.to(*args, **kwargs))
        return self

    def _checked(self, moved: Pointer) -> None:
        # the result of a move is this model again: nothing would ever use it and hear that it
        # failed, so ask now (a failure on a model made from the owner's data stays private)
        client = moved._client
        reply, _ = client.request(lambda rid: Sync(rid=rid), timeout_secs=None, what="a move")
        client.raise_for(reply)
        error = client.failures.get(moved.id)
        if error is not None:
            raise error_from_wire(
                error.code, error.message, op=error.op, remote_type=error.remote_type
            )

    def double(self) -> RemoteModule:
        self._pointer.double()
        return self

    def float(self) -> RemoteModule:
        self._pointer.float()
        return self

    def half(self) -> RemoteModule:
        self._pointer.half()
        return self
