"""Chunking and reassembly of frames (duet.protocol.chunking)."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.errors import ProtocolError
from duet.protocol.chunking import (
    DEFAULT_CHUNK_SIZE,
    FLAG_FINAL,
    HEADER_SIZE,
    Reassembler,
    abort_chunk,
    chunk_count,
    split_frame,
)
from duet.protocol.frames import FrameTooLarge, declared_size, encode_frame, header_of

CHUNK = DEFAULT_CHUNK_SIZE
BODY = CHUNK - HEADER_SIZE


def roundtrip(frames: list[bytes], chunk_size: int = CHUNK) -> list[bytes]:
    reassembler = Reassembler(max_frame_bytes=16 << 20)
    out: list[bytes] = []
    for seq, frame in enumerate(frames):
        chunks = list(split_frame(frame, seq, chunk_size))
        assert len(chunks) == chunk_count(len(frame), chunk_size)
        assert all(len(c) <= chunk_size for c in chunks)
        results = [reassembler.feed(c) for c in chunks]
        assert all(r is None for r in results[:-1])
        assert results[-1] is not None
        out.append(results[-1])
    assert reassembler.buffered == 0 and not reassembler.in_frame
    return out


@pytest.mark.parametrize(
    "size", [0, 1, BODY - 1, BODY, BODY + 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024 + 7]
)
def test_roundtrip_sizes(size: int) -> None:
    frame = os.urandom(size)
    assert roundtrip([frame]) == [frame]


def test_roundtrip_many_frames_and_small_chunks() -> None:
    frames = [os.urandom(n) for n in (0, 3, 10, 11, 100, 0, 1)]
    assert roundtrip(frames, chunk_size=HEADER_SIZE + 5) == frames


def test_accepts_bytearray_and_memoryview() -> None:
    frame = bytearray(os.urandom(1000))
    chunks = list(split_frame(memoryview(frame), 0, 300))
    reassembler = Reassembler(2000)
    results = [reassembler.feed(bytearray(c)) for c in chunks]
    assert results[-1] == bytes(frame)


def test_chunk_size_too_small() -> None:
    with pytest.raises(ValueError):
        list(split_frame(b"x", 0, HEADER_SIZE))


def test_sequence_wraps() -> None:
    reassembler = Reassembler(10)
    reassembler._expected_seq = 2**32 - 1
    assert reassembler.feed(next(split_frame(b"a", 2**32 - 1))) == b"a"
    assert reassembler.feed(next(split_frame(b"b", 2**32))) == b"b"


def test_abort_drops_partial_frame() -> None:
    reassembler = Reassembler(1000)
    chunks = list(split_frame(b"x" * 100, 0, HEADER_SIZE + 10))
    for c in chunks[:3]:
        assert reassembler.feed(c) is None
    assert reassembler.buffered == 30
    assert reassembler.feed(abort_chunk(0)) is None
    assert reassembler.buffered == 0
    assert reassembler.feed(next(split_frame(b"next", 1))) == b"next"


@pytest.mark.parametrize(
    "chunk",
    [
        b"",
        b"\x01\x00\x00",  # shorter than the header
        struct.pack("!BI", 0x80, 0) + b"x",  # unknown flag
        struct.pack("!BI", FLAG_FINAL, 1) + b"x",  # wrong sequence number
        struct.pack("!BI", 0x02, 0) + b"x",  # abort with a body
        struct.pack("!BI", 0x03, 0),  # abort + final
    ],
)
def test_malformed_chunk(chunk: bytes) -> None:
    reassembler = Reassembler(100)
    with pytest.raises(ProtocolError):
        reassembler.feed(chunk)
    with pytest.raises(ProtocolError):  # the stream stays failed
        reassembler.feed(next(split_frame(b"ok", 0)))


def test_interleaved_frames_rejected() -> None:
    reassembler = Reassembler(1000)
    first = list(split_frame(b"a" * 50, 0, HEADER_SIZE + 10))
    second = list(split_frame(b"b" * 50, 1, HEADER_SIZE + 10))
    reassembler.feed(first[0])
    with pytest.raises(ProtocolError):
        reassembler.feed(second[0])


def test_text_chunk_rejected() -> None:
    with pytest.raises(ProtocolError):
        Reassembler(100).feed("text")  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [101, 1000])
def test_over_max_frame_bytes(size: int) -> None:
    reassembler = Reassembler(max_frame_bytes=100)
    with pytest.raises(ProtocolError, match="exceeds"):
        for chunk in split_frame(b"z" * size, 0, HEADER_SIZE + 30):
            reassembler.feed(chunk)
            assert reassembler.buffered <= 100
    assert reassembler.buffered == 0


def test_exactly_max_frame_bytes() -> None:
    reassembler = Reassembler(max_frame_bytes=100)
    out = [reassembler.feed(c) for c in split_frame(b"z" * 100, 0, HEADER_SIZE + 30)]
    assert out[-1] == b"z" * 100


MAX = 256


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            # well-formed headers with plausible sequence numbers, to get past the header checks
            st.builds(
                lambda flags, seq, body: struct.pack("!BI", flags, seq) + body,
                st.sampled_from([0, 1, 2, 3, 4]),
                st.integers(0, 3),
                st.binary(max_size=120),
            ),
        ),
        max_size=40,
    )
)
def test_random_chunks_give_frames_or_protocol_error(chunks: list[bytes]) -> None:
    reassembler = Reassembler(max_frame_bytes=MAX)
    for chunk in chunks:
        try:
            frame = reassembler.feed(chunk)
        except ProtocolError:
            assert reassembler.buffered == 0
            continue
        assert reassembler.buffered <= MAX
        if frame is not None:
            assert isinstance(frame, bytes)
            assert len(frame) <= MAX


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8), st.integers(HEADER_SIZE + 1, 700))
def test_random_frames_roundtrip(frames: list[bytes], chunk_size: int) -> None:
    assert roundtrip(frames, chunk_size) == frames


def test_an_oversized_frame_is_discarded_and_the_next_one_reassembles() -> None:
    reassembler = Reassembler(max_frame_bytes=100)
    chunks = list(split_frame(b"z" * 1000, 0, HEADER_SIZE + 30))
    fed = 0
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 100 bytes") as info:
        for chunk in chunks:
            fed += 1
            reassembler.feed(chunk)
    assert fed == 4 and info.value.head == b"z" * 120  # the chunk that crossed the limit
    assert reassembler.in_frame and reassembler.buffered == 0
    rest = chunks[fed:]
    assert [reassembler.feed(c) for c in rest] == [None] * len(rest)
    assert reassembler.bytes_discarded == 1000 and reassembler.frames_refused == 1
    assert reassembler.feed(next(split_frame(b"next", 1))) == b"next"


def test_an_aborted_refused_frame_ends_cleanly() -> None:
    reassembler = Reassembler(max_frame_bytes=10)
    chunks = list(split_frame(b"z" * 100, 0, HEADER_SIZE + 20))
    with pytest.raises(FrameTooLarge):
        reassembler.feed(chunks[0])
    assert reassembler.feed(chunks[1]) is None
    assert reassembler.feed(abort_chunk(0)) is None
    assert not reassembler.in_frame
    assert reassembler.feed(next(split_frame(b"ok", 1))) == b"ok"


def test_a_frame_is_refused_from_the_size_its_head_declares() -> None:
    frame = encode_frame(b'[{"k": "sync", "rid": 1}]', [memoryview(bytes(10_000))])
    reassembler = Reassembler(max_frame_bytes=5_000, frame_size=declared_size)
    chunks = list(split_frame(frame, 0, HEADER_SIZE + 1000))
    with pytest.raises(FrameTooLarge, match=f"of {len(frame)} bytes exceeds") as info:
        reassembler.feed(chunks[0])  # the first chunk tells
    assert header_of(info.value.head) == b'[{"k": "sync", "rid": 1}]'
    assert all(reassembler.feed(c) is None for c in chunks[1:])
    assert reassembler.feed(next(split_frame(b"x", 1))) == b"x"


def test_the_limit_can_change_between_frames_and_within_one() -> None:
    frame = encode_frame(b"[]", [memoryview(bytes(3000))])
    reassembler = Reassembler(max_frame_bytes=1 << 20, frame_size=declared_size)
    assert [reassembler.feed(c) for c in split_frame(frame, 0, 1000)][-1] == frame
    chunks = list(split_frame(frame, 1, 1000))
    reassembler.feed(chunks[0])
    reassembler.max_frame_bytes = 1500
    with pytest.raises(FrameTooLarge):
        reassembler.feed(chunks[1])
    reassembler.feed(chunks[2])
    reassembler.feed(chunks[3])
    reassembler.max_frame_bytes = 10_000
    assert [reassembler.feed(c) for c in split_frame(frame, 2, 1000)][-1] == frame


def test_a_head_that_is_not_a_frame_leaves_the_limit_to_the_bytes() -> None:
    reassembler = Reassembler(max_frame_bytes=50, frame_size=declared_size)
    assert reassembler.feed(next(split_frame(b"not a duet frame", 0))) == b"not a duet frame"
    with pytest.raises(FrameTooLarge):
        for chunk in split_frame(b"q" * 60, 1, HEADER_SIZE + 20):
            reassembler.feed(chunk)
