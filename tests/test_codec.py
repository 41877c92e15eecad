"""The chat's codec (capstone/codec.py) against the bytes PROTOCOL.md writes down.

Expected bytes are spelled out here by hand or packed with struct "!IB" as the page says,
never produced by the codec itself, so a wrong constant or layout cannot agree with itself.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone import codec
from capstone.codec import ErrorCode, FrameTooLarge, Kind

PAGE_HEADER = struct.Struct("!IB")

KINDS_ON_THE_PAGE = {
    "JOIN": 0x01, "SAY": 0x02, "LEAVE": 0x03, "PING": 0x04, "WHO": 0x05,
    "ADMIN_SAY": 0x10, "KICK": 0x11, "LIST": 0x12,
    "WELCOME": 0x81, "ERROR": 0x82, "JOINED": 0x83, "LEFT": 0x84, "MESSAGE": 0x85,
    "ANNOUNCE": 0x86, "PONG": 0x87, "MEMBERS": 0x88, "OK": 0x90,
}
ERROR_CODES_ON_THE_PAGE = {
    "NAME_TAKEN": 1, "NAME_INVALID": 2, "NOT_JOINED": 3, "ALREADY_JOINED": 4, "TOO_LARGE": 5,
    "BAD_FRAME": 6, "RATE_LIMITED": 7, "SHUTDOWN": 8, "TIMEOUT": 9, "KICKED": 10,
    "NO_SUCH_MEMBER": 11,
}


def test_the_header_is_a_uint32_length_then_a_uint8_kind_in_network_order() -> None:
    assert codec.HEADER.format == "!IB"
    assert codec.HEADER.size == 5


def test_every_kind_has_the_value_in_the_tables() -> None:
    assert {kind.name: kind.value for kind in Kind} == KINDS_ON_THE_PAGE


def test_every_error_code_has_the_value_in_the_table() -> None:
    assert {code.name: code.value for code in ErrorCode} == ERROR_CODES_ON_THE_PAGE


def test_the_closing_errors_are_the_ones_the_table_says_close() -> None:
    assert {code.name for code in codec.CLOSING_ERRORS} == {"TOO_LARGE", "SHUTDOWN", "TIMEOUT", "KICKED"}


def test_chat_and_admin_kinds() -> None:
    assert {kind.name for kind in codec.CHAT_KINDS} == {"JOIN", "SAY", "LEAVE", "PING", "WHO"}
    assert {kind.name for kind in codec.ADMIN_KINDS} == {"ADMIN_SAY", "KICK", "LIST"}


def test_the_default_limits() -> None:
    assert codec.DEFAULT_MAX_PAYLOAD == 4096
    assert codec.MAX_PING == 64


def test_encode_spelled_out() -> None:
    assert codec.encode(Kind.PING, b"hi") == b"\x00\x00\x00\x02\x04hi"
    assert codec.encode(Kind.OK) == b"\x00\x00\x00\x00\x90"
    assert codec.encode_text(Kind.WELCOME, "Zoë") == b"\x00\x00\x00\x04\x81Zo\xc3\xab"


def test_an_error_is_its_code_byte_then_a_utf8_reason() -> None:
    frame = codec.encode_error(ErrorCode.NAME_TAKEN, "déjà pris")
    assert frame == b"\x00\x00\x00\x0c\x82\x01d\xc3\xa9j\xc3\xa0 pris"
    assert codec.decode_error(frame[5:]) == (1, "déjà pris")


def test_a_message_is_the_name_length_in_bytes_the_name_then_the_text() -> None:
    frame = codec.encode_message("Zoë", "hi\n")
    assert frame == b"\x00\x00\x00\x08\x85\x04Zo\xc3\xabhi\n"
    assert codec.decode_message(frame[5:]) == ("Zoë", "hi\n")


def test_a_message_from_a_32_emoji_name_fits_the_length_byte() -> None:
    name = "😀" * 32  # the longest name in bytes: 128
    frame = codec.encode_message(name, "x" * 4096)
    assert frame[5] == 128
    assert PAGE_HEADER.unpack(frame[:5]) == (1 + 128 + 4096, 0x85)


def test_members_are_joined_by_newline_with_no_trailing_one() -> None:
    assert codec.encode_members(["bob", "Zoë"]) == b"\x00\x00\x00\x08\x88bob\nZo\xc3\xab"
    assert codec.encode_members([]) == b"\x00\x00\x00\x00\x88"


def test_kind_names_for_logs() -> None:
    assert codec.kind_name(0x85) == "MESSAGE"
    assert codec.kind_name(0x42) == "0x42"


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(Kind)), st.binary(max_size=300))
def test_encode_packs_the_page_header(kind: Kind, payload: bytes) -> None:
    assert codec.encode(kind, payload) == PAGE_HEADER.pack(len(payload), kind) + payload


def page_frames(frames: list[tuple[int, bytes]]) -> bytes:
    return b"".join(PAGE_HEADER.pack(len(payload), kind) + payload for kind, payload in frames)


FRAMES = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=64)), max_size=8)


@settings(max_examples=100, deadline=None)
@given(FRAMES, st.data())
def test_the_decoder_reassembles_frames_split_at_any_points(frames: list, data: st.DataObject) -> None:
    """Frames split across any number of recv calls, and several in one recv."""
    stream = page_frames(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder, decoded = codec.new_decoder(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        decoder.feed(stream[start:end])
        decoded += [(fields[0], payload) for fields, payload in decoder]
    assert decoded == frames
    assert decoder.pending == 0


def test_a_payload_of_exactly_the_limit_is_accepted() -> None:
    decoder = codec.new_decoder()
    decoder.feed(PAGE_HEADER.pack(4096, 0x02) + b"x" * 4096)
    assert [(fields[0], len(payload)) for fields, payload in decoder] == [(0x02, 4096)]


def test_a_header_over_the_limit_is_refused_from_the_header_alone() -> None:
    decoder = codec.new_decoder()
    decoder.feed(page_frames([(0x04, b"ok")]) + PAGE_HEADER.pack(4097, 0x02))  # no payload byte sent
    frames = decoder.next_frame()
    assert frames is not None and frames.payload == b"ok"
    with pytest.raises(FrameTooLarge) as caught:
        decoder.next_frame()
    assert caught.value.length == 4097


def test_the_limit_is_a_parameter() -> None:
    decoder = codec.new_decoder(max_payload=10)
    decoder.feed(PAGE_HEADER.pack(11, 0x02))
    with pytest.raises(FrameTooLarge):
        list(decoder)


def test_the_codec_and_the_room_load_no_socket_module() -> None:
    """The room is sans-IO: importing it (and the codec it cuts frames with) loads no I/O module."""
    import subprocess
    import sys

    code = ("import sys, capstone.codec, capstone.room; "
            "print([m for m in ('socket', 'select', 'selectors') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]", result.stdout
