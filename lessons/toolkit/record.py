"""The notes' binary record, `i5sf`, in one place for struct-send and struct-recv.

The notes pack `(1, b'zhang', 1.75)` with `struct.Struct('i5sf')`: an int, five bytes
of name, a 32-bit float. Written like that the format is *native*: the machine's byte
order and its alignment rules, which insert 3 padding bytes before the float (16 bytes,
not 13). A record that crosses a network should not depend on the machine, so the
lessons put `!i5sf` on the wire: network byte order (big-endian), no padding, 13 bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from lessons.toolkit.i18n import ngettext

NOTES_RECORD = struct.Struct("i5sf")  # as in the notes: native order and alignment
WIRE_RECORD = struct.Struct("!i5sf")  # what the lessons send: 13 bytes, same everywhere


class Record(NamedTuple):
    number: int
    name: bytes  # exactly 5 bytes once unpacked: shorter names come back NUL-padded
    height: float


SAMPLES = (
    Record(1, b"zhang", 1.75),  # the notes' record
    Record(2, b"li", 1.8),  # a short name: watch the NUL padding come back
    Record(3, b"wangwu", 3.14),  # a long name is cut to 5 bytes; 3.14 is not exact in 32 bits
)


def sample_records(count: int) -> list[Record]:
    """`count` records to send: the samples above, then more numbered ones."""
    extra = (Record(number, b"user" + str(number % 10).encode(), 1.5) for number in range(len(SAMPLES) + 1, count + 1))
    return [*SAMPLES[:count], *extra]


def encode(record: Record) -> bytes:
    return WIRE_RECORD.pack(*record)


def decode(data: bytes) -> Record:
    """Exactly 13 bytes in, one Record out; any other length raises struct.error."""
    return Record(*WIRE_RECORD.unpack(data))


def show(record: Record) -> str:
    """One line for the narrator; repr() of the name keeps NUL bytes and peer bytes visible."""
    return f"number={record.number} name={record.name!r} height={record.height!r}"


def hex_bytes(data: bytes) -> str:
    return data.hex(" ")


def byte_count(count: int) -> str:
    """' 5 bytes', ' 1 byte': right-aligned to two digits so the narrated columns line up."""
    return ngettext("{count:>2} byte", "{count:>2} bytes", count).format(count=count)
