"""What a call wrote, or would have written: labeled, and refused where it may not write.

The executor (executor.py) runs a call; these label its effects besides its result:

- ``after``: the label of what the op read joined into everything it wrote (its target, a
  model's buffers, the gradients of a backward pass), into the generator when it drew, into the
  graph label when it may decide whether a later backward pass runs, and into everything the
  handles it wrote through stand for;
- ``would_have_run``: the same for a call that did not run for a private reason (an input had
  failed): what it would have drawn and written is labeled as if it had run, so that its failure
  shows nowhere else;
- ``refuse_protected``: a write into the owner's published objects (or into state under
  review) is refused before the op runs.

Each is bound as a method of the Executor (``_after``, ``_would_have_run``...), as the lanes are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import NotAllowed
from ..protocol import allowlist
from ..protocol.messages import Call
from . import effects
from .calls import Inputs, PublicRefusal, written_through
from .labels import EMPTY, Label, Walk
from .store import OWNER, StoredObject

if TYPE_CHECKING:
    from .executor import Executor

log = logging.getLogger(__name__)


def would_have_run(
    ex: Executor,
    op: allowlist.Op | None,
    message: Call,
    target: object,
    args: list[object],
    kwargs: dict[str, object],
    inputs: Inputs,
    label: Label,
) -> None:
    """Label what ``message`` would have changed had it run (it did not, for a private
    reason): the generator if it would draw, what it would write, what its inputs stand
    for."""
    if op is not None:
        candidates = [op]
    elif message.target is not None:  # the target failed: any op of that name
        candidates = [t[message.op] for t in allowlist.TABLES.values() if message.op in t]
    else:
        candidates = []
    if any(effects.may_draw(c) for c in candidates):  # whether it would have drawn: private
        ex.rng_label = ex.rng_label | label
    if any(effects.may_change_graphs(c) for c in candidates):
        ex.graph_label = ex.graph_label | label
    writing = [c for c in candidates if c.writes not in (None, "rng")]
    if not writing:
        return
    # exactly what a run would have labeled (see after): what it writes, as written, and
    # everything its inputs stand for
    for candidate in writing:
        try:
            would = effects.written(candidate, target, args, kwargs, ex.leaves())
        except Exception:  # cannot tell: the target and everything it holds
            would = [effects.Deep(target)] if target is not None else []
        for item in would:
            walk = effects.walk_written(item)
            ex._wrote(walk)
            ex.labels.join_all(walk.nodes.values(), label, skip={})
    # what the handles it would have written through stand for (as a run would label)
    through: dict[int, StoredObject] = {}
    for candidate in writing:
        through.update((id(e), e) for e in written_through(candidate, inputs))
    nodes, unknown = inputs.reach(list(through.values()))
    if nodes or unknown:
        ex._label_reach(nodes, unknown, label)


def label_reach(ex: Executor, nodes: list[object], unknown: bool, label: Label) -> None:
    """Join ``label`` into everything held by ``nodes``; if that is unknown, into
    everything this scientist will ever see."""
    if unknown:
        log.info("a write through a handle of unknown reach: all %s sees is private", ex.peer)
        ex.poisoned = ex.poisoned | label
        if ex.on_write is not None:
            ex.on_write(None)
    for node in nodes:
        walk = Walk().add(node)
        ex._wrote(walk)
        ex.labels.join_all(walk.nodes.values(), label, skip={})


def wrote(ex: Executor, walk: Walk) -> None:
    if ex.on_write is not None:
        ex.on_write(None if walk.unknown else walk.nodes.values())


def layer_writes(
    ex: Executor, written: list[Walk] | None, writes: list[object], inputs: Inputs, extra: Label
) -> dict[int, nn.Module]:
    """Label the layer objects a call on a model writes with what its arguments and the
    handle carry; returns them (by id), so that they are not labeled again."""
    walks = written if written is not None else [effects.walk_written(w) for w in writes]
    layers = {
        key: node
        for walk in walks
        for key, node in walk.nodes.items()
        if isinstance(node, nn.Module)
    }
    own = inputs.label() | ex.labels.label_of(Walk().add(inputs.values)) | ex.poisoned
    ex.labels.join_all(layers.values(), own | extra, skip={})
    return layers


def public_layer(ex: Executor, inputs: Inputs) -> bool:
    """Whether the layer a call is made on, its kind, settings and flags, depend on
    nothing of the owner's (which layer the handle names included)."""
    layer = inputs.target
    if layer is None or layer.label or layer.reach or layer.reach_unknown:
        return False
    if inputs.walk.unknown:
        return False
    label = ex.labels.label
    return not any(
        label(node) for node in inputs.walk.nodes.values() if isinstance(node, nn.Module)
    )


