"""Pointers: the scientist's handles on objects that live on the owner's side.

Every call on a pointer returns a new pointer at once (the action is queued, not awaited).
``get`` is the only way a value comes back: at once for the scientist's own objects and results
computed only from them, through the owner's request queue for anything derived from the
owner's data.
"""

from __future__ import annotations

import concurrent.futures
import operator
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypedDict, Unpack

import torch

from ..display import shown
from ..errors import NotAllowed, PermissionDenied, RequestDenied, RequestWarning, UsageError
from ..protocol import allowlist
from ..protocol.messages import Get, Reply
from .waiting import wait_for_decision

if TYPE_CHECKING:
    from .client import PointerClient


class StandIn(Protocol):
    """What a local stand-in for a remote tensor carries (a model's parameter while the model is
    on a worker: duet/workers). ``pointer()`` is the pointer an operation should use now."""

    def pointer(self) -> Pointer: ...


def stand_in_pointer(value: object) -> Pointer | None:
    """The pointer a local stand-in stands for, or None for any other value."""
    if not isinstance(value, torch.Tensor) or type(value) is torch.Tensor:
        return None
    remote: StandIn | None = value.__dict__.get("_duet_remote")
    return None if remote is None else remote.pointer()


class Destination(Protocol):
    """Where ``move`` can send a value: a session or a worker (its ``send_value``)."""

    def send_value(self, value: object, /) -> object: ...


class _GetOptions(TypedDict, total=False):
    """``get``'s keywords that ``move`` passes on (it sets ``delete_obj`` itself)."""

    request_block: bool
    name: str | None
    reason: str
    timeout_secs: float | None
    verbose: bool


