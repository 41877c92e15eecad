"""Exercise frames, the reference solution: recv_exact and an incremental frame decoder.

Lesson:  learn show struct-recv        Check:  learn exercise check frames
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
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))  # only what is missing: the rest is the next message's
        if not chunk:
            raise EOFError(f"the peer closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> bytes:
    """One frame's payload: read the header with recv_exact, then exactly that many bytes."""
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return recv_exact(sock, length)


class FrameDecoder:
    """Bytes in, whole frames out, in any pieces. No I/O: the caller owns the socket."""

    def __init__(self, max_payload: int = 65536) -> None:
        self.max_payload = max_payload
        self.buffer = bytearray()  # bytes received but not yet part of a returned frame

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data`; return the payloads of all frames now complete, oldest first."""
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer)
            if length > self.max_payload:
                raise FrameTooLarge(f"a frame of {length} bytes; the limit is {self.max_payload}")
            end = HEADER.size + length
            if len(self.buffer) < end:
                break  # the payload is still on its way
            frames.append(bytes(self.buffer[HEADER.size:end]))
            del self.buffer[:end]
        return frames
