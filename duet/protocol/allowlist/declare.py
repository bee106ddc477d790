"""How the family modules declare their ops: methods, attributes and functions with their facts,
Python's operators, and the result kinds that depend on the call."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Unpack, cast

from .facts import Alias, KindSpec, Meta, Op, OpFacts, Returns, SizeRule, Write


def call_method(name: str) -> Callable[..., object]:
    # `name` is a fixed key of a family's table, never a peer's string.
    def call(self: object, *args: object, **kwargs: object) -> object:
        return getattr(self, name)(*args, **kwargs)

    return call


def call_for_effect(name: str) -> Callable[..., None]:
    """Calls ``name`` on its target and returns None (``train``, ``zero_grad``, ``step``)."""

    def run(target: object, *args: object, **kwargs: object) -> None:
        getattr(target, name)(*args, **kwargs)
        return None

    return run


def read_attribute(name: str) -> Callable[..., object]:
    def read(self: object) -> object:
        return getattr(self, name)

    return read


OPERATORS: dict[str, Callable[..., object]] = {
    "__add__": operator.add, "__radd__": lambda a, b: operator.add(b, a),
    "__sub__": operator.sub, "__rsub__": lambda a, b: operator.sub(b, a),
    "__mul__": operator.mul, "__rmul__": lambda a, b: operator.mul(b, a),
    "__truediv__": operator.truediv, "__rtruediv__": lambda a, b: operator.truediv(b, a),
    "__floordiv__": operator.floordiv, "__rfloordiv__": lambda a, b: operator.floordiv(b, a),
    "__mod__": operator.mod, "__rmod__": lambda a, b: operator.mod(b, a),
    "__pow__": operator.pow, "__rpow__": lambda a, b: operator.pow(b, a),
    "__matmul__": operator.matmul, "__rmatmul__": lambda a, b: operator.matmul(b, a),
    "__and__": operator.and_, "__or__": operator.or_, "__xor__": operator.xor,
    "__lt__": operator.lt, "__le__": operator.le, "__gt__": operator.gt, "__ge__": operator.ge,
    "__eq__": operator.eq, "__ne__": operator.ne,
    "__neg__": operator.neg, "__abs__": operator.abs, "__invert__": operator.invert,
    "__getitem__": operator.getitem, "__contains__": operator.contains, "__len__": len,
    "__iadd__": operator.iadd, "__isub__": operator.isub, "__imul__": operator.imul,
    "__itruediv__": operator.itruediv,
    "__setitem__": lambda a, k, v: operator.setitem(a, k, v),
}  # fmt: skip
INPLACE_OPERATORS = frozenset({"__iadd__", "__isub__", "__imul__", "__itruediv__", "__setitem__"})
ARITHMETIC = (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
    "__neg__", "__abs__",
)  # fmt: skip
INPLACE_ARITHMETIC = ("__iadd__", "__isub__", "__imul__", "__itruediv__")
COMPARISONS = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")


def in_place(name: str) -> bool:
    """torch's naming: ``add_`` and ``x += y`` change their target."""
    return (name.endswith("_") and not name.endswith("__")) or name in INPLACE_OPERATORS


def methods(
    type_name: str,
    names: Iterable[str],
    returns: Returns = "Tensor",
    *,
    size: SizeRule,
    aliases: Alias | None,
    random: bool = False,
    writes: Write | None = None,
    reads_target: bool = True,
    shape_query: bool = False,
    conversion: bool = False,
    makes_leaves: bool = False,
    impl: Callable[..., object] | None = None,
) -> dict[str, Op]:
    """Methods of one type that share their facts (a method writes its target when its name says
    it works in place). Each is called by a fixed name, or through ``impl`` when given."""
    return {
        name: Op(
            f"{type_name}.{name}",
            "method",
            returns,
            in_place(name),
            impl or OPERATORS.get(name) or call_method(name),
            writes=writes,
            random=random,
            reads_target=reads_target,
            aliases=aliases,
            size=size,
            shape_query=shape_query,
            conversion=conversion,
            makes_leaves=makes_leaves,
        )
        for name in names
    }


def attributes(
    type_name: str,
    names: dict[str, Returns],
    *,
    size: SizeRule,
    aliases: Alias | None,
    shape_query: bool = False,
) -> dict[str, Op]:
    return {
        name: Op(
            f"{type_name}.{name}",
            "attribute",
            returns,
            False,
            read_attribute(name),
            aliases=aliases,
            size=size,
            shape_query=shape_query,
        )
        for name, returns in names.items()
    }


def function(
    path: str,
    impl: Callable[..., object],
    returns: Returns = "Tensor",
    *,
    size: SizeRule,
    **facts: Unpack[OpFacts],
) -> Op:
    return Op(path, "function", returns, impl=impl, size=size, **facts)


# ---------------------------------------------------------------- result kinds


def kind_of(spec: KindSpec) -> tuple[str | None, Meta]:
    """A result's kind and meta from a spec: a kind, or a tuple of specs (what a tuple holds,
    so that ``h, (h_n, c_n) = lstm(x)`` unpacks without asking the owner)."""
    if isinstance(spec, tuple):
        items = [list(kind_of(item)) for item in spec]
        return "Tuple", {"length": len(items), "items": items}
    return spec, {}


def item_kind(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    # kind_of's [kind, meta] pairs (two-item lists, unpacked as pairs)
    items = cast("list[tuple[str | None, Meta]] | None", meta.get("items"))
    if items and args and type(args[0]) is int and -len(items) <= args[0] < len(items):
        kind, item_meta = items[args[0]]
        return kind, dict(item_meta)
    return None, {}


def pair_if_dim(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    if args or "dim" in kwargs:
        return kind_of(("Tensor", "Tensor"))
    return "Tensor", {}


def pair(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return kind_of(("Tensor", "Tensor"))