class Pointer:
    """A reference to an object on the owner's side.

    ``kind`` is the type key of the object (``Tensor``, ``Module``, ``Number``...), or None when
    it is not known here; it decides which methods may be called.
    """

    __slots__ = ("__weakref__", "_client", "_owned", "id", "kind", "meta")

    def __init__(
        self,
        client: PointerClient,
        object_id: str,
        kind: str | None,
        # JSON facts read by key (its length, tags, shape...), of the types their writers gave
        meta: dict[str, object],
        *,
        owned: bool,
    ):
        self._client = client
        self.id = object_id
        self.kind = kind
        self.meta = meta
        self._owned = owned

    # ---- members
    # Any: a pointer or a method, as the allowlist says at run time: left dynamic, so that
    # chains such as ``ptr.grad.data`` type-check
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            op = allowlist.member(self.kind, name)
        except NotAllowed:
            if self.kind == "Module":  # a layer, parameter or buffer of a remote model
                return self._call("member", name)
            raise
        if op.kind == "attribute":
            return self._client.call(op, self, (), {})
        return RemoteMethod(self, op)

    def _call(self, name: str, *args: object, **kwargs: object) -> Pointer:
        return self._client.call(allowlist.member(self.kind, name), self, args, kwargs)

    def __call__(self, *args: object, **kwargs: object) -> Pointer:
        return self._call("__call__", *args, **kwargs)

    # ---- where the object lives (PySyft's names)
    @property
    def location(self) -> object:
        """The session (or worker) holding the object."""
        return self._client.location

    @property
    def id_at_location(self) -> str:
        """The object's id on the owner's side (the same as ``id``)."""
        return self.id

    def copy(self) -> Pointer:
        """A copy of the object next to it, on the owner's side (``clone`` for a tensor)."""
        return self._call("clone" if self.kind == "Tensor" else "copy")

    # Any: the new pointer, or the model itself from a worker's send_value; callers chain calls
    # on either
    def move(self, location: Destination, **get_options: Unpack[_GetOptions]) -> Any:
        """Move the object to another session or worker: fetched here, freed where it was, sent
        there; returns the new pointer. What depends on an owner's data leaves only through a
        request (pass ``request_block=True, name=..., reason=...``); None if it is denied."""
        value = self.get(delete_obj=True, **get_options)
        if value is None and get_options.get("request_block"):
            return None
        return location.send_value(value)

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., object],
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        """Plain torch calls on pointers run on the owner's side: ``torch.flatten(ptr, 1)``,
        ``torch.nn.functional.nll_loss(output_ptr, target_ptr)``. Only allowlisted functions."""
        kwargs = kwargs or {}
        # torch only calls this when a pointer is among the arguments, or in a list of tensors
        # among them (torch.cat([a, b]))
        pointer = _first_pointer((*args, *kwargs.values()))
        if pointer is None:
            raise NotAllowed(f"{getattr(func, '__qualname__', func)!r} was given no pointer")
        op = allowlist.function_for(func)
        if op is not None:
            return pointer._client.call(op, None, args, kwargs)
        qualname = getattr(func, "__qualname__", repr(func))
        if qualname.startswith(("TensorBase.", "Tensor.")) and args:
            return _tensor_method(func.__name__, pointer, args, kwargs)
        raise NotAllowed(f"torch function {qualname!r} has no remote counterpart on the allowlist")

    def __getitem__(self, key: object) -> Pointer:
        return self._call("__getitem__", key)

    # ---- what it was sent or published with
    @property
    def tags(self) -> list[str]:
        """The tags the object was published or sent with (``[]`` if none)."""
        tags = self.meta.get("tags") or []  # written as a list of strings
        return [str(t) for t in tags] if isinstance(tags, list | tuple) else []

    @property
    def description(self) -> str:
        """The description the object was published or sent with (``""`` if none)."""
        return str(self.meta.get("description") or "")

    def resolve_pointer_type(self) -> Pointer:
        """This pointer (PySyft's pointers needed it to learn their type; these know it)."""
        return self

    def __setitem__(self, key: object, value: object) -> None:
        self._call("__setitem__", key, value)

    # ---- getting values back
    def get(
        self,
        request_block: bool = False,
        name: str | None = None,
        reason: str = "",
        timeout_secs: float | None = None,
        delete_obj: bool | None = None,
        verbose: bool = False,
    ) -> Any:  # Any: the owner's value, of any type: the caller uses it as what it knows it is
        """Fetch the value.

        Your own objects (and results computed only from them) come back at once. A value
        derived from the owner's data raises PermissionDenied unless ``request_block=True``,
        which asks the owner and waits: accepted returns the value, denied or timed out returns
        None with a RequestWarning. Remote failures raise RemoteError naming the failed op.
        ``delete_obj``: free your object on the owner's side once fetched; by default a
        worker's pointers do (PySyft's get moves the value back), a duet's do not.
        ``verbose=True`` (PySyft's): print what is asked of the owner and what it decided.
        """
        if name is not None and not isinstance(name, str):  # PySyft's get(True, 20): a timeout
            raise UsageError(
                f"get()'s second argument is the request's name, not {name!r}: pass the "
                "timeout by name, get(request_block=True, timeout_secs=...) (PySyft took it "
                "second)"
            )
        if delete_obj is None:
            delete_obj = self._client.moves_on_get
        if not request_block:
            # asked for before the value leaves (a get may move it): its gradient, if any
            grad = self.grad if self._client.gets_grads and self.meta.get("requires_grad") else None
            reply, buffers = self._client.request(
                lambda rid: Get(rid=rid, id=self.id, delete_obj=delete_obj),
                timeout_secs=timeout_secs,
                what=f"get of {self.id}",
            )
            value = self._value(reply, buffers)
            if grad is not None:
                _attach_grad(value, grad, timeout_secs)
            if verbose:
                _say(f"got {self.kind or 'object'} {self.id}")
            return value
        handle = self.request(
            name=name, reason=reason, timeout_secs=timeout_secs, delete_obj=delete_obj
        )
        if verbose:
            limit = "" if timeout_secs is None else f" (up to {timeout_secs:g} s)"
            why = f": {reason}" if reason else ""
            _say(f"asked the owner for {handle.label}{why}; waiting for the decision{limit}")
        value = handle.wait()  # up to the request's timeout (and the reply saying it passed)
        if verbose:
            outcome = {"ok": "accepted", "timeout": "timed out"}.get(handle.status, handle.status)
            _say(f"request {handle.label}: {outcome}")
        return value

    def get_copy(
        self,
        request_block: bool = False,
        name: str | None = None,
        reason: str = "",
        timeout_secs: float | None = None,
        verbose: bool = False,
    ) -> Any:  # Any: the owner's value, of any type: the caller uses it as what it knows it is
        """``get`` that leaves the object where it is (PySyft's name; ``delete_obj=False``)."""
        return self.get(
            request_block=request_block,
            name=name,
            reason=reason,
            timeout_secs=timeout_secs,
            delete_obj=False,
            verbose=verbose,
        )

    def request(
        self,
        name: str | None = None,
        reason: str = "",
        timeout_secs: float | None = None,
        delete_obj: bool = False,
    ) -> RequestHandle:
        """Ask the owner to release this value without waiting; returns a handle."""
        future = self.send_request(
            name=name, reason=reason, timeout_secs=timeout_secs, delete_obj=delete_obj
        )
        return RequestHandle(self, name or "", future, timeout_secs=timeout_secs)

    def send_request(
        self,
        *,
        name: str | None = None,
        reason: str = "",
        timeout_secs: float | None = None,
        delete_obj: bool = False,
    ) -> concurrent.futures.Future[tuple[Reply, list[memoryview]]]:
        """Send the request to release this value; the future gets the owner's reply, as it
        comes (``request``'s handle and the async face, sessions/aio.py, wait on it)."""
        return self._client.request_async(
            lambda rid: Get(
                rid=rid,
                id=self.id,
                request=True,
                name=name or "",
                reason=reason,
                timeout_secs=timeout_secs,
                delete_obj=delete_obj,
            )
        )

    def _value(self, reply: Reply, buffers: list[memoryview]) -> object:
        self._client.raise_for(reply)
        return self._client.decode(reply.value, buffers)

    def delete(self) -> None:
        """Free the object on the owner's side now (it is freed anyway when the pointer is dropped)."""
        if self._owned:
            self._owned = False
            self._client.release(self.id)

    def __del__(self) -> None:
        if getattr(self, "_owned", False):
            try:
                self._client.release(self.id)
            except Exception:
                pass

    # ---- Python protocols that need a value here
    def __bool__(self) -> bool:
        raise UsageError(
            f"a pointer's truth value lives on the owner's side; fetch it first: ptr.get(...) ({self!r})"
        )

    def __len__(self) -> LengthPointer:  # len(ptr) makes it the number: LengthPointer
        """A pointer to the remote object's length, as in PySyft::

            size = loader.dataset.__len__().get(request_block=True, name="train_size")

        ``len(ptr)`` asks the owner for the number itself (see LengthPointer).
        """
        return self.len()

    def len(self) -> LengthPointer:
        """A pointer to the remote object's length (``len(ptr)`` asks for the number itself).

        >>> size = loader.len().get(request_block=True, name="train_size")
        """
        result = self._call("__len__")
        length = LengthPointer(result._client, result.id, result.kind, result.meta, owned=False)
        length._owned, result._owned = result._owned, False  # the new pointer frees it
        length.of = self
        return length

    def __iter__(self) -> Iterator[Pointer]:
        if self.kind == "DataLoader":
            from .loader import iterate_loader

            return iterate_loader(self)
        if self.kind == "Dict":  # as Python does: its keys
            return iter(self._call("keys"))
        length = self.meta.get("length")
        if length is None and self.kind in ("List", "Tuple"):
            length = self._own_length()
        if not isinstance(length, int):  # unknown (None): JSON facts give an int
            raise UsageError(
                f"cannot iterate a remote {self.kind or 'object'} of unknown length; index it instead (ptr[0])"
            )
        return (self[i] for i in range(length))

    def _own_length(self) -> int:
        """The length of a container, to iterate it: at once when it is the scientist's own
        (one round trip); else asked of the owner, as ``len(ptr)`` does (a request named
        ``len``; RequestDenied if the owner does not release it)."""
        length = self.len()
        try:
            return int(length.get())
        except PermissionDenied:
            return length.__index__()

    def __reduce__(self) -> NoReturn:
        raise UsageError(
            f"a pointer cannot be pickled or saved ({self!r}); fetch the value with .get(...) first"
        )

    def __index__(self) -> int:
        raise UsageError(
            "a pointer cannot be used as a local number; fetch it with .get(...) first"
        )

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<Pointer to {self.kind or 'object'} {self.id}>"


