"""The notes' bug: the socket is deleted from the fd map, then looked up there again.

Caught by: test_keeps_serving_after_a_client_leaves
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import POLL_TIMEOUT_MS


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    fdmap = {}
    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _ = listener.accept()
                    fdmap[sock.fileno()] = sock
                    poller.register(sock, select.POLLIN)
                elif event & select.POLLIN:
                    data = fdmap[fd].recv(4096)
                    if not data:
                        poller.unregister(fd)
                        del fdmap[fd]
                    fdmap[fd].sendall(data)
    finally:
        for sock in fdmap.values():
            sock.close()
