"""The wire format on its own: frames, values and messages, with no I/O."""

from __future__ import annotations

import math
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.errors import ProtocolError
from duet.protocol import allowlist
from duet.protocol.frames import PROTOCOL_VERSION, decode_frame, encode_frame
from duet.protocol.messages import Call, Get, Hello, Put, pack, unpack
from duet.protocol.serde import DTYPES, Decoder, Encoder


def round_trip(value):
    buffers: list[memoryview] = []
    data = Encoder(buffers).encode(value)
    frame = pack([Put(id="x1", value=data)], buffers)
    messages, received = unpack(frame, max_frame_bytes=2**30)
    return Decoder(received).decode(messages[0].value)


@pytest.mark.parametrize("dtype_name", sorted(DTYPES))
def test_tensor_of_every_dtype_round_trips_exactly(dtype_name):
    dtype = DTYPES[dtype_name]
    if dtype == torch.bool:
        tensor = torch.tensor([[True, False, True], [False, False, True]])
    elif dtype.is_complex:
        tensor = torch.randn(2, 3, dtype=dtype)
    elif dtype.is_floating_point:
        tensor = torch.randn(2, 3).to(dtype)
    else:
        tensor = torch.arange(6).reshape(2, 3).to(dtype)
    back = round_trip(tensor)
    assert back.dtype == dtype and back.shape == tensor.shape
    assert torch.equal(back, tensor)


@pytest.mark.parametrize(
    "tensor",
    [
        torch.tensor(3.5),
        torch.zeros(0, 4),
        torch.arange(12).reshape(3, 4).t(),
        torch.ones(2, 3)[:, 1],
        torch.arange(10.0)[3:7],
        torch.tensor([1 + 2j, 3 - 4j]).conj(),
        torch.tensor([1 + 2j, 3 - 4j]).conj().imag,
        torch.tensor([3 - 4j]).conj().imag,
        torch.zeros(3, 2, dtype=torch.bfloat16)[:1, 0],
        torch.zeros(3, 2, requires_grad=True)[:1, 0],
    ],
    ids=[
        "scalar",
        "empty",
        "transposed",
        "strided-view",
        "offset-view",
        "conjugate-view",
        "negative-view",
        "contiguous-negative-view",
        "one-element-strided",
        "one-element-strided-with-grad",
    ],
)
def test_unusual_tensor_layouts_round_trip(tensor):
    back = round_trip(tensor)
    assert back.shape == tensor.shape and torch.equal(back, tensor)


def test_requires_grad_and_parameters_survive_the_trip():
    back = round_trip([torch.ones(2, requires_grad=True), torch.nn.Parameter(torch.zeros(3))])
    assert back[0].requires_grad and isinstance(back[1], torch.nn.Parameter)


def test_python_values_round_trip_with_their_types():
    value = {
        "none": None, "bool": True, "int": -(2**62), "float": 0.25, "str": "héllo",
        "list": [1, [2, 3]], "tuple": (1, "a", (2.5,)), 3: "int key", (1, 2): "tuple key",
        "slice": slice(1, None, 2), "ellipsis": ..., "dtype": torch.bfloat16,
        "size": torch.Size([2, 3]), "bytes": b"\x00\x01", "complex": 1 + 2j,
        "device": torch.device("cpu"),
    }  # fmt: skip
    back = round_trip(value)
    assert back == value
    assert (
        type(back["tuple"]) is tuple
        and type(back["list"]) is list
        and type(back["size"]) is torch.Size
    )


def test_special_floats_round_trip():
    back = round_trip([math.inf, -math.inf, math.nan])
    assert back[0] == math.inf and back[1] == -math.inf and math.isnan(back[2])


def test_a_model_travels_as_layers_and_weights():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
        torch.nn.Linear(4 * 26 * 26, 10, bias=False), torch.nn.Dropout(0.3),
    )  # fmt: skip
    model.eval()
    back = round_trip(model)
    assert [type(m) for m in back] == [type(m) for m in model]
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(back(x), model(x))
    assert back[4].bias is None and back[5].p == 0.3 and not back.training


