"""Clients are registered with EPOLLIN only: it works, but it is level-triggered, not the exercise.

Caught by: test_clients_are_registered_edge_triggered
"""

import select

from lessons.exercises.epoll_edge.solution import *  # noqa: F401,F403
from lessons.exercises.epoll_edge.solution import WAIT_SECONDS, answer


def serve(listener, stop):
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    clients = {}
    try:
        while not stop.is_set():
            for fd, _event in epoll.poll(WAIT_SECONDS):
                if fd == listener.fileno():
                    sock, _ = listener.accept()
                    sock.setblocking(False)
                    clients[sock.fileno()] = sock
                    epoll.register(sock.fileno(), select.EPOLLIN)
                elif not answer(clients[fd]):
                    epoll.unregister(fd)
                    clients.pop(fd).close()
    finally:
        for sock in clients.values():
            sock.close()
        epoll.close()
