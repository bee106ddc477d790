"""Value serde: Python and torch values <-> JSON-ready data plus raw binary buffers.

Never pickle. Plain JSON scalars (None, bool, int, str, finite float) travel as themselves;
everything else is an object tagged with ``"$"``: containers, tensors and numpy arrays (dtype +
shape + an index into the frame's buffers), references to remote objects, slices, dtypes,
sizes, nn.Module specs. Numpy scalars travel as the Python numbers they hold; numpy arrays of
Python objects (or of any dtype that is not plain numbers) are refused.
Decoding trusts nothing: unknown tags, wrong shapes, out-of-range buffer indexes and deep nesting
raise ProtocolError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ProtocolError

MAX_DEPTH = 64
MAX_INT_BITS = 64

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
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name)
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64", "complex64", "complex128")
}  # fmt: skip


def tensor_to_buffer(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor, without a copy when it is already contiguous."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def _check_layout(what: str, dtype_name: Any, shape: Any, itemsize: int, buffer: memoryview) -> int:
    """The number of elements of a ``shape`` whose bytes are exactly ``buffer``."""
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 2**40 for d in shape):
        raise ProtocolError(f"invalid {what} shape {shape!r}")
    if len(shape) > 32:
        raise ProtocolError(f"{what} of {len(shape)} dimensions is not supported")
    numel = math.prod(shape)
    if numel * itemsize != buffer.nbytes:
        raise ProtocolError(
            f"{what} of shape {shape} and dtype {dtype_name} needs {numel * itemsize} bytes, "
            f"its buffer has {buffer.nbytes}"
        )
    return numel


def tensor_from_buffer(dtype_name: Any, shape: Any, buffer: memoryview) -> torch.Tensor:
    dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ProtocolError(f"unsupported tensor dtype {dtype_name!r}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    numel = _check_layout("tensor", dtype_name, shape, itemsize, buffer)
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(bytearray(buffer), dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)


def array_from_buffer(dtype_name: Any, shape: Any, buffer: memoryview) -> np.ndarray[Any, Any]:
    """A numpy array of its own (writable, not sharing the frame's memory)."""
    dtype = NUMPY_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ProtocolError(f"unsupported numpy dtype {dtype_name!r}")
    _check_layout("array", dtype_name, shape, dtype.itemsize, buffer)
    return np.frombuffer(bytearray(buffer), dtype=dtype).reshape(shape)


def _encode_array(array: np.ndarray[Any, Any], buffers: list[memoryview]) -> dict[str, Any]:
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
        self, buffers: list[memoryview], ref_of: Callable[[Any], str | None] | None = None
    ):
        self.buffers = buffers
        self.ref_of = ref_of

    def encode(self, value: Any, depth: int = 0) -> Any:
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

    def encode_tensor(self, tensor: torch.Tensor) -> dict[str, Any]:
        if tensor.dtype not in DTYPE_NAMES:
            raise ProtocolError(f"tensors of dtype {tensor.dtype} cannot be sent")
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        self.buffers.append(tensor_to_buffer(tensor.cpu()))
        out: dict[str, Any] = {
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

    def __init__(self, buffers: list[memoryview], resolve_ref: Callable[[str], Any] | None = None):
        self.buffers = buffers
        self.resolve_ref = resolve_ref

    def decode(self, data: Any, depth: int = 0) -> Any:
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
                    out[key] = self.decode(pair[1], depth + 1)
                except TypeError as exc:
                    raise ProtocolError(
                        f"unhashable dict key of type {type(key).__name__}"
                    ) from exc
            return out
        if tag == "tensor":
            tensor = tensor_from_buffer(data.get("dtype"), data.get("shape"), self._buffer(data))
            if data.get("param"):
                return torch.nn.Parameter(tensor, requires_grad=bool(data.get("rg")))
            if data.get("rg"):
                if not (tensor.is_floating_point() or tensor.is_complex()):
                    raise ProtocolError("only floating point tensors can require gradients")
                tensor.requires_grad_(True)
            return tensor
        if tag == "ndarray":
            return array_from_buffer(data.get("dtype"), data.get("shape"), self._buffer(data))
        if tag == "ref":
            ref = data.get("id")
            if not isinstance(ref, str) or self.resolve_ref is None:
                raise ProtocolError("invalid object reference")
            return self.resolve_ref(ref)
        if tag == "float":
            if items not in ("nan", "inf", "-inf"):
                raise ProtocolError(f"invalid special float {items!r}")
            return float(items)
        if tag == "size":
            seq = self._seq(items, tag)
            if not all(type(d) is int and d >= 0 for d in seq):
                raise ProtocolError("a size holds non-negative integers")
            return torch.Size(seq)
        if tag == "slice":
            parts = [self.decode(v, depth + 1) for v in self._seq(items, tag)]
            if len(parts) != 3 or not all(p is None or type(p) is int for p in parts):
                raise ProtocolError("a slice holds three integers or nulls")
            return slice(*parts)
        if tag == "ellipsis":
            return Ellipsis
        if tag == "dtype":
            if items not in DTYPES:
                raise ProtocolError(f"unsupported dtype {items!r}")
            return DTYPES[items]
        if tag == "device":
            if items != "cpu" and not (isinstance(items, str) and items.startswith("cuda")):
                raise ProtocolError(f"unsupported device {items!r}")
            return torch.device(items)
        if tag == "bytes":
            return bytes(self._buffer(data))
        if tag == "complex":
            seq = self._seq(items, tag)
            if len(seq) != 2 or not all(isinstance(p, int | float) for p in seq):
                raise ProtocolError("a complex number holds two numbers")
            return complex(seq[0], seq[1])
        if tag == "module":
            from .modules import decode_module

            return decode_module(data, self, depth)
        raise ProtocolError(f"unknown value tag {tag!r}")

    @staticmethod
    def _seq(items: Any, tag: str) -> list[Any]:
        if not isinstance(items, list):
            raise ProtocolError(f"a {tag} value must hold a list")
        return items

    def _buffer(self, data: dict[str, Any]) -> memoryview:
        index = data.get("buf")
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise ProtocolError(f"buffer index {index!r} is out of range")
        return self.buffers[index]
