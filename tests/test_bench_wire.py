"""The load generators' frame walker: whole frames only, in place, the partial tail kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from capstone.bench.wire import whole_frames
from capstone.codec import Kind, encode, new_decoder


def walk(buffer: bytearray) -> list[tuple[int, bytes]]:
    """What a generator does with a read: walk, slice, then drop the walked frames."""
    seen, end = [], 0
    for kind, start, end in whole_frames(buffer):
        seen.append((kind, bytes(buffer[start:end])))
    del buffer[:end]
    return seen


def test_walks_whole_frames_and_keeps_the_partial_tail() -> None:
    buffer = bytearray(encode(Kind.WELCOME, b"bob") + encode(Kind.PONG) + encode(Kind.MESSAGE, b"\x03bobhi")[:6])
    assert walk(buffer) == [(Kind.WELCOME, b"bob"), (Kind.PONG, b"")]
    assert buffer == encode(Kind.MESSAGE, b"\x03bobhi")[:6]
    buffer += encode(Kind.MESSAGE, b"\x03bobhi")[6:]
    assert walk(buffer) == [(Kind.MESSAGE, b"\x03bobhi")]
    assert buffer == b""


def test_a_lone_header_fragment_is_no_frame() -> None:
    buffer = bytearray(b"\x00\x00")
    assert walk(buffer) == [] and buffer == b"\x00\x00"


@given(st.lists(st.tuples(st.sampled_from(list(Kind)), st.binary(max_size=300)), max_size=20),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_same_frames_as_the_codec_decoder_however_the_bytes_arrive(frames: list, cuts: list[int]) -> None:
    stream = b"".join(encode(kind, payload) for kind, payload in frames)
    decoder, buffer, walked, pos = new_decoder(1 << 20), bytearray(), [], 0
    while pos < len(stream):
        piece = stream[pos:pos + cuts[len(walked) % len(cuts)]]
        pos += len(piece)
        decoder.feed(piece)
        buffer += piece
        walked += walk(buffer)
    assert walked == [(kind, payload) for (kind,), payload in decoder] == frames
    assert buffer == b""
