"""The whole allowlist, assembled from the families, and how it is looked up.

The order of ``TABLES`` is the order a method name is looked for when its target's type is not
known (``member(None, name)``): it stays as it is.
"""

from __future__ import annotations

import hashlib

from ...errors import NotAllowed
from . import data, distributions, nn, optim, python, tensor, torch_functions, vision
from .facts import Alias, Op

FUNCTIONS: dict[str, Op] = {
    **torch_functions.FUNCTIONS,
    **nn.FUNCTIONS,
    **optim.FUNCTIONS,
    **data.FUNCTIONS,
    **python.FUNCTIONS,
    **vision.FUNCTIONS,
    **distributions.FUNCTIONS,
}
# methods and attributes per type key (type_keys.type_key)
TABLES: dict[str, dict[str, Op]] = {
    "Tensor": tensor.TENSOR,
    "Module": nn.MODULE,
    "Optimizer": optim.OPTIMIZER,
    "LRScheduler": optim.LR_SCHEDULER,
    "DataLoader": data.DATA_LOADER,
    "Dataset": data.DATASET,
    "DataLoaderIter": data.DATA_LOADER_ITER,
    "Number": python.NUMBER,
    "Bool": python.BOOL,
    "String": python.STRING,
    "Tuple": python.TUPLE,
    "Size": python.SIZE,
    "List": python.LIST,
    "Dict": python.DICT,
    "dtype": {},
    "device": python.DEVICE,
    "None": {},
    "Transform": vision.TRANSFORM,
    "Distribution": distributions.DISTRIBUTION,
}


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


def function_for(func: object) -> Op | None:
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


def _union(classes: set[Alias | None]) -> Alias | None:
    found = classes - {None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else "all"


#: a method name's alias class whatever the type of what it is called on: what a call may
#: share when the type of its target is private (a handle chosen by the owner's data)
ANY_TYPE_ALIASES: dict[str, Alias | None] = {
    name: _union({t[name].aliases for t in TABLES.values() if name in t})
    for name in {n for t in TABLES.values() for n in t}
}
#: the op names a handler's tags treat as shape queries (a length handler releases shapes only)
SHAPE_OPS = frozenset(op.name for t in TABLES.values() for op in t.values() if op.shape_query)
NAMESPACES = namespaces()
OP_NAMES = op_names()
