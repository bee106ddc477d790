"""What one call carries through the owner's executor (executor.py, lanes.py).

- ``Step``: one call as the general way fills it in, step by step (resolve, admit, run,
  record), so that a failure at any step is labeled from what was known by then;
- ``Inputs``: what a call named and read (entries, their labels, the state walked);
- ``written_through``: the handles an op may write through, by its write effect;
- ``plain_value`` and ``NOT_PLAIN``: what the fast lanes take as it came, and what they answer
  when a call is not theirs.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..errors import DuetError
from ..protocol import allowlist
from ..protocol.messages import Call
from ..protocol.serde import MAX_INT_BITS
from . import effects
from .derivation import Whole
from .labels import EMPTY, Label, Walk
from .store import StoredObject

PLAIN = frozenset({int, float, str, bool, type(None)})  # JSON scalars: decoded as themselves
NOT_PLAIN = object()  # a fast lane's answer: not a call for it (lanes.py)


def plain_value(value: object) -> bool:
    """A JSON number, string, bool or None among a call's arguments: decoded as itself (an
    integer within the decoder's bound)."""
    kind = type(value)
    return kind in PLAIN and (kind is not int or cast(int, value).bit_length() <= MAX_INT_BITS)


class InputFailed(Exception):
    """An input of this call is itself a failure: the call fails the same way."""


class PublicRefusal(Exception):
    """A write into a published object named directly: refused, and the scientist may know."""

    def __init__(self, error: DuetError):
        self.error = error


class Step:
    """One call as the owner's pipeline fills it in (Executor.call): what ``_resolve`` named
    and read, what ``_admit`` decided it may do, what ``_run`` derived. Each failure handler
    reads what was known when the call failed."""

    __slots__ = (
        "args", "call_args", "draws", "extra", "inputs", "kwargs", "label", "leaves", "message",
        "op", "path", "planned", "shape", "target", "whole", "writes",
    )  # fmt: skip

    def __init__(self, message: Call):
        self.message = message
        self.path = message.op  # the op's own path once it is found (errors name it)
        self.inputs = Inputs()
        self.op: allowlist.Op | None = None
        self.target: object = None
        self.call_args: list[object] = []
        self.args: list[object] = []
        self.kwargs: dict[str, object] = {}
        self.draws = False  # it draws from the scientist's generator
        self.extra: Label = EMPTY  # what it reads besides its inputs
        self.leaves: list[torch.Tensor] = []  # backward's: the scientist's leaves
        self.writes: list[object] = []
        self.label: Label = EMPTY  # what what it makes depends on
        self.planned = 0  # bytes it will take
        self.whole: Whole | None = None
        self.shape: Label | None = None


class Inputs:
    """What one call named and read."""

    __slots__ = (
        "arguments", "entries", "entry_label", "failed", "shape", "target", "target_label",
        "values", "walk",
    )  # fmt: skip

    def __init__(self) -> None:
        self.entries: list[StoredObject] = []  # every entry named, failures included
        self.failed: list[StoredObject] = []
        self.entry_label: Label = EMPTY  # of the arguments' entries
        self.target: StoredObject | None = None
        self.target_label: Label = EMPTY
        # set when the op reads only its target's shape, and the owner knows what that depends
        # on: it then stands for the target's own labels
        self.shape: Label | None = None
        self.walk = Walk()  # the state read
        self.values: list[object] = []  # the argument values named (not the target)
        self.arguments: list[StoredObject] = []  # the entries the arguments named, in order

    def label(self) -> Label:
        """The labels of the entries named (not of the state they hold)."""
        return self.entry_label | (self.target_label if self.shape is None else self.shape)

    def reach(self, entries: list[StoredObject] | None = None) -> tuple[list[object], bool]:
        """The live objects the named entries (or ``entries``) stand for, and whether that is
        unknown."""
        nodes: list[object] = []
        unknown = False
        for entry in self.entries if entries is None else entries:
            unknown = unknown or entry.reach_unknown
            for ref in entry.reach:
                node = ref()
                if node is not None:
                    nodes.append(node)
        return nodes, unknown


def written_through(op: allowlist.Op, inputs: Inputs) -> list[StoredObject]:
    """The handles an op may write through (its write effect, allowlist.WRITES): what each of
    them stands for is labeled when it writes. A backward pass writes the gradients of every
    leaf, whatever handle it was called on; a layer writes its own buffers, and its input when
    it works in place (which layer it is may be private: then its input too)."""
    effect = op.writes
    if effect == "graph":
        return []
    target = [] if inputs.target is None else [inputs.target]
    if effect in ("target", "target_deep"):
        return target
    first = inputs.arguments[:1]
    if effect == "inplace_arg":
        return first if first else list(inputs.arguments)
    # module_call: the layer, and its input if it could be one that works in place
    layer = inputs.target
    if layer is not None and not layer.reach and not layer.reach_unknown:
        value = layer.value
        if isinstance(value, nn.Module) and not any(
            effects.inplace_flag(m) is not False for m in effects.layers_in(value)
        ):
            return target
    return target + list(inputs.arguments)
