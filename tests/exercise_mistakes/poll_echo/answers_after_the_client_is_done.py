"""serve() collects a client's bytes until it half-closes, then answers everything at once.

Caught by: test_echoes_what_one_client_sends
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import GONE, POLL_TIMEOUT_MS


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients, received = {}, {}
    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _ = listener.accept()
                    clients[sock.fileno()], received[sock.fileno()] = sock, b""
                    poller.register(sock, select.POLLIN)
                    continue
                try:
                    data = clients[fd].recv(4096)
                except ConnectionError:
                    data = None
                if data:
                    received[fd] += data
                    continue
                if data is not None:
                    clients[fd].sendall(received[fd])  # the whole message, now that it is complete
                poller.unregister(fd)
                clients.pop(fd).close()
    finally:
        for sock in clients.values():
            sock.close()
