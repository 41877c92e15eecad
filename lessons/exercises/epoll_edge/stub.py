"""Exercise epoll-edge: an edge-triggered epoll reader that drains until EAGAIN.

Lesson:  learn show epoll-server       Check:  learn exercise check epoll-edge

Level-triggered epoll (the default) reports a socket as readable again and again, as
long as data waits in it. Edge-triggered epoll (EPOLLET) reports it once, when new data
arrives. Read only part of it and epoll will not remind you: the rest waits until the
client sends more, which may be never. So with EPOLLET you read until the socket is
empty, and a non-blocking recv() tells you exactly when: it raises BlockingIOError
(errno EAGAIN).

1. read_available(sock): everything waiting on a non-blocking socket, and whether the
   peer has closed.
2. serve(listener, stop): an echo server on epoll, every client registered with
   EPOLLIN | EPOLLET and drained with read_available(). Same contract as poll-echo:
   return soon after `stop` is set, close the clients, leave the listener open.
"""

from __future__ import annotations

import select
import socket
import threading

WAIT_SECONDS = 0.2  # epoll.poll() counts SECONDS (poll() counted milliseconds)


def read_available(sock: socket.socket) -> tuple[bytes, bool]:
    """All bytes waiting on the non-blocking `sock`, and True if the peer has closed."""
    # TODO: loop on sock.recv(65536) and collect the chunks:
    #   BlockingIOError      -> nothing more for now: return (data, False)
    #   b""                  -> the peer closed: return (data, True)
    #   ConnectionResetError -> closed too: return (data, True)
    raise NotImplementedError("TODO: read until recv() raises BlockingIOError")


def write_all(sock: socket.socket, data: bytes) -> None:
    """Send all of `data` on a non-blocking socket, waiting briefly when its buffer is full.

    Given, not part of the exercise: a real event loop would keep the rest in a queue
    and ask epoll for EPOLLOUT instead of waiting here.
    """
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
    # TODO 1: epoll = select.epoll(); register the listener for EPOLLIN.
    # TODO 2: loop until stop.is_set(): for fd, event in epoll.poll(WAIT_SECONDS):
    #   - the listener: accept(), make the client non-blocking, register it with
    #     select.EPOLLIN | select.EPOLLET, remember it in a dict fd -> socket;
    #   - a client: data, closed = read_available(sock); write_all(sock, data);
    #     closed (or a send that fails with ConnectionError) -> unregister, close, forget.
    # TODO 3: at the end close the clients and the epoll object (not the listener).
    raise NotImplementedError("TODO: write serve() with select.epoll() and EPOLLET")
