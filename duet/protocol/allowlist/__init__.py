"""The remote surface: the one table of operations a scientist may run on the owner's side.

Both sides use this table. The scientist checks a path before sending (an unknown path is a clear
error and nothing is sent); the owner checks again before running anything, because the peer is
never trusted. Nothing here is looked up by a name the peer chose: functions are resolved from
the fixed paths of the family modules when this package loads, methods are called through
per-type tables whose keys are fixed names, and object members are read from torch's own member
dicts.

Each op is declared once, in the module of its family, with its facts as fields of its ``Op``
(facts.py): what it writes besides its result, what its result may share, whether it draws from
the generator, how its allocation is estimated. Adding an op touches this package only (the
owner binds each size rule name in owner/sizes.py; tests/test_op_facts.py checks the facts).

- tensor.py           Tensor methods and attributes (``Tensor.add``, ``Tensor.grad``)
- torch_functions.py  ``torch.zeros``, ``torch.cat``, ``torch.nn.functional.relu`` ...
- nn.py               building layers (``torch.nn.Linear``) and what a model does (``Module.*``)
- optim.py            optimizers and a scheduler, and their steps
- data.py             datasets, loaders and their iterators
- python.py           Python's values (numbers, strings, lists, dicts) and ``python.*``
- vision.py           torchvision's transforms and datasets
- distributions.py    ``torch.distributions``
- table.py            all of them assembled, the lookups, the digest both sides compare

A type key names what kind of object a pointer points to (``Tensor``, ``Module``, ``Number``...).
"""

from __future__ import annotations

from ...errors import NotAllowed
from .declare import kind_of
from .facts import ALIASES, SIZE_RULES, WRITES, Alias, Op, Returns, SizeRule, Write
from .optim import OPTIMIZERS
from .python import MAX_INT_BITS, MAX_STRING
from .table import (
    ANY_TYPE_ALIASES,
    FUNCTIONS,
    NAMESPACES,
    OP_NAMES,
    SHAPE_OPS,
    TABLES,
    digest,
    function,
    function_for,
    member,
    namespaces,
    op_names,
)
from .type_keys import type_key

__all__ = [
    "ALIASES",
    "ANY_TYPE_ALIASES",
    "FUNCTIONS",
    "MAX_INT_BITS",
    "MAX_STRING",
    "NAMESPACES",
    "OPTIMIZERS",
    "OP_NAMES",
    "SHAPE_OPS",
    "SIZE_RULES",
    "TABLES",
    "WRITES",
    "Alias",
    "NotAllowed",
    "Op",
    "Returns",
    "SizeRule",
    "Write",
    "digest",
    "function",
    "function_for",
    "kind_of",
    "member",
    "namespaces",
    "op_names",
    "type_key",
]