def _operator(name: str) -> Callable[..., Pointer]:
    def method(self: Pointer, *args: object) -> Pointer:
        return self._call(name, *args)

    method.__name__ = name
    return method


for _name in (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
    "__matmul__", "__rmatmul__", "__and__", "__or__", "__xor__", "__lt__", "__le__", "__gt__",
    "__ge__", "__eq__", "__ne__", "__neg__", "__abs__", "__invert__",
    "__iadd__", "__isub__", "__imul__", "__itruediv__", "__contains__",
):  # fmt: skip
    setattr(Pointer, _name, _operator(_name))


# A local tensor's operator with a pointer on its right (``local * ptr`` reaches the pointer as
# ``Tensor.mul(local, ptr)``) runs as the remote function of that name, or as the pointer's
# reflected operator; either way the local tensor travels as an argument.
_REFLECTED = {
    "add": "__radd__", "__add__": "__radd__", "sub": "__rsub__", "__sub__": "__rsub__",
    "mul": "__rmul__", "__mul__": "__rmul__", "div": "__rtruediv__", "true_divide": "__rtruediv__",
    "__truediv__": "__rtruediv__", "floor_divide": "__rfloordiv__",
    "__floordiv__": "__rfloordiv__", "remainder": "__rmod__", "__mod__": "__rmod__",
    "pow": "__rpow__", "__pow__": "__rpow__", "matmul": "__rmatmul__", "__matmul__": "__rmatmul__",
    "lt": "__gt__", "__lt__": "__gt__", "le": "__ge__", "__le__": "__ge__", "gt": "__lt__",
    "__gt__": "__lt__", "ge": "__le__", "__ge__": "__le__", "eq": "__eq__", "__eq__": "__eq__",
    "ne": "__ne__", "__ne__": "__ne__", "__and__": "__and__", "__or__": "__or__",
    "__xor__": "__xor__",
}  # fmt: skip
_IN_PLACE_OPERATORS = {f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod",
                                               "pow", "matmul", "and", "or", "xor")}  # fmt: skip


