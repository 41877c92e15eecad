"""read_available() loops until recv() fails but does not catch BlockingIOError (EAGAIN).

Caught by: test_read_available_returns_when_nothing_is_waiting
"""

from lessons.exercises.epoll_edge.solution import *  # noqa: F401,F403


def read_available(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
