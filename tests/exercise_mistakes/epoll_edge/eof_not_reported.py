"""read_available() stops at b"" but says the peer is still there (closed=False).

Caught by: test_read_available_sees_the_peer_close
"""

from lessons.exercises.epoll_edge.solution import *  # noqa: F401,F403


def read_available(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
