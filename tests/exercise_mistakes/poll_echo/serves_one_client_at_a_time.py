"""Once a client is readable, serve() stays in a recv() loop on that client until it leaves.

Caught by: test_serves_a_second_client_while_the_first_is_silent
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import POLL_TIMEOUT_MS


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    try:
        while not stop.is_set():
            for fd, _event in poller.poll(POLL_TIMEOUT_MS):
                sock, _ = listener.accept()
                with sock:
                    while data := sock.recv(4096):
                        sock.sendall(data)
    finally:
        pass
