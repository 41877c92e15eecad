"""Blocking reads for length-prefixed frames: loop on recv() until enough has arrived.

The other half of `lessons/toolkit/framing.py`. That module has no socket inside (an event loop
and the chat room feed it bytes); this one is for blocking code that owns its socket:

- `recv_exact(sock, n)`: loop until n bytes have arrived, asking only for what is missing;
- `recv_frame(sock)`: the header with recv_exact, then exactly the payload it announces.
"""

from __future__ import annotations

import socket
import struct

from lessons.toolkit.framing import LENGTH_HEADER, Frame, FrameTooLarge
from lessons.toolkit.i18n import _


class IncompleteRead(EOFError):
    """The peer closed the connection before `expected` bytes arrived.

    `received == 0` is a clean end between messages; anything else cut one in half.
    """

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(_("connection closed after {received} of {expected} bytes").format(received=received, expected=expected))
        self.received = received
        self.expected = expected


def recv_exact(sock: socket.socket, count: int) -> bytes:
    """Read exactly `count` bytes, however the network splits them.

    Raises IncompleteRead (an EOFError) if the peer closes first.
    """
    chunks = []
    missing = count
    while missing:
        chunk = sock.recv(min(missing, 65536))
        if not chunk:
            raise IncompleteRead(count - missing, count)
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket, header: struct.Struct = LENGTH_HEADER,
               max_payload: int = 1 << 20) -> Frame:
    """Blocking read of one frame with `recv_exact`: header first, then its payload."""
    length, *fields = header.unpack(recv_exact(sock, header.size))
    if length > max_payload:
        raise FrameTooLarge(length, max_payload)
    return Frame(tuple(fields), recv_exact(sock, length))
