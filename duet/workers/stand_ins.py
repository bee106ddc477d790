"""Local stand-ins for tensors that live on a worker.

When a plain ``nn.Module`` goes to a worker (placement.py), its Parameter objects stay where
they are, because an optimizer made before the send holds them; they change class instead. As a
``RemoteParameter`` (buffers: ``RemoteTensor``) a tensor speaks torch's ``__torch_function__``
protocol: every torch operation on it runs on the worker, on its twin there, and returns a
pointer. Metadata (shape, dtype, device, ``requires_grad``, ``is_leaf``) is answered here: it is
the same on both sides. ``.grad`` and ``.data`` give stand-ins of the same kind, so torch.optim's
single-tensor code (``p.grad is not None``, ``p.grad.is_sparse``, ``param.add_(grad, alpha=-lr)``)
steps the remote parameters. optim never takes its multi-tensor path for them: it only does so
for plain tensors.

Two rules keep the remote twin where local torch would have it:
- under ``torch.no_grad()`` (an optimizer's step) an operation uses a detached alias of a
  parameter, so in-place updates are allowed and results record no graph, as here;
- a parameter has a gradient once it has been used where autograd records (grad mode on) since
  its gradient was last set to None, so ``p.grad`` is None exactly when the optimizer must skip
  it. Setting ``p.grad = None`` zeroes the remote gradient (the allowlist has no way to unset
  it), which later gradients add to exactly as they would to nothing.

Stand-ins never hand out local values: what a value needs (``bool(p)``, ``p.numpy()``, pickling,
``copy.deepcopy``) raises UsageError saying to ``get()`` the model back first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NoReturn, Self, TypeVar

import torch
from torch import nn
from torch.overrides import resolve_name

from ..errors import NotAllowed, UsageError
from ..protocol import allowlist
from ..scientist.pointer import Pointer

if TYPE_CHECKING:
    from ..scientist.client import PointerClient

_T = TypeVar("_T")


class Remote:
    """What a stand-in stands for: the pointer to its twin, whether the twin requires grad, and
    whether it may have a gradient (``grad_live``)."""

    __slots__ = ("_detached", "grad_live", "requires_grad", "twin")

    def __init__(self, twin: Pointer, *, requires_grad: bool):
        self.twin = twin
        self.grad_live = False
        self._detached: Pointer | None = None
        self.requires_grad = False
        self.set_requires_grad(requires_grad)

    def set_requires_grad(self, requires_grad: bool) -> None:
        self.requires_grad = requires_grad
        if requires_grad and self._detached is None:
            # made now, not when first needed: that is while another action is being encoded
            self._detached = self.twin.detach()

    def pointer(self, *, recorded: bool = True) -> Pointer:
        """The pointer an operation uses now (called while it is being encoded: it must not
        queue actions itself). ``recorded=False``: an op autograd does not record (detach)."""
        if not self.requires_grad:
            return self.twin
        if torch.is_grad_enabled():
            if recorded:  # autograd records this use: backward reaches the twin
                self.grad_live = True
            return self.twin
        return self.detached()

    def detached(self) -> Pointer:
        """The twin detached from autograd (same storage): what no_grad code writes to."""
        return self.twin if self._detached is None else self._detached

    @property
    def location(self) -> object:
        return self.twin.location


def remote_of(value: object) -> Remote | None:
    if not isinstance(value, torch.Tensor) or type(value) is torch.Tensor:
        return None
    remote = value.__dict__.get("_duet_remote")
    return remote if isinstance(remote, Remote) else None


def attach(tensor: torch.Tensor, remote: Remote) -> None:
    """Make ``tensor`` (a Parameter or a buffer) stand for ``remote``'s twin."""
    tensor.__class__ = RemoteParameter if isinstance(tensor, nn.Parameter) else RemoteTensor
    tensor.__dict__["_duet_remote"] = remote


def detach_stand_in(tensor: torch.Tensor, original: type) -> None:
    """Undo ``attach``: ``tensor`` is an ordinary local tensor of class ``original`` again."""
    tensor.__dict__.pop("_duet_remote", None)
    tensor.__class__ = original


