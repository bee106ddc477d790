"""Size arguments read as torch reads them, for the owner's size estimates (sizes.py,
layer_sizes.py). A size may arrive as an int, a numpy integer, a bool, a tensor or array of one
element (the scientist's, or one computed from the owner's data), or a list, tuple or torch.Size
of any of these: each is read the way torch would read it, and one that cannot be read is refused
naming the argument (an estimate of 0 would let torch allocate whatever the value says).
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import SupportsIndex

import numpy as np
import torch

# what a call is given, as the size rules read it: any values (the scientist's, or the owner's
# objects they name), narrowed where a rule uses them
Args = Sequence[object]
Kwargs = Mapping[str, object]


MAX_SIZE_ELEMENTS = 64  # a size given as a tensor of more elements than this is not a size


def describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {list(value.shape)}"
    return f"a {type(value).__name__}"


def element_count(value: torch.Tensor | np.ndarray) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else int(value.size)


def read_index(value: object, what: str) -> int:
    """An integer argument as torch reads it: anything with ``__index__`` (numpy integers,
    bools), or a tensor or array of one element by that element."""
    item: object = value
    if isinstance(value, torch.Tensor | np.ndarray):
        if element_count(value) != 1:
            raise TypeError(f"{what} must be an integer, not {describe(value)}")
        item = value.item()
    if isinstance(item, SupportsIndex):  # what has no __index__ fails operator.index as well
        try:
            return operator.index(item)
        except TypeError:
            pass
    raise TypeError(f"{what} must be an integer, not {describe(value)}")


def read_real(value: object, what: str) -> int | float:
    """A number argument (``arange``'s bounds and step) as torch reads it: an integer exactly,
    anything else real as a float, a complex number by its real part, a tensor or array of one
    element by that element."""
    item: object = value
    if isinstance(value, torch.Tensor | np.ndarray):
        if element_count(value) != 1:
            raise TypeError(f"{what} must be a number, not {describe(value)}")
        item = value.item()
    if isinstance(item, numbers.Complex) and not isinstance(item, numbers.Real):
        item = item.real
    if isinstance(item, SupportsIndex):  # what has no __index__ fails operator.index as well
        try:
            return operator.index(item)
        except TypeError:
            pass
    if isinstance(item, numbers.Real):
        return float(item)
    raise TypeError(f"{what} must be a number, not {describe(value)}")


def read_dims(value: object, what: str) -> list[int]:
    """A size given as one value: a list, tuple or torch.Size of integers, a tensor or array
    (its elements, as torch reads one of a single element: one dimension), or one integer."""
    if isinstance(value, list | tuple):
        return [read_index(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, torch.Tensor | np.ndarray) and element_count(value) != 1:
        if element_count(value) > MAX_SIZE_ELEMENTS or (
            isinstance(value, torch.Tensor) and value.is_complex()
        ):
            raise TypeError(f"{what} must be a sequence of integers, not {describe(value)}")
        flat = value.reshape(-1).tolist()
        return [read_index(v, f"{what}[{i}]") for i, v in enumerate(flat)]
    return [read_index(value, what)]


def read_varargs_dims(args: Args, what: str) -> list[int]:
    """A size given as torch's ``*size``: one sequence, or integers one by one."""
    if len(args) == 1:
        return read_dims(args[0], what)
    return [read_index(a, f"{what}[{i}]") for i, a in enumerate(args)]


def count_of(dims: list[int]) -> int:
    return math.prod(max(d, 0) for d in dims)


def read_numel(shape: object, what: str) -> int:
    """The number of elements of a tensor of size ``shape`` (one value, read as torch does)."""
    return count_of(read_dims(shape, what))
