"""One allowlisted operation and its facts, as one frozen record.

Everything the owner needs to know about an op is a field of its ``Op``, set where the op is
declared (one module per family in this package): what it may write besides its result, what
its result may share with its inputs, whether it draws from the random number generator, how
its allocation is estimated before it runs. The owner binds the names to what they denote
(owner/effects.py for writes and aliases, owner/sizes.py for size rules): this package imports
nothing of the owner, so a fact is a name here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypedDict, cast, get_args

from ...errors import NotAllowed

# What a pointer knows of its object besides its kind, read and written by the declarations
# below (a tuple's length and items, a layer's path, a dataset's fields): plain values only.
Meta = dict[str, object]
# A result's kind, or a tuple of the kinds it holds (declare.kind_of)
KindSpec = str | None | tuple["KindSpec", ...]
# (the target's meta, the call's arguments, its keyword arguments) -> (the result's kind, meta);
# the arguments may be of any type and are only inspected
ResultKind = Callable[[Meta, tuple[object, ...], dict[str, object]], tuple[str | None, Meta]]
Returns = str | None | ResultKind

# What an op may change besides making its result, so that the owner can label (and protect)
# everything it writes. The owner binds these names to the objects they denote.
#   "target"       the object it is called on (a tensor's storage, a list, an iterator)
#   "target_deep"  that object and everything it holds (a model's parameters, an optimizer's state)
#   "graph"        the gradients of the leaves of the autograd graph behind the target (backward)
#   "module_call"  a model's buffers (in training mode), and its input when a layer works in place
#   "inplace_arg"  its first argument, when called with ``inplace=True``
#   "rng"          the random number generator's state (manual_seed)
Write = Literal["target", "target_deep", "graph", "module_call", "inplace_arg", "rng"]
WRITES: frozenset[str] = frozenset(get_args(Write))
# What an op's result may share with its inputs, so the owner knows which existing state a
# handle may stand for: None (something new), "target" (a view of its target, or something
# taken out of it), "args" (its arguments, or a container holding them), "all" (either).
Alias = Literal["target", "args", "all"]
ALIASES: frozenset[str] = frozenset(get_args(Alias))

# How the owner estimates what an op allocates before it runs (owner/sizes.py binds each name
# to its estimate; tests/test_op_facts.py checks that every name is bound). "nothing": the op
# makes nothing new of any size (a number, a bool, something it already held), or what it makes
# is bounded by what was sent and charged once made.
SizeRule = Literal[
    "nothing",
    # tensor methods
    "elementwise",  # its target's size (x + 1), or its operands' broadcast
    "tolist", "repeat", "pieces", "selection", "matmul", "rmatmul", "view", "reshape", "index",
    # torch functions
    "broadcast",  # its tensor arguments' broadcast
    "creation", "full", "randint", "arange", "linspace", "eye", "like", "data", "legacy_tensor",
    "numpy_copy", "concat", "matmul_args", "linear", "layer", "optimizer_state",
    # python's containers and values
    "insert", "extend", "update", "collect", "collect_pairs", "values",
    # models, optimizers, loaders, distributions
    "forward", "module_copy", "module_move", "optimizer_step", "batch", "loader_iterator",
    "distribution",
]  # fmt: skip
SIZE_RULES: frozenset[str] = frozenset(get_args(SizeRule))


@dataclass(frozen=True)
class Op:
    """One operation on the allowlist: its path, how it is called, what it returns, and its facts.

    Facts left at their defaults mean "none": no write, no draw, a result that shares nothing.
    ``size`` has no usable default (None: undeclared, which tests/test_op_facts.py refuses)."""

    path: str
    kind: str  # "function" | "method" | "attribute"
    returns: Returns = "Tensor"
    mutates: bool = False
    # called with values of any type (checked by the owner), returns any value
    impl: Callable[..., object] | None = field(default=None, compare=False, repr=False)
    kwargs: frozenset[str] | None = None  # allowed keyword names, None: any
    # the result is the owner's own information (its files, its machine), private however
    # it was asked for
    owner_data: bool = False
    writes: Write | None = None  # what else the op changes (set to "target" when it mutates)
    random: bool = False  # draws from the random number generator
    # False for ops that change their target without reading it (list.append): the target's
    # contents do not flow into the result, so a long list is not walked on every append
    reads_target: bool = True
    aliases: Alias | None = None  # what the result may share with the inputs
    size: SizeRule | None = None  # how its allocation is estimated (owner/sizes.py)
    # what an automatic decision may rely on (owner/derivation.py):
    # the result depends on its target's shape alone (a length, a size)
    shape_query: bool = False
    # the result is its target's value in another form (item, detach...): it tells nothing more
    conversion: bool = False
    # the result stands for one of its inputs, whole ("first" argument or "target"): a loader
    # over a dataset, that loader's iterator
    wraps: str | None = None
    # it can make new leaves (tensors gradients flow into) in what it is called on: a model's
    # requires_grad_(), its moves to another device or precision (the owner registers them)
    makes_leaves: bool = False
    # the op's short name, as a tag on what it makes (``mean``, ``__len__``, ``nll_loss``)
    name: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.path.rsplit(".", 1)[-1])
        if self.writes is None and self.mutates:
            object.__setattr__(self, "writes", "target")
        if self.writes is not None and self.writes not in WRITES:
            raise ValueError(f"unknown write effect {self.writes!r} for {self.path}")
        if self.aliases is not None and self.aliases not in ALIASES:
            raise ValueError(f"unknown alias class {self.aliases!r} for {self.path}")
        if self.size is not None and self.size not in SIZE_RULES:
            raise ValueError(f"unknown size rule {self.size!r} for {self.path}")

    def check_kwargs(self, names: Iterable[str]) -> None:
        """Refuse keyword arguments the op does not allow (``out=`` never: it writes elsewhere)."""
        for name in names:
            if name == "out" or (self.kwargs is not None and name not in self.kwargs):
                raise NotAllowed(f"keyword argument {name!r} is not allowed for {self.path}")

    def result_kind(
        self, receiver_meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> tuple[str | None, Meta]:
        if callable(self.returns):
            return self.returns(receiver_meta, args, kwargs)
        if self.returns == "self":
            # the client puts the target's kind (a type key or None) in its meta
            return cast("str | None", receiver_meta.get("kind")), {}
        return self.returns, {}


class OpFacts(TypedDict, total=False):
    """An op's facts by keyword, as the declaring helpers (declare.function, nn's _method) pass
    them on to ``Op``: its fields besides path, kind, returns, impl and size."""

    mutates: bool
    kwargs: frozenset[str] | None
    owner_data: bool
    writes: Write | None
    random: bool
    reads_target: bool
    aliases: Alias | None
    shape_query: bool
    conversion: bool
    wraps: str | None
    makes_leaves: bool
