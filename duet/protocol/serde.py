"""Value serde: Python and torch values <-> JSON-ready data plus raw binary buffers.

Never pickle. Plain JSON scalars (None, bool, int, str, finite float) travel as themselves;
everything else is an object tagged with ``"$"``: containers, tensors and numpy arrays (dtype +
shape + an index into the frame's buffers), references to remote objects, slices, dtypes,
sizes, nn.Module specs. Numpy scalars travel as the Python numbers they hold; numpy arrays of
Python objects (or of any dtype that is not plain numbers) are refused.
Decoding trusts nothing: every field is checked against what the encoder writes (its type, its
range, no field it does not write), so malformed input of any kind raises ProtocolError and
nothing else; the owner treats any other exception while handling a message as having lost track
of its own state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
import torch

from ..errors import DuetError, ProtocolError
from .devices import device_from_wire

# A value as it travels in a message: what JSON holds. Everything else (tensors, containers,
# references...) is encoded as a dict tagged with "$" (see above).
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

MAX_DEPTH = 64
MAX_INT_BITS = 64
MAX_DIM = 2**40  # one dimension of a tensor or array
MAX_SPAN = 2**48  # the product of a shape's non-zero dimensions (an empty tensor's strides)
MAX_DIMS = 32
# the fields each tagged value may carry besides "$" (exactly what the encoder writes)
FIELDS: dict[str, frozenset[str]] = {
    tag: frozenset(fields)
    for tag, fields in {
        "list": ("v",), "tuple": ("v",), "dict": ("v",), "size": ("v",), "slice": ("v",),
        "float": ("v",), "dtype": ("v",), "device": ("v",), "complex": ("v",), "ref": ("id",),
        "bytes": ("buf",), "ellipsis": (), "tensor": ("dtype", "shape", "buf", "rg", "param"),
        "ndarray": ("dtype", "shape", "buf"),
        "module": ("type", "config", "children", "state", "training"),
    }.items()
}  # fmt: skip

_DTYPE_NAMES = [
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "uint8", "int8", "int16", "int32", "int64", "bool", "uint16", "uint32", "uint64",
]  # fmt: skip
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name)
    for name in _DTYPE_NAMES
    if isinstance(getattr(torch, name, None), torch.dtype)
}
DTYPE_NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}
# numpy arrays: plain numbers only (never object, string or structured dtypes)
NUMPY_DTYPES: dict[str, np.dtype[np.generic]] = {
    name: np.dtype(name)
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128")
}  # fmt: skip


def tensor_to_buffer(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor, without a copy when it is already contiguous (and on the
    CPU: another device's tensor is copied here)."""
    if not tensor.requires_grad:
        # the common case in one torch call (a get's whole encoding costs less): numpy views a
        # contiguous CPU tensor's own memory; anything else (another device, a dtype numpy
        # lacks, a negative or conjugate view, gaps, no elements) raises and goes the long way
        try:
            return tensor.numpy().data.cast("B")
        except (TypeError, RuntimeError):
            pass
    # a conjugate or negative view's bytes are not its values until resolved
    flat = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    if flat.stride(0) != 1:  # one element a stride away: torch calls that contiguous
        flat = flat.clone(memory_format=torch.contiguous_format)
    return flat.view(torch.uint8).numpy().data


def _check_layout(
    what: str, dtype_name: object, shape: object, itemsize: int, buffer: memoryview
) -> int:
    """The number of elements of a ``shape`` whose bytes are exactly ``buffer``."""
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < MAX_DIM for d in shape):
        raise ProtocolError(f"invalid {what} shape {shape!r:.200}")
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"{what} of {len(shape)} dimensions is not supported")
    if math.prod(max(d, 1) for d in shape) > MAX_SPAN:
        raise ProtocolError(f"{what} shape {shape} spans more than {MAX_SPAN} elements")
    numel = math.prod(shape)
    if numel * itemsize != buffer.nbytes:
        raise ProtocolError(
            f"{what} of shape {shape} and dtype {dtype_name} needs {numel * itemsize} bytes, "
            f"its buffer has {buffer.nbytes}"
        )
    return numel