def _tensor_method(
    name: str, pointer: Pointer, args: tuple[object, ...], kwargs: dict[str, object]
) -> Pointer:
    target, rest = args[0], args[1:]
    if isinstance(target, Pointer):  # Tensor.add(ptr, x), spelled out
        return target._call(name, *rest, **kwargs)
    if (name.endswith("_") and not name.endswith("__")) or name in _IN_PLACE_OPERATORS:
        raise UsageError(
            f"a local tensor cannot be changed in place by a value on the owner's side "
            f"(Tensor.{name}); write x = x + ptr, which makes a pointer"
        )
    function = allowlist.FUNCTIONS.get(f"torch.{name}")
    if function is not None:  # torch.mul(local, ptr): the same call, run remotely
        return pointer._client.call(function, None, args, kwargs)
    reflected = _REFLECTED.get(name)
    if reflected is not None and not kwargs and len(rest) == 1 and rest[0] is pointer:
        return pointer._call(reflected, target)
    raise NotAllowed(
        f"Tensor.{name} of a local tensor with a pointer argument has no remote counterpart "
        "on the allowlist; send the tensor first (x.send(duet))"
    )


class LengthPointer(Pointer):
    """A pointer to a remote object's length (``ptr.__len__()``, ``ptr.len()``).

    ``get`` it as any pointer. Where Python needs the number itself (``len(ptr)``, ``range(n)``)
    it is asked for as a request, named ``train_size`` for a Dataset's or DataLoader's length
    and ``len`` otherwise; a Dataset's or DataLoader's length, once released, is remembered.
    Raises RequestDenied there when the owner does not release it.
    """

    __slots__ = ("of",)

    of: Pointer

    def __index__(self) -> int:
        of = self.of
        known = of.meta.get("len")  # written as an int (here, or by a federation's member)
        if isinstance(known, int):  # released once already: a dataset's length does not change
            return known
        name = "train_size" if of.kind in ("Dataset", "DataLoader") else "len"
        length = self.get(request_block=True, name=name, reason="length of a remote object")
        if length is None:
            raise RequestDenied(
                f"the owner did not release the length of {of.id} (request {name!r})"
            )
        if of.kind in ("Dataset", "DataLoader"):
            of.meta["len"] = int(length)
        return int(length)

    # PySyft's notebooks use a length as a number (``round(length / batch_size + 0.5)``,
    # ``f"{loss / length:.4f}"``): with a local number, it is fetched through the same request
    # as ``len(ptr)`` and the arithmetic runs here; with a pointer it stays remote.
    def __int__(self) -> int:
        return self.__index__()

    @classmethod
    def __torch_function__(
        cls,
        func: Callable[..., object],
        types: Iterable[type],
        args: tuple[object, ...] = (),
        kwargs: dict[str, object] | None = None,
    ) -> object:
        """A local tensor with a length (``loss_tensor / length``) computes here, the length a
        number; with another pointer among the arguments the call runs remotely, as any does."""
        kwargs = kwargs or {}
        if any(
            isinstance(a, Pointer) and not isinstance(a, LengthPointer)
            for a in (*args, *kwargs.values())
        ):
            return super().__torch_function__(func, types, args, kwargs)
        args = tuple(a.__index__() if isinstance(a, LengthPointer) else a for a in args)
        kwargs = {
            k: v.__index__() if isinstance(v, LengthPointer) else v for k, v in kwargs.items()
        }
        return func(*args, **kwargs)

    def __float__(self) -> float:
        return float(self.__index__())

    def __round__(self, ndigits: int | None = None) -> int:
        return round(self.__index__(), ndigits)

    def __format__(self, spec: str) -> str:  # f"size {length}" shows the number
        return format(self.__index__(), spec)


