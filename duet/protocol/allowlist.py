"""The remote surface: the one table of operations a scientist may run on the owner's side.

Both sides use this table. The scientist checks a path before sending (an unknown path is a clear
error and nothing is sent); the owner checks again before running anything, because the peer is
never trusted. Nothing here is looked up by a name the peer chose: functions are resolved from
the fixed paths below when this module loads, methods are called through per-type tables whose
keys are fixed names, and object members are read from torch's own member dicts.

Entries:
- functions: ``torch.zeros``, ``torch.nn.Linear``, ``python.Float`` ... (``Op.kind == "function"``)
- methods and attributes per type key: ``Tensor.add``, ``Tensor.grad``, ``Module.parameters``.

A type key names what kind of object a pointer points to (``Tensor``, ``Module``, ``Number``...).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.utils.data as tud
from torch import nn

from ..errors import NotAllowed, UsageError
from .devices import MODULE_MOVES, make_device, module_move, tensor_move
from .distributions import register_distributions
from .modules import LAYERS, TUPLE_RESULTS, build_layer
from .vision import register_vision

Returns = (
    str
    | None
    | Callable[[dict[str, Any], tuple[Any, ...], dict[str, Any]], tuple[str | None, dict[str, Any]]]
)


# What an op may change besides making its result, so that the owner can label (and protect)
# everything it writes. The owner binds these names to the objects they denote.
#   "target"       the object it is called on (a tensor's storage, a list, an iterator)
#   "target_deep"  that object and everything it holds (a model's parameters, an optimizer's state)
#   "graph"        the gradients of the leaves of the autograd graph behind the target (backward)
#   "module_call"  a model's buffers (in training mode), and its input when a layer works in place
#   "inplace_arg"  its first argument, when called with ``inplace=True``
#   "rng"          the random number generator's state (manual_seed)
WRITES = frozenset({"target", "target_deep", "graph", "module_call", "inplace_arg", "rng"})
# What an op's result may share with its inputs, so the owner knows which existing state a
# handle may stand for: None (something new), "target" (a view of its target, or something
# taken out of it), "args" (its arguments, or a container holding them), "all" (either).
ALIASES = frozenset({"target", "args", "all"})


@dataclass(frozen=True)
class Op:
    path: str
    kind: str  # "function" | "method" | "attribute"
    returns: Returns = "Tensor"
    mutates: bool = False
    impl: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    kwargs: frozenset[str] | None = None  # allowed keyword names, None: any
    # the result is the owner's own information (its files, its machine), private however
    # it was asked for
    owner_data: bool = False
    writes: str | None = None  # one of WRITES: what else the op changes
    random: bool = False  # draws from the random number generator
    # False for ops that change their target without reading it (list.append): the target's
    # contents do not flow into the result, so a long list is not walked on every append
    reads_target: bool = True
    aliases: str | None = "all"  # one of ALIASES, or None; set for every op at the end
    # what an automatic decision may rely on (owner/derivation.py), set at the end:
    # the result depends on its target's shape alone (a length, a size)
    shape_query: bool = False
    # the result is its target's value in another form (item, detach...): it tells nothing more
    conversion: bool = False
    # the result stands for one of its inputs, whole ("first" argument or "target"): a loader
    # over a dataset, that loader's iterator
    wraps: str | None = None
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

    def check_kwargs(self, names: Any) -> None:
        """Refuse keyword arguments the op does not allow (``out=`` never: it writes elsewhere)."""
        for name in names:
            if name == "out" or (self.kwargs is not None and name not in self.kwargs):
                raise NotAllowed(f"keyword argument {name!r} is not allowed for {self.path}")

    def result_kind(
        self, receiver_meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        if callable(self.returns):
            return self.returns(receiver_meta, args, kwargs)
        if self.returns == "self":
            return receiver_meta.get("kind"), {}
        return self.returns, {}


# ---------------------------------------------------------------- owner-side type keys


def type_key(obj: Any) -> str | None:
    """The table a value's methods are looked up in (the owner's view of its real type)."""
    known = _EXACT_KEYS.get(type(obj))
    if known is not None:  # the common types, by their exact class
        return known
    if isinstance(obj, bool):
        return "Bool"
    if isinstance(obj, int | float):
        return "Number"
    if isinstance(obj, str):
        return "String"
    if isinstance(obj, torch.Size):
        return "Size"
    if isinstance(obj, tuple):
        return "Tuple"
    if isinstance(obj, list):
        return "List"
    if isinstance(obj, dict):
        return "Dict"
    if isinstance(obj, torch.Tensor):
        return "Tensor"
    if isinstance(obj, nn.Module):
        return "Module"
    if isinstance(obj, torch.optim.Optimizer):
        return "Optimizer"
    if isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
        return "LRScheduler"
    if isinstance(obj, tud.DataLoader):
        return "DataLoader"
    if isinstance(obj, tud.dataloader._BaseDataLoaderIter):
        return "DataLoaderIter"
    if isinstance(obj, tud.Dataset):
        return "Dataset"
    if isinstance(obj, torch.distributions.Distribution):
        return "Distribution"
    if isinstance(obj, torch.device):
        return "device"
    if isinstance(obj, torch.dtype):
        return "dtype"
    if type(obj).__module__.startswith("torchvision.transforms"):
        return "Transform"
    return None


_EXACT_KEYS: dict[type, str] = {
    torch.Tensor: "Tensor", nn.Parameter: "Tensor", bool: "Bool", int: "Number",
    float: "Number", str: "String", tuple: "Tuple", list: "List", dict: "Dict",
    torch.Size: "Size",
}  # fmt: skip


# ---------------------------------------------------------------- helpers for the tables


def _call_method(name: str) -> Callable[..., Any]:
    # `name` is a fixed key of this table, never a peer's string.
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, name)(*args, **kwargs)

    return call


def _read_attribute(name: str) -> Callable[..., Any]:
    def read(self: Any) -> Any:
        return getattr(self, name)

    return read


_OPERATORS: dict[str, Callable[..., Any]] = {
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
_INPLACE_OPERATORS = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__setitem__"}
_ARITHMETIC = [
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__",
    "__neg__", "__abs__", "__iadd__", "__isub__", "__imul__", "__itruediv__",
]  # fmt: skip
_COMPARISONS = ["__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"]


_RANDOM_METHODS = {"normal_", "uniform_"}


def _methods(type_name: str, names: list[str], returns: Returns = "Tensor") -> dict[str, Op]:
    table = {}
    for name in names:
        mutates = (name.endswith("_") and not name.endswith("__")) or name in _INPLACE_OPERATORS
        impl = _OPERATORS.get(name) or _call_method(name)
        table[name] = Op(
            f"{type_name}.{name}", "method", returns, mutates, impl, random=name in _RANDOM_METHODS
        )
    return table


def _attributes(type_name: str, names: dict[str, Returns]) -> dict[str, Op]:
    return {
        name: Op(f"{type_name}.{name}", "attribute", returns, False, _read_attribute(name))
        for name, returns in names.items()
    }


def kind_of(spec: Any) -> tuple[str | None, dict[str, Any]]:
    """A result's kind and meta from a spec: a kind, or a tuple of specs (what a tuple holds,
    so that ``h, (h_n, c_n) = lstm(x)`` unpacks without asking the owner)."""
    if isinstance(spec, tuple):
        items = [list(kind_of(item)) for item in spec]
        return "Tuple", {"length": len(items), "items": items}
    return spec, {}


def _item(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    items = meta.get("items")
    if items and args and type(args[0]) is int and -len(items) <= args[0] < len(items):
        kind, item_meta = items[args[0]]
        return kind, dict(item_meta)
    return None, {}


def _pair_if_dim(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    if args or "dim" in kwargs:
        return kind_of(("Tensor", "Tensor"))
    return "Tensor", {}


def _pair(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return kind_of(("Tensor", "Tensor"))


def _layer_result(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return kind_of(TUPLE_RESULTS.get(meta.get("layer"), "Tensor"))  # type: ignore[arg-type]


def _same_module(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return "Module", {k: v for k, v in meta.items() if k == "layer"}


def _loader_iterator(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return "DataLoaderIter", {"fields": meta.get("fields")}


def _loader_fields(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    dataset_meta = getattr(args[0], "meta", {}) if args else {}
    return "DataLoader", {"fields": dataset_meta.get("fields")}


def _dataset_fields(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    return "Dataset", {"fields": len(args)}


def _batch(
    meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    fields = meta.get("fields")
    return "List", ({"length": fields} if fields else {})


# ---------------------------------------------------------------- methods and attributes

_TENSOR_METHODS = [
    "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "sin", "cos",
    "matmul", "mm", "t", "transpose", "permute", "sum", "mean", "std", "var", "prod", "cumsum",
    "argmax", "argmin", "amax", "amin", "norm", "view", "view_as", "reshape", "reshape_as",
    "flatten", "squeeze", "unsqueeze", "expand", "expand_as", "repeat", "float", "double",
    "long", "int", "bool", "half", "type_as", "clone", "detach", "contiguous", "eq", "ne", "lt",
    "le", "gt", "ge", "softmax", "log_softmax", "relu", "sigmoid", "tanh", "clamp", "round",
    "floor", "ceil", "sign", "masked_fill", "index_select", "gather", "all", "any", "chunk",
    "split", "argsort", "square", "cpu", "to", "maximum", "minimum", "where",
    "add_", "sub_", "mul_", "div_", "zero_", "fill_", "copy_", "clamp_", "abs_", "normal_",
    "uniform_", "unsqueeze_", "squeeze_", "masked_fill_", "requires_grad_", "relu_",
    *_ARITHMETIC, *_COMPARISONS, "__matmul__", "__rmatmul__", "__and__", "__or__", "__xor__",
    "__invert__", "__getitem__", "__setitem__",
]  # fmt: skip

TABLES: dict[str, dict[str, Op]] = {}
TABLES["Tensor"] = {
    **_methods("Tensor", _TENSOR_METHODS),
    **_methods("Tensor", ["max", "min", "median"], _pair_if_dim),
    **_methods("Tensor", ["sort", "topk"], _pair),
    **_methods("Tensor", ["item"], "Number"),
    **_methods("Tensor", ["tolist"], None),
    **_methods("Tensor", ["numel", "dim", "__len__"], "Number"),
    **_methods("Tensor", ["size"], lambda m, a, k: ("Number", {}) if a or k else ("Size", {})),
    **_methods("Tensor", ["backward"], "None"),
    **_attributes(
        "Tensor",
        {
            "grad": "Tensor",
            "shape": "Size",
            "dtype": "dtype",
            "requires_grad": "Bool",
            "is_leaf": "Bool",
            "ndim": "Number",
            "T": "Tensor",
            "device": "device",
        },
    ),  # fmt: skip
}
TABLES["Tensor"]["backward"] = Op(
    "Tensor.backward", "method", "None", True, _call_method("backward"), writes="graph"
)
TABLES["Tensor"]["requires_grad_"] = Op(
    "Tensor.requires_grad_", "method", "self", True, _call_method("requires_grad_")
)
for _name in ("to", "cuda"):  # the owner's devices only; cuda where it has one
    TABLES["Tensor"][_name] = Op(f"Tensor.{_name}", "method", "Tensor", impl=tensor_move(_name))


def _module_call(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    if type(module) is nn.Module:  # a container of a user's class: its forward stayed home
        raise UsageError(
            "this model arrived as a container of its layers: its forward stayed with the "
            "scientist (no code travels). Subclass sy.Module (class Net(sy.Module)) so that "
            "forward runs on your side, each step on the owner's"
        )
    return module(*args, **kwargs)


def _module_member(module: nn.Module, name: str) -> Any:
    # reads torch's own member dicts: no attribute lookup by the peer's name
    if not isinstance(name, str):
        raise TypeError("a member name must be a string")
    for members in (module._modules, module._parameters, module._buffers):
        if name in members:
            return members[name]
    raise AttributeError(
        f"{type(module).__name__} has no layer, parameter or buffer named {name!r}"
    )


def _module_flag(name: str) -> Callable[..., Any]:
    def run(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        getattr(module, name)(*args, **kwargs)
        return None

    return run


def _module_copy(module: nn.Module) -> nn.Module:
    # a module built from allowlisted layers only: copying it runs no code of the peer's
    return copy.deepcopy(module)


def _deep(name: str, path: str, impl: Callable[..., Any], returns: Returns = "None") -> Op:
    return Op(path, "method", returns, True, impl, writes="target_deep")


TABLES["Module"] = {
    "__call__": Op("Module.__call__", "method", _layer_result, True, _module_call, writes="module_call", random=True),
    "forward": Op("Module.forward", "method", _layer_result, True, _module_call, writes="module_call", random=True),
    "member": Op("Module.member", "method", None, False, _module_member),
    "parameters": Op("Module.parameters", "method", "List", False, lambda m, *a, **k: list(m.parameters(*a, **k))),
    "named_parameters": Op("Module.named_parameters", "method", "List", False,
                           lambda m, *a, **k: list(m.named_parameters(*a, **k))),
    "children": Op("Module.children", "method", "List", False, lambda m: list(m.children())),
    "state_dict": Op("Module.state_dict", "method", "Dict", False, lambda m: dict(m.state_dict())),
    "copy": Op("Module.copy", "method", "Module", False, _module_copy),
    "load_state_dict": _deep("load_state_dict", "Module.load_state_dict",
                             lambda m, sd, strict=True: (m.load_state_dict(sd, strict=strict), None)[1]),
    "train": _deep("train", "Module.train", _module_flag("train")),
    "eval": _deep("eval", "Module.eval", _module_flag("eval")),
    "zero_grad": _deep("zero_grad", "Module.zero_grad", _module_flag("zero_grad")),
    "requires_grad_": _deep("requires_grad_", "Module.requires_grad_", _module_flag("requires_grad_")),
    **_attributes("Module", {"training": "Bool", "weight": "Tensor", "bias": "Tensor"}),
    # device and precision moves run where the model is: they write all of it
    **{name: Op(f"Module.{name}", "method", _same_module, True, module_move(name),
                writes="target_deep") for name in MODULE_MOVES},
}  # fmt: skip


def _optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    optimizer.step()
    return None


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    # a copy: the optimizer's own state dicts must not be shared with a value the scientist
    # holds (they change with every step)
    return copy.deepcopy(optimizer.state_dict())


TABLES["Optimizer"] = {
    "step": _deep("step", "Optimizer.step", _optimizer_step),
    "zero_grad": _deep("zero_grad", "Optimizer.zero_grad", _module_flag("zero_grad")),
    "state_dict": Op("Optimizer.state_dict", "method", "Dict", False, _optimizer_state),
}
TABLES["LRScheduler"] = {
    "step": _deep("step", "LRScheduler.step", _module_flag("step")),
    "get_last_lr": Op(
        "LRScheduler.get_last_lr", "method", "List", False, _call_method("get_last_lr")
    ),
}
TABLES["DataLoader"] = {
    "__len__": Op("DataLoader.__len__", "method", "Number", False, len),
    # a shuffling loader draws its order from the random number generator
    "__iter__": Op("DataLoader.__iter__", "method", _loader_iterator, False, iter, random=True),
}
TABLES["Dataset"] = {
    "__len__": Op("Dataset.__len__", "method", "Number", False, len),
    "__getitem__": Op("Dataset.__getitem__", "method", _batch, False, operator.getitem),
}
TABLES["DataLoaderIter"] = {
    "__next__": Op("DataLoaderIter.__next__", "method", _batch, True, next, random=True),
    "__len__": Op("DataLoaderIter.__len__", "method", "Number", False, len),
}

# Python's own numbers and strings hold the interpreter while they compute: an exponent or a
# repeat count from the peer could stall the owner for hours. Results are bounded before they
# are computed.
MAX_INT_BITS = 1 << 16
MAX_STRING = 1 << 20


def _int_bits(value: Any) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _refuse_int(bits: float) -> None:
    if bits > MAX_INT_BITS:
        raise OverflowError(
            f"the result would be an integer of about {int(bits):,} bits; the owner computes "
            f"with integers of at most {MAX_INT_BITS:,} bits"
        )


def _checked_pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        _refuse_int(_int_bits(a) * b)
    return operator.pow(a, b)


def _checked_mul(a: Any, b: Any) -> Any:
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


def _checked_add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        _refuse_string(len(a) + len(b))
    return operator.add(a, b)


def _checked_replace(s: str, old: Any, new: Any, count: Any = -1) -> str:
    if isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        times = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _refuse_string(len(s) + times * (len(new) - len(old)))
    return s.replace(old, new, count)


_CHECKED: dict[str, Callable[..., Any]] = {
    "__pow__": _checked_pow, "__rpow__": lambda a, b: _checked_pow(b, a),
    "__mul__": _checked_mul, "__rmul__": lambda a, b: _checked_mul(b, a),
    "__imul__": _checked_mul, "__add__": _checked_add, "__radd__": lambda a, b: _checked_add(b, a),
    "__iadd__": _checked_add, "replace": _checked_replace,
}  # fmt: skip


def _bounded(table: dict[str, Op]) -> dict[str, Op]:
    return {
        name: dataclasses.replace(op, impl=_CHECKED[name]) if name in _CHECKED else op
        for name, op in table.items()
    }


_NUMBER = [*_ARITHMETIC, *_COMPARISONS]
TABLES["Number"] = _bounded({
    **_methods("Number", _NUMBER, "Number"),
    **_methods("Number", _COMPARISONS, "Bool"),
})  # fmt: skip
TABLES["Bool"] = {**TABLES["Number"], **_methods("Bool", ["__and__", "__or__", "__xor__"], "Bool")}
TABLES["String"] = {
    **_methods("String", ["__add__", "__radd__", "__mul__", "__getitem__", "__iadd__", "upper",
                          "lower", "strip", "replace", "title", "capitalize"], "String"),
    **_methods("String", ["__len__", "find", "count"], "Number"),
    **_methods("String", ["__contains__", "startswith", "endswith", *_COMPARISONS], "Bool"),
    **_methods("String", ["split"], "List"),
}  # fmt: skip
TABLES["String"] = _bounded(TABLES["String"])
_SEQUENCE = {
    **_methods("Sequence", ["__getitem__"], _item),
    **_methods("Sequence", ["__len__", "index", "count"], "Number"),
    **_methods("Sequence", ["__contains__", "__eq__", "__ne__"], "Bool"),
}
TABLES["Tuple"] = {**_SEQUENCE, **_methods("Tuple", ["__add__"], "Tuple")}
TABLES["Size"] = {**_SEQUENCE, **_methods("Size", ["numel"], "Number")}
TABLES["List"] = {
    **_SEQUENCE,
    **_methods("List", ["append", "extend", "insert", "reverse", "clear"], "None"),
    **_methods("List", ["pop"], None),
    **_methods("List", ["__add__", "__iadd__", "copy"], "List"),
    **_methods("List", ["__setitem__"], "None"),
}
for _name in ("append", "extend", "insert", "reverse", "clear", "pop", "__setitem__", "__iadd__"):
    TABLES["List"][_name] = Op(f"List.{_name}", "method", TABLES["List"][_name].returns, True,
                               TABLES["List"][_name].impl,
                               reads_target=_name not in ("append", "extend", "insert", "clear"))  # fmt: skip
TABLES["Dict"] = {
    **_methods("Dict", ["__getitem__", "get", "pop"], None),
    **_methods("Dict", ["__len__"], "Number"),
    **_methods("Dict", ["__contains__"], "Bool"),
    "keys": Op("Dict.keys", "method", "List", False, lambda d: list(d.keys())),
    "values": Op("Dict.values", "method", "List", False, lambda d: list(d.values())),
    "items": Op("Dict.items", "method", "List", False, lambda d: list(d.items())),
    "__setitem__": Op(
        "Dict.__setitem__", "method", "None", True, _OPERATORS["__setitem__"], reads_target=False
    ),
    "update": Op("Dict.update", "method", "None", True, _call_method("update"), reads_target=False),
}
for _name in ("pop",):
    TABLES["Dict"][_name] = Op(f"Dict.{_name}", "method", None, True, _call_method(_name))
TABLES["dtype"] = {}
TABLES["device"] = _attributes("device", {"type": "String", "index": "Number"})
TABLES["None"] = {}


# ---------------------------------------------------------------- functions


def _manual_seed(seed: int) -> None:
    torch.manual_seed(seed)
    return None


def _cuda_is_available() -> bool:
    return bool(torch.cuda.is_available())


def _typed(cls: type, kind: str) -> Callable[..., Any]:
    def make(*args: Any) -> Any:
        value = cls(*args)
        if kind == "Number" and cls is float:
            return float(value)
        return value

    return make


def _fn(path: str, impl: Callable[..., Any], returns: Returns = "Tensor", **extra: Any) -> Op:
    return Op(path, "function", returns, impl=impl, **extra)


def _from_numpy(array: Any) -> torch.Tensor:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy array (got {type(array).__name__})")
    # a copy: a tensor sharing the array's memory would be an alias the owner does not follow
    return torch.from_numpy(np.array(array, copy=True))


def _legacy_tensor(*args: Any) -> torch.Tensor:
    """``torch.Tensor(data)`` or ``torch.Tensor(*sizes)``: a float tensor. Made from sizes it is
    zeros, never uninitialized memory (which could hold what the owner's process freed)."""
    if not args:
        return torch.empty(0)
    if all(type(a) is int for a in args) or (len(args) == 1 and isinstance(args[0], torch.Size)):
        return torch.zeros(*args)
    if len(args) == 1:
        data = args[0]
        if isinstance(data, torch.Tensor):
            return torch.Tensor(data)  # the tensor itself, as torch does
        return torch.tensor(data, dtype=torch.get_default_dtype())
    raise TypeError("torch.Tensor takes data (a list, a tensor) or sizes (integers)")


def _layer_kind(path: str) -> Returns:
    def kind(
        meta: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str | None, dict[str, Any]]:
        return "Module", {"layer": path}

    return kind


_TORCH_FUNCTIONS = [
    "tensor", "zeros", "ones", "randn", "rand", "randint", "arange", "full", "linspace", "eye",
    "zeros_like", "ones_like", "randn_like", "rand_like", "full_like", "flatten", "cat", "stack",
    "matmul", "sum", "mean", "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "softmax",
    "log_softmax", "argmax", "where", "clamp", "maximum", "minimum", "squeeze", "unsqueeze",
    "transpose", "reshape", "add", "sub", "mul", "div", "pow", "neg", "mm", "std", "var", "eq",
    "ne", "lt", "le", "gt", "ge", "square", "sin", "cos",
]  # fmt: skip
_FUNCTIONAL = [
    "relu", "max_pool2d", "avg_pool2d", "log_softmax", "softmax", "nll_loss", "cross_entropy",
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div", "dropout", "dropout2d", "sigmoid", "tanh",
    "linear", "leaky_relu", "elu", "gelu", "silu", "softplus", "pixel_shuffle", "pixel_unshuffle",
]  # fmt: skip

_RANDOM_FUNCTIONS = {"randn", "rand", "randint", "randn_like", "rand_like", "dropout", "dropout2d"}
# take inplace=True (and then return their input)
_INPLACE_FUNCTIONS = {"relu", "dropout", "dropout2d", "leaky_relu", "elu", "silu"}

FUNCTIONS: dict[str, Op] = {}
for _name in _TORCH_FUNCTIONS:
    FUNCTIONS[f"torch.{_name}"] = _fn(
        f"torch.{_name}", getattr(torch, _name), random=_name in _RANDOM_FUNCTIONS
    )
FUNCTIONS["torch.manual_seed"] = _fn("torch.manual_seed", _manual_seed, "None", writes="rng")
FUNCTIONS["torch.max"] = _fn("torch.max", torch.max, lambda m, a, k: _pair_if_dim(m, a[1:], k))
FUNCTIONS["torch.min"] = _fn("torch.min", torch.min, lambda m, a, k: _pair_if_dim(m, a[1:], k))
FUNCTIONS["torch.cuda.is_available"] = _fn(
    "torch.cuda.is_available", _cuda_is_available, "Bool", owner_data=True
)
FUNCTIONS["torch.device"] = _fn("torch.device", make_device, "device")
FUNCTIONS["torch.from_numpy"] = _fn("torch.from_numpy", _from_numpy)
FUNCTIONS["torch.Tensor"] = _fn("torch.Tensor", _legacy_tensor)
for _name in _FUNCTIONAL:
    FUNCTIONS[f"torch.nn.functional.{_name}"] = _fn(
        f"torch.nn.functional.{_name}",
        getattr(torch.nn.functional, _name),
        random=_name in _RANDOM_FUNCTIONS,
        writes="inplace_arg" if _name in _INPLACE_FUNCTIONS else None,
    )
# layers whose initial weights are drawn (the others have none, or constant ones)
_RANDOM_INIT = {
    f"torch.nn.{name}"
    for name in ("Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "Embedding",
                 "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")
}  # fmt: skip
for _path in LAYERS:
    FUNCTIONS[_path] = _fn(
        _path, build_layer(_path), _layer_kind(_path), random=_path in _RANDOM_INIT
    )
FUNCTIONS["torch.nn.Module"] = _fn("torch.nn.Module", nn.Module, "Module")
OPTIMIZERS = ("SGD", "Adam", "AdamW", "Adadelta", "Adagrad", "RMSprop")
for _name in OPTIMIZERS:
    FUNCTIONS[f"torch.optim.{_name}"] = _fn(
        f"torch.optim.{_name}", getattr(torch.optim, _name), "Optimizer"
    )
FUNCTIONS["torch.optim.lr_scheduler.StepLR"] = _fn(
    "torch.optim.lr_scheduler.StepLR", torch.optim.lr_scheduler.StepLR, "LRScheduler"
)
FUNCTIONS["torch.utils.data.TensorDataset"] = _fn(
    "torch.utils.data.TensorDataset", tud.TensorDataset, _dataset_fields
)
# no workers (processes), samplers or collate functions: only these settings
FUNCTIONS["torch.utils.data.DataLoader"] = _fn(
    "torch.utils.data.DataLoader", tud.DataLoader, _loader_fields,
    kwargs=frozenset({"batch_size", "shuffle", "drop_last"}),
)  # fmt: skip
for _name, _pytype, _kind in (
    ("Float", float, "Number"), ("Int", int, "Number"), ("Bool", bool, "Bool"),
    ("String", str, "String"), ("List", list, "List"), ("Dict", dict, "Dict"),
    ("Tuple", tuple, "Tuple"),
):  # fmt: skip
    FUNCTIONS[f"python.{_name}"] = _fn(f"python.{_name}", _typed(_pytype, _kind), _kind)


# ---------------------------------------------------------------- lookups


def function(path: str) -> Op:
    op = FUNCTIONS.get(path)
    if op is None:
        raise NotAllowed(f"{path!r} is not on the allowlist of remote operations")
    return op


def member(kind: str | None, name: str) -> Op:
    """The op for ``name`` on an object of type ``kind`` (None: any type that has it)."""
    if kind is None:
        for table in TABLES.values():
            if name in table:
                return table[name]
    else:
        op = TABLES.get(kind, {}).get(name)
        if op is not None:
            return op
    where = f"{kind} objects" if kind else "remote objects"
    raise NotAllowed(f"{name!r} is not on the allowlist for {where}")


_BY_CALLABLE: dict[int, Op] = {}


def function_for(func: Any) -> Op | None:
    """The op whose owner-side implementation is this very torch callable (for pointers taking
    part in ordinary torch calls through ``__torch_function__``)."""
    if not _BY_CALLABLE:
        for op in FUNCTIONS.values():
            if op.impl is not None and op.path.startswith("torch."):
                _BY_CALLABLE.setdefault(id(op.impl), op)
    return _BY_CALLABLE.get(id(func))


def namespaces() -> set[str]:
    """Every dotted prefix of a function path, e.g. 'torch', 'torch.nn'."""
    out = set()
    for path in FUNCTIONS:
        parts = path.split(".")
        for i in range(1, len(parts)):
            out.add(".".join(parts[:i]))
    return out


def op_names() -> frozenset[str]:
    """Every op's short name (``mean``, ``__len__``, ``nll_loss``): the tags a handler may use
    to name the operation that made a value."""
    names = {op.name for op in FUNCTIONS.values()}
    for table in TABLES.values():
        names.update(op.name for op in table.values())
    return frozenset(names)


def digest() -> str:
    """A fingerprint of the whole table: both sides must agree on it."""
    lines = sorted(
        f"f {p} {op.returns if isinstance(op.returns, str | None) else 'fn'}"
        for p, op in FUNCTIONS.items()
    )
    for kind, table in TABLES.items():
        lines.extend(
            sorted(f"m {kind}.{n} {op.kind} {op.mutates} {op.writes}" for n, op in table.items())
        )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


register_vision(Op, FUNCTIONS, TABLES)  # given Op: they do not import this module back
register_distributions(Op, FUNCTIONS, TABLES)


# ---------------------------------------------------------------- what results may alias

_TENSOR_ALIASING = {
    "view", "view_as", "reshape", "reshape_as", "flatten", "squeeze", "unsqueeze", "expand",
    "expand_as", "t", "transpose", "permute", "detach", "contiguous", "float", "double", "long",
    "int", "bool", "half", "type_as", "cpu", "cuda", "to", "chunk", "split", "__getitem__", "T",
    "grad",
}  # fmt: skip
_IMMUTABLE_TABLES = {"Number", "Bool", "String", "dtype", "device", "None"}
_NEW_RESULTS = {
    "__len__", "__contains__", "__eq__", "__ne__", "index", "count", "numel", "training",
    "copy_state", "get_last_lr", "append", "extend", "insert", "reverse", "clear", "update",
    "train", "eval", "zero_grad", "load_state_dict", "step", "state_dict_copy",
}  # fmt: skip
_ALIASING_FUNCTIONS = {
    "torch.flatten", "torch.squeeze", "torch.unsqueeze", "torch.transpose", "torch.reshape",
    "torch.Tensor",  # torch.Tensor(t) is t
    *(f"torch.nn.functional.{name}" for name in _INPLACE_FUNCTIONS),
    "torch.nn.functional.pixel_shuffle", "torch.nn.functional.pixel_unshuffle",
    "python.List", "python.Dict", "python.Tuple", "torch.utils.data.TensorDataset",
    "torch.utils.data.DataLoader", *(f"torch.optim.{name}" for name in OPTIMIZERS),
    "torch.optim.lr_scheduler.StepLR", "torchvision.transforms.Compose",
    "torchvision.datasets.MNIST", "torchvision.datasets.FashionMNIST",
    # a layer may hold its arguments (Sequential(a, b) holds a and b)
    *LAYERS,
    # a distribution holds its arguments (Normal(loc, scale).loc is loc)
    "torch.distributions.Categorical", "torch.distributions.Bernoulli",
    "torch.distributions.Normal",
}  # fmt: skip


def _alias_class(kind: str, name: str, op: Op) -> str | None:
    if kind in _IMMUTABLE_TABLES:
        return None  # values, not objects: nothing to alias
    if kind == "Tensor":
        return "target" if name in _TENSOR_ALIASING or op.mutates else None
    if kind == "Module":
        if name in ("__call__", "forward"):
            return "args"  # a layer may hand back its input (Flatten, Dropout in eval mode)
        return None if name in ("copy", *_NEW_RESULTS) else "target"
    if kind == "Optimizer":
        return None  # its state dict is a copy
    if name in _NEW_RESULTS:
        return None
    if name in ("__add__", "__iadd__"):
        return "all"  # a list made of both operands' items
    if kind == "Transform":
        return "args"
    return "target"


for _kind, _table in TABLES.items():
    for _name, _op in list(_table.items()):
        _table[_name] = dataclasses.replace(_op, aliases=_alias_class(_kind, _name, _op))
for _path, _op in list(FUNCTIONS.items()):
    FUNCTIONS[_path] = dataclasses.replace(
        _op, aliases="args" if _path in _ALIASING_FUNCTIONS else None
    )
# what automatic decisions rely on (owner/derivation.py): shape queries, value-preserving
# conversions, wrappers that stand for a dataset whole
SHAPE_QUERIES = {
    "Tensor": ("__len__", "size", "numel", "dim", "shape", "ndim"),
    "Dataset": ("__len__",), "DataLoader": ("__len__",), "DataLoaderIter": ("__len__",),
    "List": ("__len__",), "Tuple": ("__len__",), "Dict": ("__len__",), "String": ("__len__",),
}  # fmt: skip
CONVERSIONS = ("item", "tolist", "detach", "clone", "float", "double", "cpu", "contiguous")
for _kind, _names in SHAPE_QUERIES.items():
    for _name in _names:
        TABLES[_kind][_name] = dataclasses.replace(TABLES[_kind][_name], shape_query=True)
for _name in CONVERSIONS:
    TABLES["Tensor"][_name] = dataclasses.replace(TABLES["Tensor"][_name], conversion=True)
TABLES["DataLoader"]["__iter__"] = dataclasses.replace(
    TABLES["DataLoader"]["__iter__"], wraps="target"
)
FUNCTIONS["torch.utils.data.DataLoader"] = dataclasses.replace(
    FUNCTIONS["torch.utils.data.DataLoader"], wraps="first"
)


def _union(classes: set[str | None]) -> str | None:
    found = classes - {None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else "all"


#: a method name's alias class whatever the type of what it is called on: what a call may
#: share when the type of its target is private (a handle chosen by the owner's data)
ANY_TYPE_ALIASES: dict[str, str | None] = {
    name: _union({t[name].aliases for t in TABLES.values() if name in t})
    for name in {n for t in TABLES.values() for n in t}
}
#: the op names a handler's tags treat as shape queries (a length handler releases shapes only)
SHAPE_OPS = frozenset(name for names in SHAPE_QUERIES.values() for name in names)
# backward's gradients go to the leaves the owner chooses (never the owner's own objects)
TABLES["Tensor"]["backward"] = dataclasses.replace(
    TABLES["Tensor"]["backward"], kwargs=frozenset({"gradient", "retain_graph", "create_graph"})
)
NAMESPACES = namespaces()
OP_NAMES = op_names()