def wrap(twin: Pointer, *, like: torch.Tensor) -> RemoteTensor:
    """A stand-in for ``twin`` with ``like``'s metadata and no local values (a gradient, .data)."""
    with torch._C.DisableTorchFunctionSubclass():
        size, dtype, device = like.shape, like.dtype, like.device
    tensor: RemoteTensor = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
        RemoteTensor, size, dtype=dtype, device=device, requires_grad=False
    )
    tensor.__dict__["_duet_remote"] = Remote(twin, requires_grad=False)
    return tensor


# ---------------------------------------------------------------- routing


# answered from the local tensor (or the wrapper's metadata): the same on both sides
_LOCAL_PROPERTIES = frozenset({
    "shape", "dtype", "device", "requires_grad", "is_leaf", "is_sparse", "layout", "ndim",
    "names", "is_cuda", "is_cpu", "is_meta", "is_quantized", "is_mkldnn", "is_nested",
    "itemsize", "nbytes", "grad_fn", "retains_grad", "output_nr", "is_mps", "is_xpu",
})  # fmt: skip
_LOCAL_METHODS = frozenset({
    "size", "dim", "ndimension", "numel", "nelement", "element_size", "is_floating_point",
    "is_complex", "is_signed", "is_conj", "is_neg", "is_inference", "__hash__", "__len__",
    "get_device", "has_names", "stride", "is_contiguous", "storage_offset",
})  # fmt: skip
_LOCAL_FUNCTIONS = frozenset({
    torch.is_complex, torch.is_floating_point, torch.numel, torch.result_type,
    torch.is_same_size, torch.is_conj, torch.is_neg, torch.is_inference,
})  # fmt: skip
_NEEDS_VALUES = frozenset({
    "__bool__", "__int__", "__float__", "__index__", "__complex__", "numpy", "__array__",
    "__reduce_ex__", "__deepcopy__", "__setstate__", "storage", "untyped_storage",
    "data_ptr", "__dlpack__",
})  # fmt: skip
_DESCRIBED = frozenset({"__repr__", "__str__", "__format__"})
# what autograd does not record: using a parameter this way gives it no gradient
_NOT_RECORDED = frozenset({
    "detach", "eq", "ne", "lt", "le", "gt", "ge", "__eq__", "__ne__", "__lt__", "__le__",
    "__gt__", "__ge__", "argmax", "argmin", "argsort", "long", "int", "bool", "item", "tolist",
})  # fmt: skip
_REFLECTED = {
    "__add__": "__radd__", "__sub__": "__rsub__", "__mul__": "__rmul__",
    "__truediv__": "__rtruediv__", "__div__": "__rtruediv__", "__floordiv__": "__rfloordiv__",
    "__mod__": "__rmod__", "__pow__": "__rpow__", "__matmul__": "__rmatmul__",
}  # fmt: skip
_INPLACE_OPERATORS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__setitem__"})


