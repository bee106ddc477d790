"""The executor's fast lanes: the common calls, run as the general way would run them.

Most of what a scientist sends is a method of one of its own plain tensors (``x + 1``), or a
torch function on its own tensors (``F.relu(x)``), labeled or not. Each lane does exactly what
``Executor.call`` does for such a call, without the machinery the general case needs; anything
else it answers NOT_PLAIN before running, and the general way takes it
(``tests/test_fast_lane.py`` and ``tests/test_function_lane.py`` compare both ways). The
executor binds them as its methods ``_plain_call``, ``_own_tensor`` and ``_function_call``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch

from ..errors import DuetError, QuotaExceeded
from ..protocol import allowlist
from ..protocol.messages import Call, Failure
from . import effects, sizes
from .calls import NOT_PLAIN, Inputs, plain_value
from .labels import EMPTY
from .policy import CallCheck
from .quota import GRAPH_NODE_BYTES
from .store import StoredObject

if TYPE_CHECKING:
    from .executor import Executor

LANE_WRITES = (None, "inplace_arg")  # the write effects of the functions function_call takes


def plain_call(ex: Executor, message: Call) -> Failure | object | None:
    """The fast lane for most of what a scientist sends: a method of one of its own plain
    tensors, with numbers and its own plain tensors as arguments, that reads them and
    draws, writes and depends on nothing else (``x + 1``, ``x.relu()``, ``x * y``). It does
    exactly what ``Executor.call`` does for such a call, without the machinery the general case
    needs (names of published objects, failures, labels to join, writes, reach); anything
    else returns NOT_PLAIN and goes the general way."""
    objects = ex.store._objects
    peer = ex.peer
    entry = objects.get(f"{peer}:{message.target}")
    if (
        entry is None
        or entry.owner != peer
        or entry.label
        or entry.failure is not None
        or type(entry.value) is not torch.Tensor
        or message.target in objects  # a published object of the same name is named first
    ):
        return NOT_PLAIN
    op = allowlist.TABLES["Tensor"].get(message.op)
    if (
        op is None
        or op.writes is not None
        or op.random
        or op.owner_data
        or op.kind != "method"
        or message.kwargs
    ):
        return NOT_PLAIN
    target = entry.value
    result_id = message.result
    key = f"{peer}:{result_id}"
    if key in objects or result_id in ex._overflow or result_id in objects:
        return NOT_PLAIN  # taken: the general way says so
    labels = ex.labels
    if target.is_leaf and target.grad is not None:
        return NOT_PLAIN  # its gradient is part of what it holds
    storage = target.untyped_storage()
    if labels.label(storage) or labels.label(target):
        return NOT_PLAIN
    read = {id(target): target, id(storage): storage}
    args: list[object] = []
    for value in message.args:
        if plain_value(value):
            args.append(value)
            continue
        other = own_tensor(ex, value)
        if other is None or other.label:
            return NOT_PLAIN
        tensor = cast(torch.Tensor, other.value)
        other_storage = tensor.untyped_storage()
        if labels.label(other_storage) or labels.label(tensor):
            return NOT_PLAIN
        read[id(tensor)] = tensor
        read[id(other_storage)] = other_storage
        args.append(tensor)
    try:
        planned = sizes.planned_bytes(op, target, args, {})
        ex.policy.check_call(CallCheck(peer, op, target, planned, False))
        assert op.impl is not None
        result = op.impl(target, *args)
    except Exception as exc:  # a failure of the scientist's own op: told at once
        return ex._fail(result_id, ex._error_info(exc, op.path), EMPTY, op)
    ex.actions_run += 1
    if type(result) is not torch.Tensor or (result.is_leaf and result.grad is not None):
        inputs = Inputs()
        inputs.walk.nodes.update(read)
        return ex._store_result(result_id, result, EMPTY, op, inputs, target)
    quota = ex.quota
    made = result.untyped_storage()
    if id(made) not in read:
        quota.hold(made, made.nbytes(), False)
    if result.requires_grad and not result.is_leaf:
        graph = GRAPH_NODE_BYTES + sum(
            quota.take(n) for n in read.values() if isinstance(n, torch.Tensor)
        )
        quota.hold(result, graph, False)
    if quota.own_bytes > quota.max_bytes:  # took more than planned: give it back
        del made, result
        error = QuotaExceeded(
            f"{op.path} made more than the owner allows: {quota.max_bytes:,} bytes per "
            "scientist; delete pointers you no longer need"
        )
        return ex._fail(result_id, ex._error_info(error, op.path), EMPTY, op)
    if result.requires_grad and result.is_leaf:
        ex.register_leaves(result)
    try:
        ex.store.add_for_peer(peer, StoredObject(id=key, value=result, owner=peer, op=op.name))
    except DuetError as exc:
        return ex._fail(result_id, ex._error_info(exc, op.path), EMPTY, op)
    return None


def own_tensor(ex: Executor, value: object) -> StoredObject | None:
    """The entry a reference among a call's arguments names, when a fast lane may take it:
    one of the scientist's own plain tensors, not a failure, holding no gradient (a leaf's
    gradient is part of what it holds), its name no owner's object's (that is named
    first); None otherwise."""
    if type(value) is not dict or len(value) != 2 or value.get("$") != "ref":
        return None
    object_id = value.get("id")
    objects = ex.store._objects
    if type(object_id) is not str or object_id in objects:
        return None
    entry = objects.get(f"{ex.peer}:{object_id}")
    if (
        entry is None
        or entry.owner != ex.peer
        or entry.failure is not None
        or type(entry.value) is not torch.Tensor
    ):
        return None
    tensor = entry.value
    if tensor.is_leaf and tensor.grad is not None:
        return None
    return entry


def function_call(ex: Executor, message: Call) -> Failure | object | None:
    """The fast lane for a torch function on the scientist's own tensors, labeled or not
    (``F.relu(x)``, ``F.max_pool2d(x, 2)``, ``F.nll_loss(out, target)``), with plain
    numbers and strings besides: one that draws nothing, reads nothing else of the owner's,
    writes nothing (``inplace`` not asked for) and stands for no published object.

    It names, labels, checks and runs the call as ``Executor.call`` does, then stores its result
    with the same ``_store_result``; what ``_admit`` and ``_after`` would add for such a
    call is only the graph label (an op that may write in place). Anything else returns
    NOT_PLAIN before running; so does a call that fails, which the general way then runs
    again and reports (it changed nothing: it writes and draws nothing)."""
    op = allowlist.FUNCTIONS.get(message.op)
    if (
        op is None
        or op.random
        or op.owner_data
        or op.wraps is not None
        or op.makes_leaves
        or op.writes not in LANE_WRITES
        or op.impl is None
    ):
        return NOT_PLAIN
    objects = ex.store._objects
    peer = ex.peer
    result_id = message.result
    if f"{peer}:{result_id}" in objects or result_id in ex._overflow or result_id in objects:
        return NOT_PLAIN  # taken: the general way says so
    inputs = Inputs()
    args: list[object] = []
    for value in message.args:
        if plain_value(value):
            args.append(value)
            continue
        entry = own_tensor(ex, value)
        if entry is None or entry.whole is not None:
            return NOT_PLAIN
        tensor = entry.value
        inputs.entries.append(entry)
        inputs.arguments.append(entry)
        if entry.label:
            inputs.entry_label = inputs.entry_label | entry.label
        inputs.walk.add(tensor)
        inputs.values.append(tensor)
        args.append(tensor)
    kwargs = message.kwargs
    if not all(plain_value(value) for value in kwargs.values()):
        return NOT_PLAIN
    kwargs = dict(kwargs)
    try:
        op.check_kwargs(kwargs)
        if op.writes is not None and (
            effects.written(op, None, args, kwargs, []) or not ex._writes_nothing(op, inputs)
        ):
            return NOT_PLAIN  # it writes its input, or which input it writes is private
        label = ex._input_label(inputs)
        planned = sizes.planned_bytes(op, None, args, kwargs)
        ex.policy.check_call(CallCheck(peer, op, None, planned, bool(label)))
        result = op.impl(*args, **kwargs)
    except Exception:
        return NOT_PLAIN
    ex.actions_run += 1
    if label and effects.may_change_graphs(op):
        ex.graph_label = ex.graph_label | label
    return ex._store_result(result_id, result, label, op, inputs, None)