def tensor_from_buffer(dtype_name: object, shape: object, buffer: memoryview) -> torch.Tensor:
    dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ProtocolError(f"unsupported tensor dtype {dtype_name!r}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = _check_layout("tensor", dtype_name, shape, itemsize, buffer)
    dims = cast("list[int]", shape)  # _check_layout checked it: a list of dimensions
    if numel == 0:
        return torch.empty(dims, dtype=dtype)
    raw = torch.frombuffer(bytearray(buffer), dtype=torch.uint8)
    if dtype == torch.bool:  # a bool is one byte, 0 or 1: any other byte is no bool to torch
        return (raw != 0).reshape(dims)
    return raw.view(dtype).reshape(dims)


def array_from_buffer(
    dtype_name: object, shape: object, buffer: memoryview
) -> npt.NDArray[np.generic]:
    """A numpy array of its own (writable, not sharing the frame's memory)."""
    dtype = NUMPY_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ProtocolError(f"unsupported numpy dtype {dtype_name!r}")
    _check_layout("array", dtype_name, shape, dtype.itemsize, buffer)
    dims = cast("list[int]", shape)  # _check_layout checked it: a list of dimensions
    if dtype == np.bool_:  # as for tensors: a byte other than 0 or 1 is no bool
        return (np.frombuffer(bytearray(buffer), dtype=np.uint8) != 0).reshape(dims)
    return np.frombuffer(bytearray(buffer), dtype=dtype).reshape(dims)


def _encode_array(
    array: npt.NDArray[np.generic], buffers: list[memoryview]
) -> dict[str, JSONValue]:
    name = array.dtype.name
    if NUMPY_DTYPES.get(name) is None or array.dtype.byteorder == ">":
        if array.dtype.kind in "biufc" and array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))  # big-endian: native order
            name = array.dtype.name
        else:
            raise ProtocolError(
                f"a numpy array of dtype {array.dtype} cannot be sent (numbers only: "
                f"{', '.join(NUMPY_DTYPES)})"
            )
    array = np.ascontiguousarray(array)
    buffers.append(memoryview(array.tobytes()))  # a copy: the array may change after the call
    return {"$": "ndarray", "dtype": name, "shape": list(array.shape), "buf": len(buffers) - 1}