def _is_inplace(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_OPERATORS


def route(
    func: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    """Run one torch call that involves a stand-in: here for metadata, on the worker otherwise."""
    name = getattr(func, "__name__", "")
    if kwargs.get("memory_format") is torch.preserve_format:
        del kwargs["memory_format"]  # the default of clone and *_like (optim passes it)
    if name in ("__get__", "__set__", "__delete__"):
        owner = getattr(func, "__self__", None)  # the property's descriptor
        return _attribute(func, getattr(owner, "__name__", ""), name, args)
    if getattr(torch.Tensor, name, None) is func:
        return _method(func, name, args, kwargs)
    if func in _LOCAL_FUNCTIONS:
        return _local(func, args, kwargs)
    op = allowlist.function_for(func)
    if op is None:
        raise NotAllowed(
            f"torch function {resolve_name(func) or name!r} has no remote counterpart on the "
            "allowlist; its arguments live on a worker"
        )
    return _client_of(args, kwargs).call(op, None, args, kwargs)


def _local(func: Callable[..., _T], args: tuple[object, ...], kwargs: dict[str, object]) -> _T:
    with torch._C.DisableTorchFunctionSubclass():
        return func(*args, **kwargs)


def _method(
    func: Callable[..., object], name: str, args: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    if name in _LOCAL_METHODS:
        return _local(func, args, kwargs)
    target = args[0]
    assert isinstance(target, torch.Tensor)  # torch passes the tensor whose method this is
    if name in _DESCRIBED:
        return describe(target)
    if name in _NEEDS_VALUES:
        raise UsageError(
            f"{describe(target)} lives on a worker: {name} needs its values here; get() the "
            "model back first (model.get())"
        )
    remote = remote_of(target)
    if remote is None:  # a local tensor, with a remote value among the arguments
        return _local_target(name, target, args[1:], kwargs)
    if name == "requires_grad_":
        requires_grad = bool(args[1]) if len(args) > 1 else bool(kwargs.get("requires_grad", True))
        _set_requires_grad(target, remote, requires_grad)
        return target
    op = _tensor_op(name)
    inplace = _is_inplace(name)
    if inplace and not torch.is_grad_enabled():
        pointer = remote.detached()
    else:
        pointer = remote.pointer(recorded=name not in _NOT_RECORDED)
    result = pointer._client.call(op, pointer, args[1:], kwargs)
    if name == "__setitem__":
        return None
    return target if inplace else result


def _local_target(
    name: str, target: torch.Tensor, rest: tuple[object, ...], kwargs: dict[str, object]
) -> object:
    reflected = _REFLECTED.get(name)
    if reflected is not None and len(rest) == 1 and not kwargs:
        other = rest[0]
        if remote_of(other) is not None:
            return _method(getattr(torch.Tensor, reflected), reflected, (other, target), {})
    if _is_inplace(name):
        raise UsageError(
            f"Tensor.{name} would write a remote value into a local tensor; get() the remote "
            "value first, or send the local tensor to the worker"
        )
    client = _client_of(rest, kwargs)
    object_id = client.put(target)
    meta: dict[str, object] = {
        "shape": list(target.shape),
        "dtype": str(target.dtype).removeprefix("torch."),
    }
    sent = client.pointer(object_id, "Tensor", meta, owned=True)
    return client.call(_tensor_op(name), sent, rest, kwargs)


def _tensor_op(name: str) -> allowlist.Op:
    try:
        return allowlist.member("Tensor", name)
    except NotAllowed:
        raise NotAllowed(
            f"Tensor.{name} is not on the allowlist of remote operations; this tensor lives on "
            "a worker"
        ) from None


def _attribute(
    func: Callable[..., object], attribute: str, how: str, args: tuple[object, ...]
) -> object:
    target = args[0]
    remote = remote_of(target)
    # torch asks the tensor's own class for its attributes
    assert isinstance(target, torch.Tensor) and remote is not None
    if how == "__get__":
        if attribute in _LOCAL_PROPERTIES:
            return _local(func, args, {})
        if attribute == "grad":
            return _grad(target, remote)
        if attribute == "data":
            return wrap(remote.detached(), like=target)
        if attribute in ("T", "mT", "H", "mH", "real", "imag"):
            pointer = remote.pointer()
            return pointer._client.call(_tensor_op(attribute), pointer, (), {})
        raise NotAllowed(f"Tensor.{attribute} of a tensor on a worker cannot be read")
    value = args[1] if len(args) > 1 else None
    if how == "__set__" and attribute == "grad":
        if value is not None:
            raise UsageError(
                f"only None can be assigned to .grad of {describe(target)} (it lives on a worker)"
            )
        if remote.grad_live:
            remote.twin.grad.zero_()
            remote.grad_live = False
        return None
    if how == "__set__" and attribute == "data":
        remote.detached().copy_(value)
        return None
    if how == "__set__" and attribute == "requires_grad":
        _set_requires_grad(target, remote, bool(value))
        return None
    raise UsageError(f"Tensor.{attribute} of {describe(target)} cannot be changed here")


def _grad(target: torch.Tensor, remote: Remote) -> RemoteTensor | None:
    if not remote.grad_live:
        return None
    # read when this op runs over there: after every backward queued before it
    return wrap(remote.twin.grad, like=target)


def _set_requires_grad(target: torch.Tensor, remote: Remote, requires_grad: bool) -> None:
    remote.twin.requires_grad_(requires_grad)
    remote.set_requires_grad(requires_grad)
    with torch._C.DisableTorchFunctionSubclass():
        target.requires_grad_(requires_grad)


def _pointers(value: object, depth: int = 0) -> Iterator[Pointer]:
    if isinstance(value, Pointer):
        yield value
    elif isinstance(value, torch.Tensor):
        remote = remote_of(value)
        if remote is not None:
            yield remote.twin
    elif depth < 4 and isinstance(value, list | tuple):
        for item in value:
            yield from _pointers(item, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for item in value.values():
            yield from _pointers(item, depth + 1)


def _client_of(args: tuple[object, ...], kwargs: dict[str, object]) -> PointerClient:
    """The one session every remote value among the arguments lives in."""
    clients: dict[int, PointerClient] = {}
    for pointer in _pointers((args, kwargs)):
        clients.setdefault(id(pointer._client), pointer._client)
    if len(clients) != 1:
        where = ", ".join(_location_name(c.location) for c in clients.values())
        raise UsageError(
            f"these values live on different workers ({where}); move them to one first "
            "(ptr.move(worker))"
        )
    return next(iter(clients.values()))


def _location_name(location: object) -> str:
    return str(getattr(location, "id", None) or location)


def describe(tensor: torch.Tensor) -> str:
    remote = remote_of(tensor)
    with torch._C.DisableTorchFunctionSubclass():
        shape, dtype = tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")
    kind = "parameter" if isinstance(tensor, nn.Parameter) else "tensor"
    if remote is None:
        return f"<{kind} {shape} {dtype}>"
    return f"<{kind} {shape} {dtype} on {_location_name(remote.location)}: {remote.twin.id}>"


# ---------------------------------------------------------------- the classes


def _torch_function(
    func: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object] | None
) -> object:
    return route(func, tuple(args), dict(kwargs or {}))


class _StandIn:
    """What both stand-in classes add: where the twin is, and PySyft's ``copy``."""

    @property
    def location(self) -> object:
        """The worker (or session) holding this tensor's twin."""
        remote = remote_of(self)
        return None if remote is None else remote.location

    @property
    def id_at_location(self) -> str | None:
        remote = remote_of(self)
        return None if remote is None else remote.twin.id

    def copy(self) -> Pointer:
        """A copy of the twin's values, next to it on the worker, outside autograd
        (``.copy().get()`` fetches the values and leaves the twin in place)."""
        remote = remote_of(self)
        assert remote is not None
        return remote.detached().clone()

    def set_(self, source: object = None, *args: object, **kwargs: object) -> Self:
        """The twin takes ``source``'s values (a pointer on the same worker, or a local tensor
        that is sent); its storage stays its own, so only a source of the same shape works."""
        remote = remote_of(self)
        assert remote is not None
        if source is None or args or kwargs:
            raise UsageError("set_ of a tensor on a worker takes one source tensor of its shape")
        remote.detached().copy_(source)
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> NoReturn:
        raise UsageError(
            f"{describe(self)} lives on a worker and cannot be copied here; get() the model "  # type: ignore[arg-type]
            "back first (model.get())"
        )


class RemoteParameter(_StandIn, nn.Parameter):
    """A model's parameter while the model is on a worker (see the module's docstring)."""

    @classmethod
    def __torch_function__(  # type: ignore[override]
        cls,
        func: Callable[..., object],
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        return _torch_function(func, args, kwargs)


class RemoteTensor(_StandIn, torch.Tensor):
    """A buffer of a model on a worker, or a gradient or ``.data`` read from a parameter there."""

    @classmethod
    def __torch_function__(  # type: ignore[override]
        cls,
        func: Callable[..., object],
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        return _torch_function(func, args, kwargs)

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls,
        func: object,
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> NoReturn:
        raise UsageError(
            f"{func} reached a stand-in for a tensor on a worker: it has no values here"
        )


__all__ = [
    "Remote",
    "RemoteParameter",
    "RemoteTensor",
    "attach",
    "detach_stand_in",
    "remote_of",
    "wrap",
]
