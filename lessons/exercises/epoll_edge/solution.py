"""Exercise epoll-edge, the reference solution: edge-triggered epoll, drained until EAGAIN.

Lesson:  learn show epoll-server       Check:  learn exercise check epoll-edge
"""

from __future__ import annotations

import select
import socket
import threading

WAIT_SECONDS = 0.2  # epoll.poll() counts SECONDS (poll() counted milliseconds)


def read_available(sock: socket.socket) -> tuple[bytes, bool]:
    """All bytes waiting on the non-blocking `sock`, and True if the peer has closed."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:  # EAGAIN: the socket is empty, the edge is used up
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def write_all(sock: socket.socket, data: bytes) -> None:
    """Send all of `data` on a non-blocking socket, waiting briefly when its buffer is full."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            select.select([], [sock], [], 1.0)
            continue
        view = view[sent:]


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """Echo every client's bytes back, edge-triggered, until `stop` is set."""
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    clients: dict[int, socket.socket] = {}
    try:
        while not stop.is_set():
            for fd, _event in epoll.poll(WAIT_SECONDS):
                if fd == listener.fileno():
                    sock, _address = listener.accept()
                    sock.setblocking(False)
                    clients[sock.fileno()] = sock
                    epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLET)
                elif not answer(clients[fd]):
                    epoll.unregister(fd)
                    clients.pop(fd).close()
    finally:
        for sock in clients.values():
            sock.close()
        epoll.close()


def answer(sock: socket.socket) -> bool:
    """Drain one client and echo it; False when it is gone."""
    data, closed = read_available(sock)
    try:
        write_all(sock, data)
    except ConnectionError:
        return False
    return not closed
