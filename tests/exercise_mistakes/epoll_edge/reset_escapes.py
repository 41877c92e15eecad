"""read_available() catches EAGAIN but lets ConnectionResetError out instead of reporting the peer closed.

Caught by: test_read_available_treats_a_reset_as_closed
"""

from lessons.exercises.epoll_edge.solution import *  # noqa: F401,F403


def read_available(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
