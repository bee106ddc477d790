"""Tensor methods and attributes (``x.add(y)``, ``x[0]``, ``x.shape``), each with its facts.

An op's size rule says how the owner estimates what it makes (owner/sizes.py): most make their
target's size, or their operands' broadcast ("elementwise"); views make nothing. A method that
works in place (``add_``, ``+=``) writes its target and hands it back.
"""

from __future__ import annotations

from ..devices import tensor_move
from .declare import (
    ARITHMETIC,
    COMPARISONS,
    INPLACE_ARITHMETIC,
    attributes,
    call_method,
    methods,
    pair,
    pair_if_dim,
)
from .facts import Meta, Op


def _size_kind(
    meta: Meta, args: tuple[object, ...], kwargs: dict[str, object]
) -> tuple[str | None, Meta]:
    return ("Number", {}) if args or kwargs else ("Size", {})


TENSOR: dict[str, Op] = {
    # a new tensor, of its target's size or its operands' broadcast
    **methods("Tensor", [
        "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "sin", "cos",
        "sum", "mean", "std", "var", "prod", "cumsum", "argmax", "argmin", "amax", "amin", "norm",
        "eq", "ne", "lt", "le", "gt", "ge", "softmax", "log_softmax", "relu", "sigmoid", "tanh",
        "clamp", "round", "floor", "ceil", "sign", "masked_fill", "all", "any", "argsort",
        "square", "maximum", "minimum", "where",
        *ARITHMETIC, *COMPARISONS, "__and__", "__or__", "__xor__", "__invert__",
    ], size="elementwise", aliases=None),
    **methods("Tensor", ["matmul", "mm", "__matmul__"], size="matmul", aliases=None),
    **methods("Tensor", ["__rmatmul__"], size="rmatmul", aliases=None),
    **methods("Tensor", ["repeat"], size="repeat", aliases=None),
    **methods("Tensor", ["index_select", "gather"], size="selection", aliases=None),
    **methods("Tensor", ["clone"], size="elementwise", aliases=None, conversion=True),
    # views: they share their target's storage and make nothing of size
    **methods("Tensor", ["t", "transpose", "permute", "view", "view_as", "squeeze", "unsqueeze",
                         "expand", "expand_as"], size="view", aliases="target"),
    **methods("Tensor", ["detach"], size="view", aliases="target", conversion=True),
    **methods("Tensor", ["reshape"], size="reshape", aliases="target"),
    # may copy (a reshape of a non-contiguous tensor, a change of type) or hand back the target
    **methods("Tensor", ["reshape_as", "flatten", "long", "int", "bool", "half", "type_as"],
              size="elementwise", aliases="target"),
    **methods("Tensor", ["float", "double", "contiguous", "cpu"], size="elementwise",
              aliases="target", conversion=True),
    **methods("Tensor", ["chunk", "split"], size="pieces", aliases="target"),
    **methods("Tensor", ["__getitem__"], size="index", aliases="target"),
    # the owner's devices only; cuda where it has one
    **methods("Tensor", ["to"], size="elementwise", aliases="target", impl=tensor_move("to")),
    **methods("Tensor", ["cuda"], size="elementwise", aliases="target", impl=tensor_move("cuda")),
    # in place: they write their target and hand it back
    **methods("Tensor", [
        "add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "clamp_", "abs_", "unsqueeze_",
        "squeeze_", "masked_fill_", "relu_", *INPLACE_ARITHMETIC, "__setitem__",
    ], size="elementwise", aliases="target"),
    **methods("Tensor", ["normal_", "uniform_"], random=True, size="elementwise", aliases="target"),
    **methods("Tensor", ["requires_grad_"], "self", size="elementwise", aliases="target",
              makes_leaves=True),
    **methods("Tensor", ["max", "min", "median"], pair_if_dim, size="elementwise", aliases=None),
    **methods("Tensor", ["sort", "topk"], pair, size="elementwise", aliases=None),
    **methods("Tensor", ["item"], "Number", size="elementwise", aliases=None, conversion=True),
    **methods("Tensor", ["tolist"], None, size="tolist", aliases=None, conversion=True),
    **methods("Tensor", ["numel", "dim", "__len__"], "Number", size="elementwise", aliases=None,
              shape_query=True),
    **methods("Tensor", ["size"], _size_kind, size="elementwise", aliases=None, shape_query=True),
    # backward's gradients go to the leaves the owner chooses (never the owner's own objects)
    "backward": Op("Tensor.backward", "method", "None", True, call_method("backward"),
                   kwargs=frozenset({"gradient", "retain_graph", "create_graph"}), writes="graph",
                   aliases="target", size="elementwise"),
    **attributes("Tensor", {"grad": "Tensor", "T": "Tensor"}, size="elementwise",
                 aliases="target"),
    **attributes("Tensor", {"shape": "Size", "ndim": "Number"}, size="elementwise", aliases=None,
                 shape_query=True),
    **attributes("Tensor", {"dtype": "dtype", "requires_grad": "Bool", "is_leaf": "Bool",
                            "device": "device"}, size="elementwise", aliases=None),
}  # fmt: skip
