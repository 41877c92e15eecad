"""serve() returns at stop without closing the client sockets still open (the garbage collector would).

Caught by: test_returns_soon_after_stop_is_set
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import GONE, POLL_TIMEOUT_MS, echo_once


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients = {}
    while not stop.is_set():
        for fd, event in poller.poll(POLL_TIMEOUT_MS):
            if fd == listener.fileno():
                sock, _ = listener.accept()
                clients[sock.fileno()] = sock
                poller.register(sock, select.POLLIN)
            elif event & (select.POLLIN | GONE):
                if not echo_once(clients[fd]):
                    poller.unregister(fd)
                    clients.pop(fd).close()
