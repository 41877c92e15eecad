"""recv() on a client that reset raises ConnectionResetError, and nothing catches it: the server dies.

Caught by: test_survives_a_client_that_resets_mid_message
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import GONE, POLL_TIMEOUT_MS


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
                    data = clients[fd].recv(4096)
                    if data:
                        clients[fd].sendall(data)
                    else:
                        poller.unregister(fd)
                        clients.pop(fd).close()
    finally:
        for sock in clients.values():
            sock.close()
