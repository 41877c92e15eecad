"""The chat's bytes as the load generators see them: a member that has sent its JOIN (or
its IRC registration), and one walk over a buffer of received frames (or IRC lines).

The generators read many thousands of frames a second from thousands of sockets, so
they do not decode into frame objects: they walk each member's buffer in place and
slice out only the bytes they need (a MESSAGE's stamp, an ERROR's code).
"""

from __future__ import annotations

import socket
from typing import Iterator

from capstone.codec import HEADER, Kind, encode

JOIN_WINDOW = 64  # JOINs in flight per worker: never overflow the server's listen backlog
RECV_SIZE = 256 * 1024


def connect_and_join(address: tuple[str, int], name: bytes, rcvbuf: int = 0) -> socket.socket:
    """A non-blocking member connection whose JOIN is already sent (WELCOME comes later).

    `rcvbuf` (bytes, 0 = the default) shrinks its receive buffer before it connects, when
    the TCP window is chosen: a member that never reads then fills the server's queue fast.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(encode(Kind.JOIN, name))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def connect_irc(address: tuple[str, int], nick: bytes) -> socket.socket:
    """A non-blocking IRC member whose registration is sent (its NAMES' end, 366, comes later)."""
    sock = socket.create_connection(address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"NICK %s\r\nUSER %s 0 * :bench\r\n" % (nick, nick))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def whole_lines(buffer: bytearray) -> Iterator[tuple[int, int]]:
    """(start, end) of each whole IRC line at the head of `buffer`, its \\r\\n excluded;
    the caller drops the walked lines with `del buffer[:end + 2]` (the last end seen)."""
    pos = 0
    while (end := buffer.find(b"\r\n", pos)) >= 0:
        yield pos, end
        pos = end + 2


def whole_frames(buffer: bytearray) -> Iterator[tuple[int, int, int]]:
    """(kind, payload start, payload end) of each whole frame at the head of `buffer`.

    No copies and no frame objects: the caller reads what it needs from `buffer`
    between start and end, then drops the walked frames with `del buffer[:end]`
    (the last end seen; 0 when no frame was whole yet).
    """
    unpack, header_size = HEADER.unpack_from, HEADER.size
    available, pos = len(buffer), 0
    while available - pos >= header_size:
        length, kind = unpack(buffer, pos)
        start = pos + header_size
        end = start + length
        if end > available:
            return
        yield kind, start, end
        pos = end
