"""read_available() makes one recv() and returns: under EPOLLET the rest waits for an edge that never comes.

Caught by: test_read_available_takes_everything_waiting
"""

from lessons.exercises.epoll_edge.solution import *  # noqa: F401,F403


def read_available(sock):
    try:
        chunk = sock.recv(65536)
    except BlockingIOError:
        return b"", False
    except ConnectionResetError:
        return b"", True
    return chunk, not chunk