def test_values_that_cannot_travel_are_refused_by_name():
    with pytest.raises(ProtocolError, match="type function"):
        Encoder([]).encode(lambda: 0)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"$": "tensor", "dtype": "float32", "shape": [2], "buf": 0}, "needs 8 bytes"),
        ({"$": "tensor", "dtype": "object", "shape": [1], "buf": 0}, "unsupported tensor dtype"),
        ({"$": "tensor", "dtype": "uint8", "shape": [-1], "buf": 0}, "invalid tensor shape"),
        ({"$": "tensor", "dtype": "uint8", "shape": [3], "buf": 7}, "out of range"),
        ({"$": "pickle", "v": "gASV"}, "unknown value tag"),
        (
            {"$": "module", "type": "os.system", "config": {}, "children": [], "state": []},
            "not on the allowlist",
        ),
        ({"$": "ref", "id": "x"}, "invalid object reference"),
        (2**70, "too large"),
    ],
)
def test_hostile_values_are_protocol_errors(data, message):
    with pytest.raises(ProtocolError, match=message):
        Decoder([memoryview(b"abc")]).decode(data)


def test_deeply_nested_values_are_refused():
    data: object = 1
    for _ in range(100):
        data = {"$": "list", "v": [data]}
    with pytest.raises(ProtocolError, match="nested"):
        Decoder([]).decode(data)


def test_frame_round_trip_keeps_header_and_buffers():
    frame = encode_frame(b'{"a":1}', [b"xyz", memoryview(b""), bytes(range(256))])
    decoded = decode_frame(frame)
    assert decoded.header == b'{"a":1}'
    assert [bytes(b) for b in decoded.buffers] == [b"xyz", b"", bytes(range(256))]


def test_unknown_protocol_version_is_named_in_the_error():
    frame = bytearray(encode_frame(b"[]"))
    frame[2] = PROTOCOL_VERSION + 1
    with pytest.raises(ProtocolError, match=f"version {PROTOCOL_VERSION + 1}"):
        decode_frame(bytes(frame))


def test_oversized_frames_are_refused_before_decoding():
    frame = encode_frame(b"[]", [b"\x00" * 1000])
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode_frame(frame, max_frame_bytes=500)


def test_lying_lengths_are_refused():
    frame = bytearray(encode_frame(b"[]", [b"abcd"]))
    struct.pack_into("<Q", frame, 12, 2**60)
    with pytest.raises(ProtocolError):
        decode_frame(bytes(frame))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_protocol_error_never_a_crash(data):
    try:
        unpack(data, max_frame_bytes=10_000)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_headers_in_a_valid_frame_give_protocol_error(header):
    try:
        unpack(encode_frame(header), max_frame_bytes=10_000)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text() | st.floats(),
                    lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20))  # fmt: skip
def test_random_json_values_decode_or_give_protocol_error(data):
    try:
        Decoder([]).decode(data)
    except ProtocolError:
        pass


def test_messages_round_trip_and_unknown_kinds_are_refused():
    frame = pack([Hello(duet_version="1", torch_version="2", allowlist="d", role="owner"),
                  Call(op="torch.zeros", args=[2], result="a1"), Get(rid=5, id="a1")])  # fmt: skip
    messages, _ = unpack(frame, max_frame_bytes=10_000)
    assert [m.k for m in messages] == ["hello", "call", "get"]
    with pytest.raises(ProtocolError, match="malformed message"):
        unpack(encode_frame(b'[{"k": "exec", "code": "print(1)"}]'), max_frame_bytes=10_000)
    with pytest.raises(ProtocolError, match="malformed message"):
        unpack(
            encode_frame(b'[{"k": "call", "op": "x", "result": "../../etc"}]'),
            max_frame_bytes=10_000,
        )


def test_allowlist_refuses_escapes_and_file_access():
    for path in ["torch.load", "torch.save", "torch.from_file", "os.system", "builtins.eval",
                 "torch.Tensor.__class__", "torch.__builtins__"]:  # fmt: skip
        with pytest.raises(allowlist.NotAllowed):
            allowlist.function(path)
    for name in ["__class__", "__subclasses__", "__globals__", "__reduce__", "__reduce_ex__",
                 "__dict__", "__init__", "storage", "data", "numpy"]:  # fmt: skip
        with pytest.raises(allowlist.NotAllowed):
            allowlist.member("Tensor", name)


def test_allowlist_digest_is_stable_and_sensitive():
    assert allowlist.digest() == allowlist.digest()
    op = allowlist.FUNCTIONS.pop("torch.zeros")
    try:
        assert (
            allowlist.digest() != allowlist.digest.__wrapped__()
            if hasattr(allowlist.digest, "__wrapped__")
            else True
        )
    finally:
        allowlist.FUNCTIONS["torch.zeros"] = op
