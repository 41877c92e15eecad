"""The chat's frames, as bytes: the wire format of PROTOCOL.md and nothing else.

A frame is the struct lesson's length-prefixed frame with one more header field, the
kind: `!IB` = payload length (uint32), kind (uint8), then the payload. Decoding reuses
the struct-recv lesson's FrameDecoder; this module only names the kinds and error codes and
builds the payloads that have a layout of their own (ERROR, MESSAGE).
"""

from __future__ import annotations

import struct
from enum import IntEnum

from lessons.toolkit.framing import FrameDecoder, FrameTooLarge  # noqa: F401  (re-exported)

HEADER = struct.Struct("!IB")
DEFAULT_MAX_PAYLOAD = 4096
MAX_PING = 64


class Kind(IntEnum):
    # client -> server
    JOIN = 0x01
    SAY = 0x02
    LEAVE = 0x03
    PING = 0x04
    WHO = 0x05
    # administrator -> server (admin socket only)
    ADMIN_SAY = 0x10
    KICK = 0x11
    LIST = 0x12
    # server -> client
    WELCOME = 0x81
    ERROR = 0x82
    JOINED = 0x83
    LEFT = 0x84
    MESSAGE = 0x85
    ANNOUNCE = 0x86
    PONG = 0x87
    MEMBERS = 0x88
    OK = 0x90


class ErrorCode(IntEnum):
    NAME_TAKEN = 1
    NAME_INVALID = 2
    NOT_JOINED = 3
    ALREADY_JOINED = 4
    TOO_LARGE = 5
    BAD_FRAME = 6
    RATE_LIMITED = 7
    SHUTDOWN = 8
    TIMEOUT = 9
    KICKED = 10
    NO_SUCH_MEMBER = 11


CHAT_KINDS = frozenset({Kind.JOIN, Kind.SAY, Kind.LEAVE, Kind.PING, Kind.WHO})
ADMIN_KINDS = frozenset({Kind.ADMIN_SAY, Kind.KICK, Kind.LIST})
# Errors after which the server closes the connection (the others keep it open).
CLOSING_ERRORS = frozenset({ErrorCode.TOO_LARGE, ErrorCode.SHUTDOWN, ErrorCode.TIMEOUT, ErrorCode.KICKED})

_pack_header = HEADER.pack


def encode(kind: int, payload: bytes = b"") -> bytes:
    return _pack_header(len(payload), kind) + payload


def encode_text(kind: int, text: str) -> bytes:
    return encode(kind, text.encode())


def encode_error(code: ErrorCode, reason: str) -> bytes:
    return encode(Kind.ERROR, bytes((code,)) + reason.encode())


def encode_message(name: str, text: str) -> bytes:
    """MESSAGE payload: !B length of the name in bytes, the name, then the text."""
    raw_name = name.encode()
    return encode(Kind.MESSAGE, bytes((len(raw_name),)) + raw_name + text.encode())


def encode_members(names: list[str]) -> bytes:
    return encode_text(Kind.MEMBERS, "\n".join(names))


def decode_error(payload: bytes) -> tuple[int, str]:
    """(code, reason) of an ERROR payload."""
    if not payload:
        return 0, ""
    return payload[0], payload[1:].decode(errors="replace")


def decode_message(payload: bytes) -> tuple[str, str]:
    """(name, text) of a MESSAGE payload."""
    size = payload[0] if payload else 0
    return payload[1:1 + size].decode(errors="replace"), payload[1 + size:].decode(errors="replace")


def new_decoder(max_payload: int = DEFAULT_MAX_PAYLOAD) -> FrameDecoder:
    return FrameDecoder(HEADER, max_payload)


def kind_name(kind: int) -> str:
    try:
        return Kind(kind).name
    except ValueError:
        return f"0x{kind:02x}"
