"""lessons.toolkit.framing: the frame decoder against every way a stream can be cut; lessons.toolkit.sockio: recv_exact on real sockets."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lessons.toolkit.framing import LENGTH_HEADER, Frame, FrameDecoder, FrameTooLarge, encode_frame
from lessons.toolkit.sockio import IncompleteRead, recv_exact, recv_frame

CHAT_HEADER = struct.Struct("!IB")  # the capstone's header: length, then a kind byte
MAX_PAYLOAD = 64

payloads = st.binary(max_size=MAX_PAYLOAD)
chat_frames = st.lists(st.tuples(payloads, st.integers(0, 255)), max_size=20)


def encode_all(frames: list[tuple[bytes, int]]) -> bytes:
    return b"".join(encode_frame(payload, kind, header=CHAT_HEADER) for payload, kind in frames)


def expected(frames: list[tuple[bytes, int]]) -> list[Frame]:
    return [Frame((kind,), payload) for payload, kind in frames]


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """The stream in pieces, cut at `points` (any order, repeats allowed: empty pieces too)."""
    edges = [0, *sorted(points), len(stream)]
    return [stream[start:end] for start, end in zip(edges, edges[1:])]


def decode_pieces(pieces: list[bytes], header: struct.Struct = CHAT_HEADER) -> tuple[list[Frame], int]:
    decoder = FrameDecoder(header, max_payload=MAX_PAYLOAD)
    frames: list[Frame] = []
    for piece in pieces:
        decoder.feed(piece)
        frames.extend(decoder)
    return frames, decoder.pending


@settings(deadline=None, max_examples=300)
@given(frames=chat_frames, data=st.data())
def test_every_split_of_the_stream_gives_the_same_frames(frames, data):
    stream = encode_all(frames)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 2))
    assert decode_pieces(cut(stream, points)) == (expected(frames), 0)


@settings(deadline=None, max_examples=100)
@given(frames=chat_frames)
def test_one_byte_at_a_time_and_everything_at_once(frames):
    stream = encode_all(frames)
    one_by_one = [stream[i:i + 1] for i in range(len(stream))]
    assert decode_pieces(one_by_one) == (expected(frames), 0)
    assert decode_pieces([stream]) == (expected(frames), 0)


@settings(deadline=None, max_examples=100)
@given(payloads=st.lists(payloads, max_size=20), data=st.data())
def test_length_only_header(payloads, data):
    stream = b"".join(encode_frame(payload) for payload in payloads)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    frames, pending = decode_pieces(cut(stream, points), LENGTH_HEADER)
    assert [frame.payload for frame in frames] == payloads
    assert all(frame.fields == () for frame in frames)
    assert pending == 0


def test_many_frames_through_one_decoder_keep_the_buffer_small():
    """The decoder compacts consumed bytes, so a long-lived connection does not grow forever."""
    decoder = FrameDecoder(CHAT_HEADER, max_payload=MAX_PAYLOAD)
    frame = encode_frame(b"x" * 40, 7, header=CHAT_HEADER)
    for _ in range(10_000):
        decoder.feed(frame[:10])
        decoder.feed(frame[10:])
        assert list(decoder) == [Frame((7,), b"x" * 40)]
    assert decoder.pending == 0
    assert len(decoder._buffer) < 4 * len(frame)


def test_oversized_header_is_refused_before_its_payload_arrives():
    decoder = FrameDecoder(CHAT_HEADER, max_payload=MAX_PAYLOAD)
    good = encode_frame(b"fine", 1, header=CHAT_HEADER)
    decoder.feed(good + CHAT_HEADER.pack(MAX_PAYLOAD + 1, 2))  # the header alone, no payload byte
    frames = []
    with pytest.raises(FrameTooLarge) as raised:
        for frame in decoder:
            frames.append(frame)
    assert frames == [Frame((1,), b"fine")]  # what came before is delivered
    assert (raised.value.length, raised.value.limit) == (MAX_PAYLOAD + 1, MAX_PAYLOAD)
    with pytest.raises(FrameTooLarge):  # and it stays refused: the stream cannot be resynchronised
        decoder.next_frame()


def test_a_payload_of_exactly_the_limit_is_accepted():
    decoder = FrameDecoder(CHAT_HEADER, max_payload=MAX_PAYLOAD)
    decoder.feed(encode_frame(b"y" * MAX_PAYLOAD, 3, header=CHAT_HEADER))
    assert list(decoder) == [Frame((3,), b"y" * MAX_PAYLOAD)]


def test_pending_counts_the_bytes_of_a_cut_frame():
    decoder = FrameDecoder(CHAT_HEADER, max_payload=MAX_PAYLOAD)
    whole = encode_frame(b"hello", 5, header=CHAT_HEADER)
    decoder.feed(whole + whole[:3])  # one frame and the start of a header
    assert list(decoder) == [Frame((5,), b"hello")]
    assert decoder.pending == 3
    decoder.feed(whole[3:-1])  # all but the last byte
    assert list(decoder) == []
    assert decoder.pending == len(whole) - 1
    decoder.feed(whole[-1:])
    assert list(decoder) == [Frame((5,), b"hello")]
    assert decoder.pending == 0


def send_byte_by_byte(sock: socket.socket, data: bytes, close: bool) -> threading.Thread:
    def write() -> None:
        for index in range(len(data)):
            sock.sendall(data[index:index + 1])
        if close:
            sock.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    right.settimeout(20)
    yield left, right
    left.close()
    right.close()


@pytest.fixture
def tcp_pair():
    """A real TCP connection on loopback, Nagle off so single bytes leave one by one."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname(), timeout=20)
        accepted, _ = server.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    accepted.settimeout(20)
    yield client, accepted
    client.close()
    accepted.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("connection", ["pair", "tcp_pair"])