def writes_nothing(ex: Executor, op: allowlist.Op, inputs: Inputs) -> bool:
    """Whether an op that wrote nothing could not have written anything whatever the
    owner's data: a layer whose settings, flags and handle depend on nothing of the
    owner's (a convolution has no buffers, in training or not), a function with
    ``inplace`` not asked for by a value of the owner's."""
    if op.writes == "module_call":
        return ex._public_layer(inputs)
    if op.writes == "inplace_arg":
        return not inputs.entry_label or all(not entry.label for entry in inputs.arguments[1:])
    return False


def refuse_protected(ex: Executor, op: allowlist.Op, writes: list[object], inputs: Inputs) -> None:
    for item in writes:
        if (
            isinstance(item, effects.Deep)
            and inputs.target is not None
            and item.obj is inputs.target.value
            and not inputs.values
            and not inputs.walk.unknown
        ):
            walk = inputs.walk  # the target and all it holds, walked already
        else:
            walk = effects.walk_written(item)
        found = ex.labels.protected_in(walk)
        if found is None:
            continue
        node, why = found
        what = "tensor" if isinstance(node, torch.UntypedStorage) else type(node).__name__
        if why == "published":
            error = NotAllowed(
                f"{op.path} would change the owner's published {what}; the owner's objects "
                "are read-only for scientists: work on a copy (x.clone(), model.copy())"
            )
        else:
            error = NotAllowed(
                f"{op.path} would change a {what} the owner is reviewing a request for; "
                "wait for the decision, or work on a copy"
            )
        root = effects.root(item)
        direct = any(e.owner == OWNER and e.value is root for e in inputs.entries)
        others_public = all(not e.label for e in inputs.entries if e.owner != OWNER)
        if direct and others_public:  # the scientist named it: nothing private in knowing
            raise PublicRefusal(error)
        raise error


def after(
    ex: Executor,
    op: allowlist.Op | None,
    writes: list[object],
    label: Label,
    draws: bool,
    inputs: Inputs,
    written: list[Walk] | None = None,
    extra: Label = EMPTY,
) -> None:
    """Label what the op wrote (also when it failed part way); ``written``: the walks of
    ``writes`` if the caller has them; ``extra``: what the op read besides its inputs (the
    generator, the owner's information)."""
    if op is None:
        return
    if writes and ex.on_write is not None:
        if written is None:
            written = [effects.walk_written(item) for item in writes]
        for walk in written:
            ex._wrote(walk)
    if op.writes == "rng":
        ex.rng_label = label  # a seed replaces the whole state
    elif draws or (label and op.random):
        # how much it drew may depend on what it read, and so may whether it drew (a
        # model's training flags)
        ex.rng_label = ex.rng_label | label
    if not label:
        return
    if effects.may_change_graphs(op):
        ex.graph_label = ex.graph_label | label
    layers: dict[int, nn.Module] = {}
    if op.writes == "target_deep" and isinstance(writes[0] if writes else None, effects.Deep):
        if isinstance(effects.root(writes[0]), nn.Module):
            # a model's own layer objects (settings, flags, structure) get what its
            # arguments carry (train(mode), which model), never its weights' label: the
            # weights do not flow into the settings (derivation.settings_label)
            layers = ex._layer_writes(written, writes, inputs, extra)
    for walk in written if written is not None else map(effects.walk_written, writes):
        ex.labels.join_all(walk.nodes.values(), label, skip=layers)
    if op.writes not in (None, "rng") and (writes or not ex._writes_nothing(op, inputs)):
        # writing through a handle that stands for more than its value: all of it
        nodes, unknown = inputs.reach(written_through(op, inputs))
        if nodes or unknown:
            ex._label_reach(nodes, unknown, label)
