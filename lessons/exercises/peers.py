"""Scripted hostile peers: the clients a real network sends, in one reusable place.

A server that works with one polite client can still fail with real ones. Every
network check uses these peers:

- `send_bytewise`: every byte its own segment, so each recv() may see one byte;
- `send_merged`:   several messages in one send(), so one recv() holds them all;
- `stall`:         connected and silent, or stopped halfway through a message;
- `reset`:         SO_LINGER 0 then close(): the kernel sends RST, recv() fails with ECONNRESET;
- `half_close`:    shutdown(SHUT_WR): "I am done sending", while still reading;
- `crowd`:         100 clients arriving at once.

Addresses are `(host, port)` for TCP or a path string for a Unix socket. Every read
has a deadline: a peer never waits forever, it reports what it got.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import threading
import time
from typing import Callable

from lessons.exercises.harness import patience

DEADLINE = patience(10.0)  # seconds a peer waits for an answer on a busy machine
SLICE = 0.1  # while waiting, look this often whether to give up early
Address = tuple[str, int] | str
GiveUp = Callable[[], bool] | None


def connect(address: Address, timeout: float = DEADLINE) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(address)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small sends leave at once
    return sock


def send_bytewise(sock: socket.socket, data: bytes) -> None:
    """One send() per byte (TCP_NODELAY is on, so each can travel alone)."""
    for index in range(len(data)):
        sock.sendall(data[index:index + 1])


def send_merged(sock: socket.socket, messages: list[bytes]) -> None:
    """All messages in a single send(): the receiver gets them glued together."""
    sock.sendall(b"".join(messages))


def reset(sock: socket.socket) -> None:
    """Abort the connection: with SO_LINGER (on, 0 s) close() sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def half_close(sock: socket.socket) -> None:
    """Stop sending (the server's recv() returns b"") but keep reading the answer."""
    sock.shutdown(socket.SHUT_WR)


def stall(address: Address, first_bytes: bytes = b"") -> socket.socket:
    """Connect, send `first_bytes` (maybe half a message), then say nothing more."""
    sock = connect(address)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def crowd(address: Address, count: int = 100) -> list[socket.socket]:
    """`count` clients connected at once (the kernel queues them until accept())."""
    peers = []
    try:
        for _ in range(count):
            peers.append(connect(address))
    except BaseException:
        close_all(peers)
        raise
    return peers


def close_all(peers: list[socket.socket]) -> None:
    for sock in peers:
        sock.close()


def read_exactly(sock: socket.socket, count: int, timeout: float = DEADLINE, give_up: GiveUp = None) -> bytes:
    """Up to `count` bytes: fewer only if the peer closed or reset, the deadline passed,
    or `give_up()` said there is no point waiting (the server under test has died)."""
    data = bytearray()
    for chunk in _chunks(sock, count, timeout, give_up):
        data += chunk
        if len(data) >= count:
            break
    return bytes(data)


def read_to_eof(sock: socket.socket, timeout: float = DEADLINE, give_up: GiveUp = None) -> tuple[bytes, bool]:
    """Everything until the peer closes: (data, True), or (data so far, False) if it never does."""
    data = bytearray()
    for chunk in _chunks(sock, 1 << 30, timeout, give_up):
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def _chunks(sock: socket.socket, most: int, timeout: float, give_up: GiveUp):
    """What recv() returns, until EOF (a final b""), a reset (also b""), or time runs out."""
    deadline = time.monotonic() + timeout
    received = 0
    while received < most:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        sock.settimeout(min(remaining, SLICE))
        try:
            chunk = sock.recv(min(most - received, 65536))
        except socket.timeout:
            if give_up is not None and give_up():
                return
            continue
        except ConnectionError:
            chunk = b""
        yield chunk
        if not chunk:
            return
        received += len(chunk)


def closed_by_peer(sock: socket.socket, timeout: float = DEADLINE, give_up: GiveUp = None) -> bool | None:
    """True if the other side closed (EOF or reset), False if it sent data, None if neither happened."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(min(remaining, SLICE))
        try:
            return not sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            if give_up is not None and give_up():
                return None
        except ConnectionError:
            return True


def unread_bytes(sock: socket.socket) -> int:
    """How many received bytes wait in the kernel for this socket (ioctl FIONREAD)."""
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", raw)[0]


def trickle(writer: socket.socket, reader: socket.socket, data: bytes, timeout: float = DEADLINE) -> None:
    """Send one byte, wait until the reader's code has taken it, send the next.

    The reader's kernel buffer is empty before each byte, so every recv() the reader
    makes returns exactly one byte: the worst split there is. Over a Unix socketpair
    the byte is already in the reader's queue when send() returns, so this is exact;
    over TCP it is nearly so. Run it in a thread; it gives up quietly at the deadline.
    """
    deadline = time.monotonic() + timeout
    for index in range(len(data)):
        writer.sendall(data[index:index + 1])
        wait_until_read(reader, deadline - time.monotonic())
        if time.monotonic() > deadline:
            return


def wait_until_read(reader: socket.socket, timeout: float = DEADLINE) -> None:
    """Return once the code under test has read everything sent so far (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while _waiting_in(reader) > 0 and time.monotonic() < deadline:
        time.sleep(0.001)


def _waiting_in(reader: socket.socket) -> int:
    """Bytes still unread by the code under test; 0 once it has closed its socket."""
    try:
        return unread_bytes(reader)
    except (OSError, ValueError):  # closed (fileno -1) while we looked
        return 0


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected (client, server-side) pair of TCP sockets over loopback, port 0."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = connect(listener.getsockname())
        accepted, _ = listener.accept()
    finally:
        listener.close()
    accepted.settimeout(None)
    return client, accepted


def in_background(action: Callable[[], object]) -> threading.Thread:
    """Run a peer's script in a daemon thread. Its socket errors are not news: when the code
    under test fails, the peer's connection breaks too, and the check reports the cause."""
    def run() -> None:
        try:
            action()
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