class Encoder:
    """Encodes one message's values, collecting buffers for the frame.

    ``ref_of`` turns a local stand-in for a remote object (a pointer) into its id, or returns
    None for ordinary values.
    """

    def __init__(
        self, buffers: list[memoryview], ref_of: Callable[[object], str | None] | None = None
    ):
        self.buffers = buffers
        self.ref_of = ref_of

    def encode(self, value: object, depth: int = 0) -> JSONValue:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            return {"$": "float", "v": repr(value)}
        if self.ref_of is not None:
            ref = self.ref_of(value)
            if ref is not None:
                return {"$": "ref", "id": ref}
        if isinstance(value, torch.Tensor):
            return self.encode_tensor(value)
        if isinstance(value, torch.Size):
            return {"$": "size", "v": list(value)}
        if isinstance(value, list):
            return {"$": "list", "v": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, tuple):
            return {"$": "tuple", "v": [self.encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {
                "$": "dict",
                "v": [
                    [self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()
                ],
            }
        if isinstance(value, slice):
            return {
                "$": "slice",
                "v": [self.encode(p, depth + 1) for p in (value.start, value.stop, value.step)],
            }
        if value is Ellipsis:
            return {"$": "ellipsis"}
        if isinstance(value, torch.dtype):
            if value not in DTYPE_NAMES:
                raise ProtocolError(f"dtype {value} cannot be sent")
            return {"$": "dtype", "v": DTYPE_NAMES[value]}
        if isinstance(value, torch.device):
            return {"$": "device", "v": str(value)}
        if isinstance(value, bytes | bytearray):
            self.buffers.append(memoryview(bytes(value)))
            return {"$": "bytes", "buf": len(self.buffers) - 1}
        if isinstance(value, complex):
            return {"$": "complex", "v": [value.real, value.imag]}
        if isinstance(value, torch.nn.Module):
            from .modules import encode_module

            return encode_module(value, self)
        if isinstance(value, np.ndarray):
            return _encode_array(value, self.buffers)
        if isinstance(value, np.generic) and value.dtype.kind in "biufc":
            return self.encode(value.item(), depth)  # np.float32(0.5) travels as 0.5
        raise ProtocolError(f"a value of type {type(value).__name__} cannot be sent")

    def encode_tensor(self, tensor: torch.Tensor) -> dict[str, JSONValue]:
        if tensor.dtype not in DTYPE_NAMES:
            raise ProtocolError(f"tensors of dtype {tensor.dtype} cannot be sent")
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        self.buffers.append(tensor_to_buffer(tensor))
        out: dict[str, JSONValue] = {
            "$": "tensor",
            "dtype": DTYPE_NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "buf": len(self.buffers) - 1,
        }
        if tensor.requires_grad:
            out["rg"] = True
        if isinstance(tensor, torch.nn.Parameter):
            out["param"] = True
        return out


class Decoder:
    """Decodes values; ``resolve_ref`` maps a reference id to the object it names."""

    def __init__(
        self, buffers: list[memoryview], resolve_ref: Callable[[str], object] | None = None
    ):
        self.buffers = buffers
        self.resolve_ref = resolve_ref

    def decode(self, data: JSONValue, depth: int = 0) -> object:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        if data is None or isinstance(data, bool | str | float):
            return data
        if isinstance(data, int):
            if data.bit_length() > MAX_INT_BITS:
                raise ProtocolError(f"integer of {data.bit_length()} bits is too large")
            return data
        if not isinstance(data, dict):
            raise ProtocolError(f"unexpected {type(data).__name__} in an encoded value")
        tag = data.get("$")
        fields = FIELDS.get(tag) if isinstance(tag, str) else None
        if fields is None:
            raise ProtocolError(f"unknown value tag {tag!r:.60}")
        extra = [key for key in data if key != "$" and key not in fields]
        if extra:
            raise ProtocolError(f"a {tag} value has no field {extra[0]!r:.60}")
        items = data.get("v")
        if tag == "list":
            return [self.decode(v, depth + 1) for v in self._seq(items, tag)]
        if tag == "tuple":
            return tuple(self.decode(v, depth + 1) for v in self._seq(items, tag))
        if tag == "dict":
            out = {}
            for pair in self._seq(items, tag):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ProtocolError("dict items must be [key, value] pairs")
                key = self.decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError as exc:
                    raise ProtocolError(
                        f"unhashable dict key of type {type(key).__name__}"
                    ) from exc
                out[key] = self.decode(pair[1], depth + 1)
            return out
        if tag == "tensor":
            return self._tensor(data)
        if tag == "ndarray":
            return array_from_buffer(data.get("dtype"), data.get("shape"), self._buffer(data))
        if tag == "ref":
            ref = data.get("id")
            if not isinstance(ref, str) or self.resolve_ref is None:
                raise ProtocolError("invalid object reference")
            return self.resolve_ref(ref)
        if tag == "float":
            if not isinstance(items, str) or items not in ("nan", "inf", "-inf"):
                raise ProtocolError(f"invalid special float {items!r:.60}")
            return float(items)
        if tag == "size":
            seq = self._seq(items, tag)
            if not all(type(d) is int and 0 <= d < 2**63 for d in seq):
                raise ProtocolError("a size holds non-negative 64-bit integers")
            return torch.Size(cast("list[int]", seq))  # checked above: sizes
        if tag == "slice":
            parts = [self.decode(v, depth + 1) for v in self._seq(items, tag)]
            if len(parts) != 3 or not all(p is None or type(p) is int for p in parts):
                raise ProtocolError("a slice holds three integers or nulls")
            return slice(*parts)
        if tag == "ellipsis":
            return Ellipsis
        if tag == "dtype":
            if not isinstance(items, str) or items not in DTYPES:
                raise ProtocolError(f"unsupported dtype {items!r:.60}")
            return DTYPES[items]
        if tag == "device":
            return device_from_wire(items)
        if tag == "bytes":
            return bytes(self._buffer(data))
        if tag == "complex":
            seq = self._seq(items, tag)
            if len(seq) != 2 or not all(_plain_number(p) for p in seq):
                raise ProtocolError("a complex number holds two numbers")
            numbers = cast("list[int | float]", seq)  # checked above: two plain numbers
            return complex(numbers[0], numbers[1])
        return self._module(data, depth)

    def _tensor(self, data: dict[str, JSONValue]) -> torch.Tensor:
        grad, param = data.get("rg", False), data.get("param", False)
        if type(grad) is not bool or type(param) is not bool:
            raise ProtocolError("a tensor's rg and param fields are true or false")
        tensor = tensor_from_buffer(data.get("dtype"), data.get("shape"), self._buffer(data))
        if grad and not (tensor.is_floating_point() or tensor.is_complex()):
            raise ProtocolError("only floating point tensors can require gradients")
        if param:
            return torch.nn.Parameter(tensor, requires_grad=grad)
        if grad:
            tensor.requires_grad_(True)
        return tensor

    def _module(self, data: dict[str, JSONValue], depth: int) -> torch.nn.Module:
        from .modules import decode_module

        _check_module_nesting(data, depth)
        try:
            return decode_module(data, self, depth)
        except DuetError:
            raise
        except Exception as exc:
            # torch's layer classes are the one place a spec reaches code that does not raise
            # ProtocolError: their constructors and add_module / register_buffer raise what
            # they like for settings or names that pass modules.py's checks (a child or a state
            # entry named "training", groups=0). The layer was not built: nothing to undo.
            raise ProtocolError(f"invalid module spec: {type(exc).__name__}: {exc}"[:500]) from exc

    @staticmethod
    def _seq(items: JSONValue, tag: str) -> list[JSONValue]:
        if not isinstance(items, list):
            raise ProtocolError(f"a {tag} value must hold a list")
        return items

    def _buffer(self, data: dict[str, JSONValue]) -> memoryview:
        index = data.get("buf")
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise ProtocolError(f"buffer index {index!r} is out of range")
        return self.buffers[index]


def _plain_number(value: object) -> bool:
    if type(value) is int:
        return value.bit_length() <= MAX_INT_BITS
    return type(value) is float


def _check_module_nesting(data: dict[str, JSONValue], depth: int) -> None:
    """Refuse a module spec whose children nest deeper than values may (decode_module follows
    them by recursion)."""
    stack = [(data, depth)]
    while stack:
        spec, level = stack.pop()
        if level > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        children = spec.get("children")
        if isinstance(children, list):
            stack.extend(
                (pair[1], level + 1)
                for pair in children
                if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], dict)
            )
