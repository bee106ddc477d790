"""Running one scientist's operations while keeping the release boundary.

For every call the executor
1. names its inputs: the scientist's own entries, or the owner's listed objects;
2. looks the op up in the allowlist for the target's *real* type;
3. reads the label of everything the op reads (see labels.py), and of the random number
   generator when it draws from it;
4. refuses, before running, any write into the owner's published objects;
5. runs it, then joins that label into what it made and what it wrote.

A failure is stored under the result id, like a value, labeled with everything the op read. The
scientist hears of it at once only when that label is empty; otherwise whether the op failed,
and why, is as private as a value would have been, and reaches the scientist only through a
request. So that a private failure shows nowhere else either, an op that did not run because an
input had failed labels what it would have written as if it had run, and every handle made from
private data carries the existing state it may stand for (``reach``: what it could alias, or
would have aliased had it not failed); writes through it label all of that.

Every scientist has its own random number generator state, swapped in around the ops that draw
from it, so neither the owner's seeds nor another scientist's draws show in what it gets.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from ..errors import DuetError, NotAllowed, ProtocolError, QuotaExceeded, UsageError
from ..protocol import allowlist
from ..protocol.messages import Call, ErrorInfo, Failure
from ..protocol.serde import Decoder
from . import datasets as _datasets  # noqa: F401 (binds the owner's dataset ops)
from . import derivation, effects, lanes, sizes, writes
from .calls import NOT_PLAIN, InputFailed, Inputs, PublicRefusal, Step, plain_value
from .derivation import Whole
from .labels import EMPTY, UNKNOWN, Label, Source, Walk, owner_containers
from .policy import CallCheck, PolicyChain, QuotaPolicy
from .publishable import TABLE_ONLY_DP, is_table
from .quota import GRAPH_NODE_BYTES, PeerQuota, scalar_bytes
from .store import OWNER, ObjectStore, StoredObject

log = logging.getLogger(__name__)
MAX_OVERFLOW = 10_000


_PLAIN_CONTAINERS = (list, tuple, dict)  # no label or charge of their own, only their contents
_TENSOR_OBJECTS = frozenset({torch.Tensor, nn.Parameter})  # charged by their storages
# torch has one default generator per process, and each scientist's ops run on a thread of
# their own: one scientist's state is swapped in, drawn from and swapped out under this lock,
# so no other scientist's thread draws from it (or replaces it) meanwhile
RNG_LOCK = threading.RLock()


class Executor:
    """Runs calls for one scientist (``peer``) on the owner's worker thread."""

    def __init__(
        self,
        peer: str,
        store: ObjectStore,
        *,
        error_info: Callable[[BaseException, str | None], ErrorInfo],
        policy: PolicyChain | None = None,
    ):
        self.peer = peer
        self.store = store
        # the owner's policy chain (quotas, access rules, ...): every call passes through it
        self.policy = policy or PolicyChain([QuotaPolicy(store.quota)])
        self.labels = store.labels
        self._error_info = error_info
        self.rng_label: Label = EMPTY
        # joined into every backward pass: whether one runs depends on the tensors its graph
        # saved being unchanged and the graph not yet freed, so on every private in-place write
        # to a tensor and every private backward pass before it (the graph is never walked)
        self.graph_label: Label = EMPTY
        # joined into everything once a write could not be followed (see _label_reach)
        self.poisoned: Label = EMPTY
        generator = torch.Generator()
        generator.seed()  # fresh: never the owner's own seed
        self._rng_state = generator.get_state()
        # leaf tensors that require gradients: where a backward pass may write (by id)
        self._leaves: dict[int, weakref.ref[torch.Tensor]] = {}
        # results that could not be stored because the scientist holds max_objects already:
        # kept (bounded, outside the store) so that using them says why, not "does not exist"
        self._overflow: collections.OrderedDict[str, ErrorInfo] = collections.OrderedDict()
        self.actions_run = 0
        # told of every piece of state written, or that may have been (would have been, had a
        # private input not failed): the grants over it end (grants.py); None: it cannot be told
        self.on_write: Callable[[Iterable[object] | None], None] | None = None

    # ---- the scientist's random number generator
    @contextlib.contextmanager
    def own_rng(self) -> Iterator[None]:
        """While active, torch's default generator holds this scientist's state, and no other
        scientist's op can draw from it or swap its own in (RNG_LOCK)."""
        with RNG_LOCK:
            saved = torch.get_rng_state()
            torch.set_rng_state(self._rng_state)
            try:
                yield
            finally:
                self._rng_state = torch.get_rng_state()
                torch.set_rng_state(saved)

    # ---- where gradients go
    def register_leaves(self, value: object) -> None:
        for leaf in effects.leaves_in(value):
            key = id(leaf)
            ref = self._leaves.get(key)
            if ref is None or ref() is not leaf:
                self._leaves[key] = weakref.ref(leaf, self._leaf_forgetter(key))

    def _leaf_forgetter(self, key: int) -> Callable[[weakref.ref[torch.Tensor]], None]:
        leaves = self._leaves

        def forget(ref: weakref.ref[torch.Tensor]) -> None:
            if leaves.get(key) is ref:
                del leaves[key]

        return forget

    def leaves(self) -> list[torch.Tensor]:
        """The scientist's leaves a backward pass may write: never the owner's objects."""
        out = []
        for ref in list(self._leaves.values()):
            leaf = ref()
            if (
                leaf is not None
                and leaf.requires_grad
                and leaf.is_leaf
                and not self.labels.is_protected(leaf)
            ):
                out.append(leaf)
        return out

    # ---- naming objects
    def key(self, object_id: str) -> str:
        """Where this scientist's object ``object_id`` is kept: each scientist names objects in
        a namespace of its own, so another's ids (guessed or learned) name nothing here."""
        return f"{self.peer}:{object_id}"

    def taken(self, object_id: str) -> bool:
        """Whether a new object of this scientist's may not be named ``object_id``: its own
        names, and the names of the owner's listed objects (which it would shadow)."""
        if self.key(object_id) in self.store or object_id in self._overflow:
            return True
        entry = self.store.get(object_id)
        return entry is not None and entry.owner == OWNER and entry.pointable

    def visible(self, object_id: str, *, table: bool = False) -> StoredObject:
        """The entry this scientist may name: its own, or the owner's listed objects.

        Anything else reads as missing, so the scientist learns nothing about it. A published
        table is named only by a DP statistic (``table=True``): every op, get and request on
        it is refused here, the one door every such message passes."""
        entry = self.store.get(object_id)
        if entry is not None and entry.owner == OWNER and entry.pointable:
            self.policy.check_name(self.peer, entry)
            if not table and is_table(entry.value):
                raise UsageError(TABLE_ONLY_DP.format(id=object_id))
            return entry
        entry = self.store.get(self.key(object_id))
        if entry is not None and is_table(entry.value):  # never: a table is only published
            raise UsageError(TABLE_ONLY_DP.format(id=object_id))
        if entry is None and object_id in self._overflow:
            return StoredObject(object_id, None, self.peer, failure=self._overflow[object_id])
        if entry is None or entry.owner != self.peer:
            raise UsageError(
                f"object {object_id} does not exist on the owner's side (deleted or never created)"
            )
        return entry

    def forget(self, object_id: str) -> None:
        """The scientist dropped a result that could not be stored."""
        self._overflow.pop(object_id, None)

    def _name(self, object_id: str, inputs: Inputs, *, target: bool = False) -> StoredObject:
        entry = self.visible(object_id)
        inputs.entries.append(entry)
        if target:
            inputs.target, inputs.target_label = entry, entry.label
        else:
            inputs.arguments.append(entry)
            if entry.label:
                inputs.entry_label = inputs.entry_label | entry.label
        if entry.failure is not None:
            inputs.failed.append(entry)
        return entry

    def _use(self, object_id: str, inputs: Inputs) -> object:
        """An argument: read now (a failure stands in as None; the call will not run)."""
        entry = self._name(object_id, inputs)
        if entry.failure is not None:
            return None
        inputs.walk.add(entry.value)
        inputs.values.append(entry.value)
        return entry.value

    def label_of(self, entry: StoredObject, walk: Walk | None = None) -> Label:
        """Everything ``entry`` may depend on: empty means it is the scientist's own.
        ``walk``: the walk of its value, when the caller has made it now (it is not made
        twice)."""
        if entry.failure is not None:
            return entry.label | self.poisoned
        if walk is None:
            walk = Walk().add(entry.value)
        state = self.labels.label_of(walk) | self.poisoned
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
        if op.writes == "graph":
            label = label | self.graph_label
        return label

    # ---- the fast lanes (lanes.py), bound as methods: tests and benchmarks close or watch each
    _plain_call = lanes.plain_call
    _own_tensor = lanes.own_tensor
    _function_call = lanes.function_call

    # ---- labeling what a call wrote or would have (writes.py), bound as methods
    _would_have_run = writes.would_have_run
    _label_reach = writes.label_reach
    _wrote = writes.wrote
    _layer_writes = writes.layer_writes
    _public_layer = writes.public_layer
    _writes_nothing = writes.writes_nothing
    _refuse_protected = writes.refuse_protected
    _after = writes.after

    # ---- calls: resolve, admit, run, record
    def call(self, message: Call, buffers: list[memoryview]) -> Failure | None:
        """Run one call; returns a Failure to tell the scientist at once, or None.

        Four steps, each a method: ``_resolve`` names every input and finds the op,
        ``_admit`` decides what the call may do (what it draws and writes, its label, its
        memory, the owner's policy), ``_run`` runs it, ``_record`` labels and stores what it
        did and made. A failure in the first three is labeled from what was known by then
        (``_failed``): what the call read, and what it would have drawn and written.
        """
        if not self.poisoned:
            if message.target is not None:
                done = self._plain_call(message)
            else:
                done = self._function_call(message)
            if done is not NOT_PLAIN:
                return done  # type: ignore[return-value]
        if self.taken(message.result):
            return Failure(
                result=None,
                error=ErrorInfo(
                    code=UsageError.code,
                    op=message.op,
                    message=f"object id {message.result!r} is already in use; ids cannot be reused",
                ),
            )
        step = Step(message)
        try:
            self._resolve(step, buffers)
            self._admit(step)
            result = self._run(step)
        except InputFailed:
            return self._input_failed(step)
        except PublicRefusal as refusal:
            info = self._error_info(refusal.error, step.path)
            return self._fail(message.result, info, EMPTY, step.op)
        except Exception as exc:
            return self._failed(step, exc)
        return self._record(step, result)

    def _resolve(self, step: Step, buffers: list[memoryview]) -> None:
        """Name every input and find the op (even after an input turns out to be a failure:
        what the call would have used is what its failure stands for)."""
        message, inputs = step.message, step.inputs
        if message.target is None:
            step.op = allowlist.function(step.path)
        else:
            entry = self._name(message.target, inputs, target=True)
            if entry.failure is None:
                target = step.target = entry.value
                kind = allowlist.type_key(target)
                if kind is None:  # the owner knows the real type: no guessing across tables
                    raise NotAllowed(f"{type(target).__name__} objects have no remote methods")
                member = step.op = allowlist.member(kind, step.path)
                if member.shape_query and entry.shape_label is not None:
                    # a length or size of something whose shape depends on less than its
                    # values (a published dataset, a loader over one)
                    inputs.shape = entry.shape_label
                elif member.reads_target:
                    # an op that only adds to its target (list.append) does not read it, and
                    # can fail only by its arguments: a long list is not walked per append
                    inputs.walk.add(target)
                step.call_args = [target]
        step.args, step.kwargs = self._arguments(message, buffers, inputs)
        if inputs.failed:
            raise InputFailed
        found = step.op
        assert found is not None
        step.path = found.path
        found.check_kwargs(message.kwargs)
        if found.kind == "attribute" and (step.args or step.kwargs):
            raise ProtocolError(f"{found.path} is an attribute and takes no arguments")

    def _admit(self, step: Step) -> None:
        """What the call may do: what it draws and writes (a published object is never
        written), the label of what it makes, the memory it will take, the owner's policy."""
        op, target, inputs = step.op, step.target, step.inputs
        assert op is not None
        if op.random or op.writes is not None or op.owner_data:
            step.draws = effects.draws(op, target)
            step.extra = self._extra(op, step.draws)
            step.leaves = self.leaves() if op.writes == "graph" else []
            step.writes = effects.written(op, target, step.args, step.kwargs, step.leaves)
            self._refuse_protected(op, step.writes, inputs)
        # (otherwise, the common case: it reads its inputs, draws nothing and writes nothing)
        step.label = self._input_label(inputs) | step.extra
        # memory is counted before it is taken: what the op will make must fit
        step.planned = sizes.planned_bytes(op, target, step.args, step.kwargs)
        self.policy.check_call(CallCheck(self.peer, op, target, step.planned, bool(step.label)))

    def _run(self, step: Step) -> object:
        """Run the op (drawing from this scientist's own generator) and note what its result
        is derived from, when that can be told."""
        op, kwargs = step.op, step.kwargs
        assert op is not None and op.impl is not None
        if op.writes == "graph":
            # gradients go to the scientist's leaves only: the owner's never get any
            kwargs["inputs"] = step.leaves or [torch.zeros((), requires_grad=True)]
        if step.draws:
            with self.own_rng():
                result = op.impl(*step.call_args, *step.args, **kwargs)
        else:
            result = op.impl(*step.call_args, *step.args, **kwargs)
        inputs = step.inputs
        source = inputs.target if op.kind != "function" else next(iter(inputs.arguments), None)
        if source is not None and source.whole is not None:
            step.whole, step.shape = self._derivation(op, step.message, inputs, step.extra)
        return result

    def _record(self, step: Step, result: object) -> Failure | None:
        """Label what the call wrote and store what it made."""
        op, target, label = step.op, step.target, step.label
        assert op is not None
        self.actions_run += 1
        written = effects.walks_written(step.writes)  # as they are now
        self._after(op, step.writes, label, step.draws, step.inputs, written, step.extra)
        if op.writes is not None:
            if op.makes_leaves and isinstance(target, torch.Tensor | nn.Module):
                self.register_leaves(target)  # requires_grad_() can make a leaf
            for walk in written:  # what the write made (an optimizer's state, gradients)
                self._hold(walk.nodes.values(), bool(label), {})
            if isinstance(target, list | dict) and step.planned:  # what was put into a list
                self.quota.grow(target, step.planned)
        return self._store_result(
            step.message.result, result, label, op, step.inputs, target,
            whole=step.whole, shape=step.shape,
        )  # fmt: skip

    def _input_failed(self, step: Step) -> Failure | None:
        """An input is itself a failure: the call fails as the first failed input did. Had
        that not failed, the op would have run: what it would have drawn and written is
        labeled as if it had."""
        message, inputs = step.message, step.inputs
        label = self._input_label(inputs)
        info = inputs.failed[0].failure
        assert info is not None
        if label:
            self._would_have_run(
                step.op, message, step.target, step.args, step.kwargs, inputs, label
            )
        return self._fail(
            message.result, info, label, step.op, inputs, step.target, notify=False,
            name=message.op,
        )  # fmt: skip

    def _failed(self, step: Step, exc: Exception) -> Failure | None:
        """The call failed while it was resolved, admitted or run: its failure is labeled
        with what it read, and what it wrote (or would have) is labeled too."""
        message, op, inputs = step.message, step.op, step.inputs
        extra = self._extra(op, step.draws, failed=True)
        label = self._input_label(inputs) | extra
        if label and not step.writes:
            # failed before it knew what it writes, or which op it is (the target's type was
            # chosen privately): label what it would have written
            self._would_have_run(op, message, step.target, step.args, step.kwargs, inputs, label)
        self._after(op, step.writes, label, step.draws, inputs, extra=extra)
        info = self._error_info(exc, step.path)
        return self._fail(message.result, info, label, op, inputs, step.target, name=message.op)

    def _arguments(
        self, message: Call, buffers: list[memoryview], inputs: Inputs
    ) -> tuple[list[object], dict[str, object]]:
        """The call's arguments, decoded; plain numbers and strings (most arguments) as they
        came, checked as the decoder checks them, and references to objects (most of the
        rest) named as the decoder names them."""
        decoder: Decoder | None = None
        args = []
        for value in message.args:
            if plain_value(value):
                args.append(value)
                continue
            if (
                type(value) is dict
                and len(value) == 2
                and value.get("$") == "ref"
                and type(value.get("id")) is str
            ):
                args.append(self._use(value["id"], inputs))  # (a ref's only field, an id)
                continue
            if decoder is None:
                decoder = Decoder(buffers, lambda ref: self._use(ref, inputs))
            args.append(decoder.decode(value))
        if not message.kwargs:
            return args, {}
        if decoder is None:
            decoder = Decoder(buffers, lambda ref: self._use(ref, inputs))
        return args, {key: decoder.decode(value) for key, value in message.kwargs.items()}

    def _derivation(
        self, op: allowlist.Op, message: Call, inputs: Inputs, extra: Label
    ) -> tuple[Whole | None, Label | None]:
        """What a result is exactly (derivation.py): the Whole it is, and what its shape
        depends on when that is less than its label. Cheap unless an input is a published
        object or stands for one."""
        method = op.kind != "function"
        source = inputs.target if method else next(iter(inputs.arguments), None)
        if source is None or source.whole is None or (method and (message.args or message.kwargs)):
            return None, None
        others = extra | self.poisoned
        if op.wraps == "first":  # the wrapper's settings: every other input
            for entry in inputs.arguments[1:]:
                others = others | self.label_of(entry)
        whole = derivation.whole_of_call(op, message, inputs.target, inputs.arguments, not others)
        shape = None
        if op.wraps is not None:
            base = source.shape_label if source.shape_label is not None else self.label_of(source)
            shape = base | others
        return whole, shape

    @property
    def quota(self) -> PeerQuota:
        return self.store.quota(self.peer)

    def _hold(self, nodes: Iterable[object], private: bool, skip: Mapping[int, object]) -> None:
        """Charge the new state among ``nodes`` (never the owner's published objects; tensor
        objects carry nothing of their own: their storages are charged)."""
        protected = self.labels.is_protected
        quota = self.quota
        held = quota._held
        rest = []
        for node in nodes:
            kind = type(node)
            key = id(node)
            # (plain containers: hold_all would skip them; their contents are nodes of their own)
            if kind in _TENSOR_OBJECTS or kind in _PLAIN_CONTAINERS or key in skip:
                continue
            charge = held.get(key)
            if charge is not None and charge() is node:
                continue  # charged already (an optimizer's state, step after step)
            if type(node) is torch.UntypedStorage:  # the common case, directly
                if not protected(node):
                    quota.hold(node, node.nbytes(), private)
            elif not protected(node):
                rest.append(node)
        if rest:
            quota.hold_all(rest, private)

    def _input_label(self, inputs: Inputs) -> Label:
        state = self.labels.label_of(inputs.walk)
        return inputs.label() | state | self.poisoned

    def _reach_of_result(
        self, op: allowlist.Op | None, inputs: Inputs, target: object, *, name: str = ""
    ) -> tuple[tuple[weakref.ref[object], ...], bool]:
        """What a result of this call may stand for: what its inputs stand for, and the state
        it may share with them (by the op's alias class) whether or not it actually does.
        ``name``: the op's name, when which op it is is not known."""
        if op is None:
            # which op it would have been is not known: any of that name, on any type
            aliases: str | None = allowlist.ANY_TYPE_ALIASES.get(name, "all")
        elif op.kind != "function" and inputs.target_label:
            # which object the target is may be private, and so its type: any op of this
            # name may have run (as when the target had failed)
            aliases = allowlist.ANY_TYPE_ALIASES.get(op.name, "all")
        else:
            aliases = op.aliases
        if aliases is None or (
            op is not None
            and op.writes == "module_call"
            and self._public_layer(inputs)
            and not effects.may_return_input(target)
        ):
            # a new value (a layer that never hands back its input, whose kind is known to
            # the scientist): writes through it reach nothing else, whatever its inputs stood for
            return (), False
        nodes, unknown = inputs.reach()
        if (
            op is not None
            and aliases == "target"
            and isinstance(target, nn.Module)
            and not self._structure_label(inputs, target)
        ):
            # a model's member, parameters, state dict: which objects it hands back depends
            # on the model's structure and the arguments, not on its weights' values; when
            # neither depends on the owner's data it stands for exactly what it names
            shared = Walk()
        else:
            shared = effects.alias_candidates(op, target, inputs.values, aliases=aliases)
        nodes.extend(effects.mutable(shared.nodes.values()))
        found, too_many = effects.refs(nodes)
        return found, unknown or too_many or shared.unknown

    def _structure_label(self, inputs: Inputs, target: object) -> Label:
        """What the structure of a model an op makes or picks from may depend on: the handles
        named, the values of the arguments, and the layer objects (not the weights) of the
        models among its inputs (derivation.py)."""
        label = inputs.label() | self.poisoned
        for value in (target, *inputs.values):
            if value is None:
                continue
            walk = Walk().add(value)
            if walk.unknown:
                return UNKNOWN
            if not isinstance(value, nn.Module):
                label = label | self.labels.label_of(walk)
                continue
            for node in walk.nodes.values():
                if isinstance(node, nn.Module):
                    label = label | self.labels.label(node)
        return label

    def _store_result(
        self,
        result_id: str,
        result: object,
        label: Label,
        op: allowlist.Op,
        inputs: Inputs,
        target: object,
        *,
        whole: Whole | None = None,
        shape: Label | None = None,
    ) -> Failure | None:
        value = owner_containers(result) if isinstance(result, list | dict | tuple) else result
        reach: tuple[weakref.ref[object], ...] = ()
        reach_unknown = False
        made = Walk().add(value)
        entry_label = label  # what the handle itself depends on (the value, or its choice)
        if label:
            # label what the op made; what it only passed through (an input returned, the
            # storage a view shares) keeps its own label, and the entry's label covers the
            # choice of it
            skip = inputs.walk.nodes
            # (a tensor's walk holds tensors and storages only: no layer among them)
            layers = (
                {}
                if isinstance(value, torch.Tensor)
                else {
                    k: n
                    for k, n in made.nodes.items()
                    if isinstance(n, nn.Module) and k not in skip
                }
            )
            if layers:
                # the layer objects a call makes (settings, structure) depend on the inputs'
                # values and structure, not on the weights of models among them, nor on the
                # generator the new weights were drawn from (derivation.settings_label)
                structure = self._structure_label(inputs, target)
                self.labels.join_all(layers.values(), structure, skip={})
                skip = {**skip, **layers}
                if id(value) in layers:  # a model made here: its handle names it, whatever
                    entry_label = structure  # its weights hold (they carry their own labels)
            self.labels.join_all(made.nodes.values(), label, skip=skip)
            if entry_label:
                reach, reach_unknown = self._reach_of_result(op, inputs, target)
        self._hold(made.nodes.values(), bool(label), inputs.walk.nodes)
        quota = self.quota
        # (never touch .grad_fn: a Python wrapper on each node of a long chain makes torch free
        # the chain recursively, and a chain of ~50,000 overflows the C stack)
        if isinstance(value, torch.Tensor) and value.requires_grad and not value.is_leaf:
            graph = GRAPH_NODE_BYTES + sum(
                quota.take(n) for n in inputs.walk.nodes.values() if isinstance(n, torch.Tensor)
            )
            quota.hold(value, graph, bool(label))
        if quota.used(bool(label)) > quota.max_bytes:  # took more than planned: give it back
            del made, value, result
            error = QuotaExceeded(
                f"{op.path} made more than the owner allows: {quota.max_bytes:,} bytes per "
                "scientist; delete pointers you no longer need"
            )
            return self._fail(
                result_id, self._error_info(error, op.path), label, op, inputs, target
            )
        if type(value) is not torch.Tensor or (value.requires_grad and value.is_leaf):
            self.register_leaves(value)  # (a plain tensor is a leaf to register, or none)
        entry = StoredObject(
            id=self.key(result_id),
            value=value,
            owner=self.peer,
            nbytes=scalar_bytes(value),
            label=entry_label,
            op=op.name,
            private_account=bool(label),
            reach=reach,
            reach_unknown=reach_unknown,
            whole=None if whole is None else derivation.made(whole, value),
            shape_label=shape,
        )
        try:
            self.store.add_for_peer(self.peer, entry)
        except DuetError as exc:
            return self._fail(result_id, self._error_info(exc, op.path), label, op, inputs, target)
        return None

    def _fail(
        self,
        result_id: str,
        info: ErrorInfo,
        label: Label,
        op: allowlist.Op | None,
        inputs: Inputs | None = None,
        target: object = None,
        *,
        notify: bool = True,
        name: str = "",
    ) -> Failure | None:
        """Store a failure under ``result_id``; a Failure to send when the scientist may know.

        A private failure stands for what its result would have stood for (``reach``);
        ``name``: the op's name when which op it is was not known (its target had failed)."""
        reach: tuple[weakref.ref[object], ...] = ()
        reach_unknown = False
        if label and inputs is not None:
            reach, reach_unknown = self._reach_of_result(op, inputs, target, name=name)
        entry = StoredObject(
            id=self.key(result_id),
            value=None,
            owner=self.peer,
            nbytes=len(info.message),
            label=label,
            op=op.name if op is not None else "",
            failure=info,
            private_account=bool(label),
            reach=reach,
            reach_unknown=reach_unknown,
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
