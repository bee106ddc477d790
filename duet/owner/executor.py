"""Running one scientist's operations while keeping the release boundary.

For every call the executor
1. resolves its inputs: the scientist's own entries, or the owner's listed objects;
2. looks the op up in the allowlist for the target's *real* type;
3. reads the label of everything the op reads (see labels.py), and of the random number
   generator when it draws from it;
4. refuses, before running, any write into the owner's published objects;
5. runs it, then joins that label into what it made and what it wrote.

A failure is stored under the result id, like a value, labeled with everything the op read. The
scientist hears of it at once only when that label is empty; otherwise whether the op failed,
and why, is as private as a value would have been, and reaches the scientist only through a
request.

Every scientist has its own random number generator state (swapped in while its actions run), so
neither the owner's seeds nor another scientist's draws show in what it gets.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import DuetError, NotAllowed, ProtocolError, RemoteError, UsageError
from ..protocol import allowlist
from ..protocol.messages import Call, ErrorInfo, Failure
from ..protocol.serde import Decoder
from .labels import (
    EMPTY,
    Label,
    LabelRegistry,
    Source,
    Walk,
    graph_leaves,
    owner_containers,
)
from .store import OWNER, ObjectStore, StoredObject, value_nbytes

log = logging.getLogger(__name__)
MAX_OVERFLOW = 10_000


class _InputFailed(Exception):
    """An input of this call is itself a failure: the call fails the same way."""

    def __init__(self, entry: StoredObject):
        self.entry = entry


class _Inputs:
    """What one call read: the entries it named and the state reachable from their values."""

    __slots__ = ("entries", "entry_label", "lazy", "walk")

    def __init__(self) -> None:
        self.entries: list[StoredObject] = []
        self.entry_label: Label = EMPTY
        self.walk = Walk()
        self.lazy: list[Any] = []  # values read only if the op fails (reads_target=False)

    def label(self, labels: LabelRegistry, *, with_lazy: bool = False) -> Label:
        if with_lazy:
            for value in self.lazy:
                self.walk.add(value)
            self.lazy = []
        state = labels.label_of(self.walk)
        return self.entry_label | state if state else self.entry_label


class Executor:
    """Runs calls for one scientist (``peer``) on the owner's worker thread."""

    def __init__(
        self,
        peer: str,
        store: ObjectStore,
        *,
        error_info: Callable[[BaseException, str | None], ErrorInfo],
    ):
        self.peer = peer
        self.store = store
        self.labels = store.labels
        self._error_info = error_info
        self.rng_label: Label = EMPTY
        # results that could not be stored because the scientist holds max_objects already:
        # kept (bounded, outside the store) so that using them says why, not "does not exist"
        self._overflow: collections.OrderedDict[str, ErrorInfo] = collections.OrderedDict()
        generator = torch.Generator()
        generator.seed()  # fresh: never the owner's own seed
        self._rng_state = generator.get_state()
        self.actions_run = 0

    # ---- the scientist's random number generator
    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """While active, torch's default generator is this scientist's (swapped in around the
        ops that draw from it only, so the owner's own draws are rarely in its way)."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = torch.get_rng_state()
            torch.set_rng_state(saved)

    @staticmethod
    def _draws(op: allowlist.Op, target: Any) -> bool:
        """Whether this call draws from (or seeds) the generator."""
        if op.writes == "rng":
            return True
        if not op.random:
            return False
        if op.writes == "module_call" and isinstance(target, nn.Module):
            return any(m.training and isinstance(m, _RANDOM_LAYERS) for m in target.modules())
        return True

    # ---- naming objects
    def visible(self, object_id: str) -> StoredObject:
        """The entry this scientist may name: its own, or the owner's listed objects.

        Anything else reads as missing, so the scientist learns nothing about it."""
        entry = self.store.get(object_id)
        if entry is None and object_id in self._overflow:
            return StoredObject(object_id, None, self.peer, failure=self._overflow[object_id])
        if (
            entry is None
            or (entry.owner == OWNER and not entry.pointable)
            or (entry.owner not in (OWNER, self.peer))
        ):
            raise UsageError(
                f"object {object_id} does not exist on the owner's side (deleted or never created)"
            )
        return entry

    def forget(self, object_id: str) -> None:
        """The scientist dropped a result that could not be stored."""
        self._overflow.pop(object_id, None)

    def _name(self, object_id: str, inputs: _Inputs) -> StoredObject:
        """Resolve an input; its value is read only once ``inputs.read`` is called."""
        entry = self.visible(object_id)
        inputs.entries.append(entry)
        if entry.label:
            inputs.entry_label = inputs.entry_label | entry.label
        if entry.failure is not None:
            raise _InputFailed(entry)
        inputs.lazy.append(entry.value)
        return entry

    def _use(self, object_id: str, inputs: _Inputs) -> Any:
        value = self._name(object_id, inputs).value
        inputs.lazy.pop()
        inputs.walk.add(value)
        return value

    def label_of(self, entry: StoredObject) -> Label:
        """Everything ``entry`` may depend on: empty means it is the scientist's own."""
        if entry.failure is not None:
            return entry.label
        state = self.labels.label_of(Walk().add(entry.value))
        return entry.label | state if state else entry.label

    def _extra(self, op: allowlist.Op | None, draws: bool, *, failed: bool = False) -> Label:
        """What an op reads besides its inputs: the owner's information, the generator.

        Whether an op that reads the owner's files could open them at all (is there a data
        root, are the files there) is the owner's configuration, told to the scientist like the
        store's listing: a failure to open them is not labeled with the files' contents."""
        if op is None:
            return EMPTY
        label = EMPTY
        if op.owner_data and not failed:
            label = frozenset({Source("owner", op.path, frozenset({op.path}))})
        if draws and op.writes != "rng":  # a seed replaces the state without reading it
            label = label | self.rng_label
        return label

    # ---- calls
    def call(self, message: Call, buffers: list[memoryview]) -> Failure | None:
        """Run one call; returns a Failure to tell the scientist at once, or None."""
        path = message.op
        if message.result in self.store or message.result in self._overflow:
            return Failure(
                result=None,
                error=ErrorInfo(
                    code=UsageError.code,
                    op=path,
                    message=f"object id {message.result!r} is already in use; ids cannot be reused",
                ),
            )
        inputs = _Inputs()
        op: allowlist.Op | None = None
        writes: list[Any] = []
        draws = False
        try:
            target: Any = None
            call_args: list[Any] = []
            if message.target is None:
                op = allowlist.function(path)
            else:
                target = self._name(message.target, inputs).value
                kind = allowlist.type_key(target)
                if kind is None:  # the owner knows the real type: no guessing across tables
                    raise NotAllowed(f"{type(target).__name__} objects have no remote methods")
                op = allowlist.member(kind, path)
                if op.reads_target:
                    inputs.walk.add(inputs.lazy.pop())
                call_args = [target]
            path = op.path
            decoder = Decoder(buffers, lambda ref: self._use(ref, inputs))
            args = [decoder.decode(a) for a in message.args]
            op.check_kwargs(message.kwargs)
            kwargs = {key: decoder.decode(value) for key, value in message.kwargs.items()}
            if op.kind == "attribute" and (args or kwargs):
                raise ProtocolError(f"{op.path} is an attribute and takes no arguments")
            draws = self._draws(op, target)
            label = inputs.label(self.labels) | self._extra(op, draws)
            writes = self._writes(op, target, args, kwargs)
            self._refuse_protected(op, writes, inputs)
            assert op.impl is not None
            if draws:
                with self.own_rng():
                    result = op.impl(*call_args, *args, **kwargs)
            else:
                result = op.impl(*call_args, *args, **kwargs)
        except _InputFailed as failed:
            # it fails as its input did: whether it does depends on the inputs named so far
            info = failed.entry.failure
            assert info is not None
            return self._fail(message.result, info, inputs.entry_label, op, notify=False)
        except _PublicRefusal as refusal:
            return self._fail(message.result, self._error_info(refusal.error, path), EMPTY, op)
        except Exception as exc:
            label = inputs.label(self.labels, with_lazy=True) | self._extra(op, draws, failed=True)
            self._after(op, writes, label, draws)  # it may have written part of what it writes
            return self._fail(message.result, self._error_info(exc, path), label, op)
        self.actions_run += 1
        self._after(op, writes, label, draws)
        return self._store_result(message.result, result, label, op, inputs)

    def _store_result(
        self, result_id: str, result: Any, label: Label, op: allowlist.Op, inputs: _Inputs
    ) -> Failure | None:
        value = owner_containers(result) if isinstance(result, list | dict | tuple) else result
        if label:
            # label what the op made; what it only passed through (an input returned, the
            # storage a view shares) keeps its own label, and the entry's label covers the
            # choice of it
            made = Walk().add(value)
            self.labels.join_all(made.nodes.values(), label, skip=inputs.walk.nodes)
        entry = StoredObject(
            id=result_id,
            value=value,
            owner=self.peer,
            nbytes=value_nbytes(value),
            label=label,
            op=op.name,
            private_account=bool(label),
        )
        try:
            self.store.add_for_peer(self.peer, entry)
        except DuetError as exc:
            return self._fail(result_id, self._error_info(exc, op.path), label, op)
        return None

    def _fail(
        self,
        result_id: str,
        info: ErrorInfo,
        label: Label,
        op: allowlist.Op | None,
        *,
        notify: bool = True,
    ) -> Failure | None:
        """Store a failure under ``result_id``; a Failure to send when the scientist may know."""
        entry = StoredObject(
            id=result_id,
            value=None,
            owner=self.peer,
            nbytes=len(info.message),
            label=label,
            op=op.name if op is not None else "",
            failure=info,
            private_account=bool(label),
        )
        try:
            self.store.add_for_peer(self.peer, entry, check_bytes=False)
        except DuetError as exc:  # the object count: the same whether it failed or not
            error = self._error_info(exc, info.op)
            self._overflow[result_id] = error
            if len(self._overflow) > MAX_OVERFLOW:
                self._overflow.popitem(last=False)
            return Failure(result=result_id, error=error)
        if label:
            log.debug("private failure of %s for %s: %s", info.op, self.peer, info.message)
            return None
        return Failure(result=result_id, error=info) if notify else None

    # ---- what an op writes
    def _writes(
        self, op: allowlist.Op, target: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> list[Any]:
        """The objects ``op`` may change besides its result (see allowlist.WRITES)."""
        effect = op.writes
        if effect is None or effect == "rng":
            return []
        if effect == "target":
            return [target]
        if effect == "target_deep":
            return [_Deep(target)]
        if effect == "graph":
            if not isinstance(target, torch.Tensor) or target.grad_fn is None:
                return []
            leaves = graph_leaves(target)
            if leaves is None:
                raise UsageError(
                    "backward through more than 20,000 autograd operations is refused (the owner "
                    "cannot check what it writes); call backward on smaller steps"
                )
            return [_Grad(leaf) for leaf in leaves]
        if effect == "module_call":
            out: list[Any] = []
            if isinstance(target, nn.Module):
                modules = list(target.modules())
                if any(m.training for m in modules):
                    out.extend(b for m in modules for b in m._buffers.values() if b is not None)
                if args and any(getattr(m, "inplace", False) is True for m in modules):
                    out.append(args[0])
            return out
        if effect == "inplace_arg":
            assert op.impl is not None
            try:
                bound = inspect.signature(op.impl).bind(*args, **kwargs)
            except TypeError:
                return []  # the call itself will fail
            if bound.arguments.get("inplace"):
                return [args[0]] if args else []
            return []
        raise AssertionError(f"unknown write effect {effect}")

    def _refuse_protected(self, op: allowlist.Op, writes: list[Any], inputs: _Inputs) -> None:
        if op.writes == "rng" or not writes:
            return
        for written in writes:
            walk = _walk_written(written)
            node = self.labels.protected_in(walk)
            if node is None:
                continue
            what = type(node).__name__ if not isinstance(node, torch.UntypedStorage) else "tensor"
            error = NotAllowed(
                f"{op.path} would change the owner's published {what}; the owner's objects are "
                "read-only for scientists: work on a copy (x.clone(), model.copy())"
            )
            root = written.obj if isinstance(written, _Deep | _Grad) else written
            direct = any(e.owner == OWNER and e.value is root for e in inputs.entries)
            others_public = all(not e.label for e in inputs.entries if e.owner != OWNER)
            if direct and others_public:
                raise _PublicRefusal(error)
            raise error

    def _after(self, op: allowlist.Op | None, writes: list[Any], label: Label, draws: bool) -> None:
        """Label what the op wrote (also when it failed part way)."""
        if op is None:
            return
        if op.writes == "rng":
            self.rng_label = label  # a seed replaces the whole state
        elif draws:  # how much it drew may depend on what it read
            self.rng_label = self.rng_label | label
        if not label:
            return
        for written in writes:
            walk = _walk_written(written)
            self.labels.join_all(walk.nodes.values(), label, skip={})


_RANDOM_LAYERS = (nn.Dropout, nn.Dropout2d)


class _PublicRefusal(Exception):
    """A write into a published object named directly: refused, and the scientist may know."""

    def __init__(self, error: DuetError):
        self.error = error


class _Deep:
    """Written: an object and everything it holds."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj


class _Grad:
    """Written: a leaf tensor's ``.grad`` (by backward)."""

    __slots__ = ("obj",)

    def __init__(self, obj: torch.Tensor):
        self.obj = obj


def _walk_written(written: Any) -> Walk:
    walk = Walk()
    if isinstance(written, _Deep):
        return walk.add(written.obj)
    if isinstance(written, _Grad):
        leaf = written.obj
        walk.nodes[id(leaf)] = leaf
        if leaf.grad is not None:
            walk.add(leaf.grad)
        return walk
    # the object itself: a tensor's storage and metadata, a container (not what it holds)
    walk.nodes[id(written)] = written
    if isinstance(written, torch.Tensor):
        storage = written.untyped_storage()
        walk.nodes[id(storage)] = storage
    return walk


def remote_error(info: ErrorInfo) -> RemoteError:
    return RemoteError(info.message, op=info.op, remote_type=info.remote_type)
