"""Python's own values on the owner's side: numbers, strings, tuples, lists, dicts, devices, and
the ``python.*`` constructors (``duet.python.List()``).

Numbers and strings are values (nothing to alias). Python's numbers and strings hold the
interpreter while they compute: an exponent or a repeat count from the peer could stall the owner
for hours, so such results are bounded before they are computed.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

from .declare import (
    ARITHMETIC,
    COMPARISONS,
    INPLACE_ARITHMETIC,
    OPERATORS,
    attributes,
    call_method,
    function,
    item_kind,
    methods,
)
from .facts import Op

MAX_INT_BITS = 1 << 16
MAX_STRING = 1 << 20


def _int_bits(value: object) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _refuse_int(bits: float) -> None:
    if bits > MAX_INT_BITS:
        raise OverflowError(
            f"the result would be an integer of about {int(bits):,} bits; the owner computes "
            f"with integers of at most {MAX_INT_BITS:,} bits"
        )


def _checked_pow(a: object, b: object) -> object:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        _refuse_int(_int_bits(a) * b)
    return operator.pow(a, b)


def _checked_mul(a: object, b: object) -> object:
    if isinstance(a, int) and isinstance(b, int):
        _refuse_int(_int_bits(a) + _int_bits(b))
    elif isinstance(a, str | bytes) and isinstance(b, int):
        _refuse_string(len(a) * b)
    elif isinstance(b, str | bytes) and isinstance(a, int):
        _refuse_string(len(b) * a)
    return operator.mul(a, b)


def _refuse_string(length: int) -> None:
    if length > MAX_STRING:
        raise OverflowError(
            f"the result would be a string of {length:,} characters; the owner makes strings "
            f"of at most {MAX_STRING:,}"
        )


def _checked_add(a: object, b: object) -> object:
    if isinstance(a, str) and isinstance(b, str):
        _refuse_string(len(a) + len(b))
    return operator.add(a, b)


# old, new, count: whatever the peer sent; str.replace itself refuses what is not a str or int
def _checked_replace(s: str, old: Any, new: Any, count: Any = -1) -> str:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        times = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _refuse_string(len(s) + times * (len(new) - len(old)))
    return s.replace(old, new, count)


_CHECKED: dict[str, Callable[..., object]] = {
    "__pow__": _checked_pow, "__rpow__": lambda a, b: _checked_pow(b, a),
    "__mul__": _checked_mul, "__rmul__": lambda a, b: _checked_mul(b, a),
    "__imul__": _checked_mul, "__add__": _checked_add, "__radd__": lambda a, b: _checked_add(b, a),
    "__iadd__": _checked_add, "replace": _checked_replace,
}  # fmt: skip


def _bounded(table: dict[str, Op]) -> dict[str, Op]:
    """Each op whose result can grow without bound, with its checked implementation."""
    return {
        name: dataclasses.replace(op, impl=_CHECKED[name]) if name in _CHECKED else op
        for name, op in table.items()
    }


# values: nothing to alias, nothing of size made ("nothing")
NUMBER = _bounded({
    **methods("Number", [*ARITHMETIC, *INPLACE_ARITHMETIC], "Number", size="nothing",
              aliases=None),
    **methods("Number", COMPARISONS, "Bool", size="nothing", aliases=None),
})  # fmt: skip
BOOL = {**NUMBER, **methods("Bool", ["__and__", "__or__", "__xor__"], "Bool", size="nothing",
                            aliases=None)}  # fmt: skip
STRING = _bounded({
    **methods("String", ["__add__", "__radd__", "__mul__", "__getitem__", "__iadd__", "upper",
                         "lower", "strip", "replace", "title", "capitalize"], "String",
              size="nothing", aliases=None),
    **methods("String", ["__len__"], "Number", size="nothing", aliases=None, shape_query=True),
    **methods("String", ["find", "count"], "Number", size="nothing", aliases=None),
    **methods("String", ["__contains__", "startswith", "endswith", *COMPARISONS], "Bool",
              size="nothing", aliases=None),
    **methods("String", ["split"], "List", size="nothing", aliases=None),
})  # fmt: skip


def _sequence(*, length_is_shape: bool) -> dict[str, Op]:
    """What tuples, sizes and lists share (``l[i]`` is one of ``l``'s items)."""
    return {
        **methods("Sequence", ["__getitem__"], item_kind, size="nothing", aliases="target"),
        **methods("Sequence", ["__len__"], "Number", size="nothing", aliases=None,
                  shape_query=length_is_shape),
        **methods("Sequence", ["index", "count"], "Number", size="nothing", aliases=None),
        **methods("Sequence", ["__contains__", "__eq__", "__ne__"], "Bool", size="nothing",
                  aliases=None),
    }  # fmt: skip


TUPLE = {
    **_sequence(length_is_shape=True),
    # a tuple made of both operands' items
    **methods("Tuple", ["__add__"], "Tuple", size="nothing", aliases="all"),
}  # fmt: skip
SIZE = {
    **_sequence(length_is_shape=False),
    **methods("Size", ["numel"], "Number", size="nothing", aliases=None),
}
# a list's own changes write it (mutates); those that do not read it (append) leave its
# contents out of the result
LIST = {
    **_sequence(length_is_shape=True),
    **{name: Op(f"List.{name}", "method", "None", True, call_method(name), reads_target=False,
                size="insert") for name in ("append", "insert")},
    "extend": Op("List.extend", "method", "None", True, call_method("extend"), reads_target=False,
                 size="extend"),
    "reverse": Op("List.reverse", "method", "None", True, call_method("reverse"), size="nothing"),
    "clear": Op("List.clear", "method", "None", True, call_method("clear"), reads_target=False,
                size="nothing"),
    "pop": Op("List.pop", "method", None, True, call_method("pop"), aliases="target",
              size="nothing"),
    # a list made of both operands' items
    "__add__": Op("List.__add__", "method", "List", False, OPERATORS["__add__"], aliases="all",
                  size="insert"),
    "__iadd__": Op("List.__iadd__", "method", "List", True, OPERATORS["__iadd__"], aliases="all",
                   size="extend"),
    "copy": Op("List.copy", "method", "List", False, call_method("copy"), aliases="target",
               size="nothing"),
    "__setitem__": Op("List.__setitem__", "method", "None", True, OPERATORS["__setitem__"],
                      aliases="target", size="insert"),
}  # fmt: skip
DICT = {
    **methods("Dict", ["__getitem__", "get"], None, size="nothing", aliases="target"),
    "pop": Op("Dict.pop", "method", None, True, call_method("pop"), aliases="target",
              size="nothing"),
    **methods("Dict", ["__len__"], "Number", size="nothing", aliases=None, shape_query=True),
    **methods("Dict", ["__contains__"], "Bool", size="nothing", aliases=None),
    "keys": Op("Dict.keys", "method", "List", False, lambda d: list(d.keys()), aliases="target",
               size="nothing"),
    "values": Op("Dict.values", "method", "List", False, lambda d: list(d.values()),
                 aliases="target", size="nothing"),
    "items": Op("Dict.items", "method", "List", False, lambda d: list(d.items()),
                aliases="target", size="nothing"),
    "__setitem__": Op("Dict.__setitem__", "method", "None", True, OPERATORS["__setitem__"],
                      reads_target=False, aliases="target", size="insert"),
    "update": Op("Dict.update", "method", "None", True, call_method("update"), reads_target=False,
                 size="update"),
}  # fmt: skip
DEVICE = attributes("device", {"type": "String", "index": "Number"}, size="nothing", aliases=None)


def _typed(cls: type, kind: str) -> Callable[..., object]:
    def make(*args: object) -> object:
        value = cls(*args)
        if kind == "Number" and cls is float:
            return float(value)
        return value

    return make


FUNCTIONS: dict[str, Op] = {
    **{
        f"python.{name}": function(f"python.{name}", _typed(pytype, kind), kind, size="values")
        for name, pytype, kind in (("Float", float, "Number"), ("Int", int, "Number"),
                                   ("Bool", bool, "Bool"), ("String", str, "String"))
    },
    # containers of their arguments' items
    **{
        f"python.{name}": function(f"python.{name}", _typed(pytype, name), name, aliases="args",
                                   size="collect_pairs" if pytype is dict else "collect")
        for name, pytype in (("List", list), ("Dict", dict), ("Tuple", tuple))
    },
}  # fmt: skip
