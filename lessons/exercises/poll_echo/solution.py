"""Exercise poll-echo, the reference solution: a poll() echo server that survives disconnects.

Lesson:  learn show poll-server        Check:  learn exercise check poll-echo
"""

from __future__ import annotations

import select
import socket
import threading

POLL_TIMEOUT_MS = 200  # poll() counts MILLISECONDS; wake up this often to look at `stop`
GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """Echo every client's bytes back to it until `stop` is set."""
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients: dict[int, socket.socket] = {}

    def drop(fd: int) -> None:
        sock = clients.pop(fd)  # out of the map, and still in hand: no lookup after this
        poller.unregister(fd)
        sock.close()

    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _address = listener.accept()
                    clients[sock.fileno()] = sock
                    poller.register(sock, select.POLLIN)
                elif event & select.POLLIN:
                    if not echo_once(clients[fd]):
                        drop(fd)
                elif event & GONE:
                    drop(fd)
    finally:
        for sock in clients.values():
            sock.close()


def echo_once(sock: socket.socket) -> bool:
    """Answer one readable client; False when it is finished (EOF) or broken (reset)."""
    try:
        data = sock.recv(4096)
        if data:
            sock.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        return False
    return bool(data)
