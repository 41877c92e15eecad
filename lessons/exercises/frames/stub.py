"""Exercise frames: recv_exact and an incremental length-prefixed frame decoder.

Lesson:  learn show struct-recv        Check:  learn exercise check frames

TCP delivers a stream of bytes, not messages: one recv() may return half a record, or
two and a half. The notes' receiver unpacked one recv(1024) as if it were one record.
The cure: put each message's length in front of it (a frame), then read exactly that.

A frame here is a 4-byte big-endian length (struct "!I"), then that many payload bytes.

1. recv_exact(sock, count): block until exactly `count` bytes have arrived; raise
   EOFError if the peer closes first (never return fewer bytes, never loop forever).
2. recv_frame(sock): one frame's payload, read with recv_exact.
3. FrameDecoder.feed(data): no socket at all. Feed it whatever bytes arrived, in any
   pieces; it returns the payload of every frame that is now complete, in order, and
   keeps the rest for next time. A header announcing more than `max_payload` raises
   FrameTooLarge at once, before a single payload byte has arrived.
"""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct("!I")  # the payload length, 4 bytes, network byte order


class FrameTooLarge(ValueError):
    """A header announced more bytes than the decoder accepts."""


def encode_frame(payload: bytes) -> bytes:
    """The bytes of one frame: the length, then the payload."""
    return HEADER.pack(len(payload)) + payload


def recv_exact(sock: socket.socket, count: int) -> bytes:
    """Exactly `count` bytes from `sock`; EOFError if the peer closes before they all arrive."""
    # TODO: loop until you have `count` bytes. Ask recv() only for the bytes still
    # missing (never more: the rest belongs to the next message). recv() returning b""
    # means the peer closed: raise EOFError, saying how many bytes did arrive.
    raise NotImplementedError("TODO: write recv_exact()")


def recv_frame(sock: socket.socket) -> bytes:
    """One frame's payload: read the header with recv_exact, then exactly that many bytes."""
    # TODO: (length,) = HEADER.unpack(recv_exact(sock, HEADER.size)), then the payload.
    raise NotImplementedError("TODO: write recv_frame()")


class FrameDecoder:
    """Bytes in, whole frames out, in any pieces. No I/O: the caller owns the socket."""

    def __init__(self, max_payload: int = 65536) -> None:
        self.max_payload = max_payload
        self.buffer = bytearray()  # bytes received but not yet part of a returned frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return the payloads of all frames now complete, oldest first."""
        # TODO 1: append data to self.buffer.
        # TODO 2: while the buffer holds a whole header: read the length
        #         (HEADER.unpack_from(self.buffer)); more than max_payload -> raise
        #         FrameTooLarge; if the whole payload is there, cut the frame off the
        #         buffer and keep its payload; otherwise stop and wait for more bytes.
        raise NotImplementedError("TODO: write FrameDecoder.feed()")
