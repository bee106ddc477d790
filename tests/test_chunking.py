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