def _length_operator(name: str) -> Callable[..., object]:
    reflected = name.startswith("__r")
    local = getattr(operator, name.replace("__r", "__", 1) if reflected else name)
    remote = getattr(Pointer, name)

    def method(self: LengthPointer, other: object) -> object:
        if isinstance(other, int | float) and not isinstance(other, bool):
            value = self.__index__()
            return local(other, value) if reflected else local(value, other)
        return remote(self, other)

    method.__name__ = name
    return method


for _name in (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
):  # fmt: skip
    setattr(LengthPointer, _name, _length_operator(_name))


def _attach_grad(value: object, grad: Pointer, timeout_secs: float | None) -> None:
    """Give ``value`` (a tensor that came back) the gradient ``grad`` points to, if it has one
    that is yours to read; one that depends on the owner's data stays there, said in a warning."""
    try:
        fetched = grad.get(timeout_secs=timeout_secs)
    except PermissionDenied as exc:
        warnings.warn(
            f"the tensor came back without its gradient: {exc}", RequestWarning, stacklevel=3
        )
        return
    if isinstance(fetched, torch.Tensor) and isinstance(value, torch.Tensor) and value.is_leaf:
        value.grad = fetched


def _say(text: str) -> None:
    print(f"♫♫♫ > {text}", flush=True)


class RemoteMethod:
    """A method of a remote object; calling it queues the call and returns a pointer."""

    __slots__ = ("op", "pointer")

    def __init__(self, pointer: Pointer, op: allowlist.Op):
        self.pointer = pointer
        self.op = op

    def __call__(self, *args: object, **kwargs: object) -> Pointer:
        return self.pointer._client.call(self.op, self.pointer, args, kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self.op.path} of {self.pointer!r}>"


class RequestHandle:
    """A request sent to the owner: ``status`` and ``wait()``."""

    def __init__(
        self,
        pointer: Pointer,
        name: str,
        future: concurrent.futures.Future[tuple[Reply, list[memoryview]]],
        *,
        timeout_secs: float | None = None,
    ):
        self.pointer = pointer
        self.name = name
        self._future = future
        self.timeout_secs = timeout_secs  # the request's: the owner times it out then

    @property
    def label(self) -> str:
        """How messages name the request: its name and the object, or the object alone."""
        return f"{self.name!r} ({self.pointer.id})" if self.name else self.pointer.id

    @property
    def status(self) -> str:
        if not self._future.done():
            return "pending"
        if self._future.exception() is not None:
            return "error"
        return self._future.result()[0].status

    # Any: the owner's value, of any type: the caller uses it as what it knows it is
    def wait(self, timeout_secs: float | None = None) -> Any:
        """Wait for the owner's decision: the value if accepted, None (with a warning) otherwise.
        ``timeout_secs``: how long to wait (default: the request's timeout, else the session's
        default wait). While a person decides, a countdown on stderr says so, and a line how it
        ended (scientist/waiting.py). Raises DuetTimeout (no reply in time), ConnectionLost."""
        reply, buffers = wait_for_decision(
            self.pointer._client,
            self._future,
            label=self.label,
            owner_secs=self.timeout_secs,
            wait_secs=timeout_secs,
        )
        if reply.status in ("denied", "timeout"):
            how = (
                "was denied by the owner"
                if reply.status == "denied"
                else "timed out waiting for the owner"
            )
            said = f" ({shown(reply.note, 500)})" if reply.note else ""  # the owner's words
            warnings.warn(
                f"request {self.name!r} for {self.pointer.id} {how}{said}; get() returns None",
                RequestWarning,
                stacklevel=3,
            )
            return None
        return self.pointer._value(reply, buffers)

    def __repr__(self) -> str:
        return f"<RequestHandle {self.name!r} for {self.pointer.id}: {self.status}>"


def _first_pointer(values: Iterable[object]) -> Pointer | None:
    """The first pointer among ``values`` or inside the lists and tuples among them."""
    for value in values:
        if isinstance(value, Pointer):
            return value
        if isinstance(value, list | tuple):
            found = _first_pointer(value)
            if found is not None:
                return found
    return None