def test_recv_exact_gathers_bytes_sent_one_at_a_time(connection, request):
    writer_end, reader_end = request.getfixturevalue(connection)
    data = bytes(range(256)) * 4
    writer = send_byte_by_byte(writer_end, data, close=False)
    assert recv_exact(reader_end, 300) + recv_exact(reader_end, len(data) - 300) == data
    writer.join(timeout=20)


@pytest.mark.timeout(30)
def test_recv_frame_reads_frames_sent_one_byte_at_a_time(tcp_pair):
    writer_end, reader_end = tcp_pair
    frames = [(b"first", 1), (b"", 2), (b"third" * 10, 3)]
    writer = send_byte_by_byte(writer_end, encode_all(frames), close=False)
    received = [recv_frame(reader_end, CHAT_HEADER, MAX_PAYLOAD) for _ in frames]
    assert received == expected(frames)
    writer.join(timeout=20)


@pytest.mark.timeout(30)
def test_eof_in_the_middle_of_a_frame(pair):
    writer_end, reader_end = pair
    frame = encode_frame(b"0123456789", 9, header=CHAT_HEADER)
    writer = send_byte_by_byte(writer_end, frame[:8], close=True)  # header (5) and 3 payload bytes
    with pytest.raises(IncompleteRead) as raised:
        recv_frame(reader_end, CHAT_HEADER, MAX_PAYLOAD)
    assert (raised.value.received, raised.value.expected) == (3, 10)
    assert isinstance(raised.value, EOFError)
    writer.join(timeout=20)


@pytest.mark.timeout(30)
def test_eof_between_frames_reads_nothing(pair):
    writer_end, reader_end = pair
    writer_end.sendall(encode_frame(b"only"))
    writer_end.close()
    assert recv_frame(reader_end) == Frame((), b"only")
    with pytest.raises(IncompleteRead) as raised:
        recv_frame(reader_end)
    assert raised.value.received == 0


@pytest.mark.timeout(30)
def test_recv_frame_refuses_an_oversized_header_without_reading_the_payload(pair):
    writer_end, reader_end = pair
    writer_end.sendall(CHAT_HEADER.pack(MAX_PAYLOAD + 1, 1) + b"z" * 10)
    with pytest.raises(FrameTooLarge):
        recv_frame(reader_end, CHAT_HEADER, MAX_PAYLOAD)
    assert reader_end.recv(100) == b"z" * 10  # the payload is still unread


def test_decoder_at_eof_mid_frame_reports_pending():
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"abcdef")[:-2])
    assert list(decoder) == []
    assert decoder.pending == LENGTH_HEADER.size + 4


def test_the_decoder_needs_no_socket_module() -> None:
    """The chat's room decodes with lessons.toolkit.framing: importing it must load no I/O module."""
    code = ("import sys, lessons.toolkit.framing; "
            "print([m for m in ('socket', 'select', 'selectors') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]", result.stdout
