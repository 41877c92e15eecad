"""A finished client is unregistered and taken out of the map but never closed.

Caught by: test_answers_a_half_closed_client_then_closes
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import GONE, POLL_TIMEOUT_MS, echo_once


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients = {}
    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _ = listener.accept()
                    clients[sock.fileno()] = sock
                    poller.register(sock, select.POLLIN)
                elif event & (select.POLLIN | GONE):
                    if not echo_once(clients[fd]):
                        poller.unregister(fd)
                        del clients[fd]  # forgotten, not closed
    finally:
        for sock in clients.values():
            sock.close()
