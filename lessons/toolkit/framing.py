"""Length-prefixed frames over a byte stream: the fix for "one recv() is one message".

TCP delivers a stream of bytes, not messages: one `recv` may hold half a record, or
two and a half. The cure is to say how long each message is before it, and to read
exactly that much. This module has no socket inside (so the chat's room can use it
without any I/O):

- `encode_frame(payload)`: the bytes of one frame, length first.
- `FrameDecoder`: feed it whatever bytes arrived, in any pieces, and take whole frames
  out. Event-loop servers (and the capstone chat) use it, because they must never block
  waiting for the rest of a frame.

Blocking code that owns its socket reads frames with `lessons/toolkit/sockio.py` instead
(`recv_exact`, `recv_frame`).

The header is a `struct.Struct` whose first field is the payload length; any other
fields (the chat's frame kind) come back with the frame. A header announcing more
than `max_payload` bytes raises `FrameTooLarge` as soon as the header is complete,
before a single payload byte is buffered.
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple
from lessons.toolkit.i18n import _

LENGTH_HEADER = struct.Struct("!I")  # this lesson's header: just the length


class Frame(NamedTuple):
    fields: tuple  # the header's fields after the length (empty for LENGTH_HEADER)
    payload: bytes


class FrameTooLarge(ValueError):
    def __init__(self, length: int, limit: int) -> None:
        super().__init__(_("frame announces {length} bytes, the limit is {limit}").format(length=length, limit=limit))
        self.length = length
        self.limit = limit


def encode_frame(payload: bytes, *fields: object, header: struct.Struct = LENGTH_HEADER) -> bytes:
    """The bytes of one frame: header (length first, then `fields`) and payload."""
    return header.pack(len(payload), *fields) + payload


class FrameDecoder:
    """Bytes in, frames out, in any pieces. No I/O: the caller owns the socket.

        decoder = FrameDecoder(struct.Struct("!IB"), max_payload=4096)
        decoder.feed(data)             # whatever recv() returned
        for frame in decoder:          # every frame now complete, in order
            ...

    Iterating raises FrameTooLarge at the first oversized header; the frames before
    it were already yielded. The decoder stays stuck there: the stream cannot be
    resynchronised, so the caller closes the connection.
    """

    def __init__(self, header: struct.Struct = LENGTH_HEADER, max_payload: int = 1 << 20) -> None:
        self.header = header
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._start = 0  # bytes before this offset are consumed

    def feed(self, data: bytes) -> None:
        if self._start and self._start >= len(self._buffer) // 2:
            del self._buffer[: self._start]  # compact now and then, not on every frame
            self._start = 0
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame (non-zero at EOF = cut frame)."""
        return len(self._buffer) - self._start

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None when more bytes are needed."""
        buffer, start, header = self._buffer, self._start, self.header
        if len(buffer) - start < header.size:
            return None
        length, *fields = header.unpack_from(buffer, start)
        if length > self.max_payload:
            raise FrameTooLarge(length, self.max_payload)
        end = start + header.size + length
        if len(buffer) < end:
            return None
        self._start = end
        return Frame(tuple(fields), bytes(buffer[start + header.size:end]))

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame
