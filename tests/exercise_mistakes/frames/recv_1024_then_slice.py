"""recv_exact reads recv(1024) as the notes did and slices off `count` bytes: the rest is thrown away.

Caught by: test_recv_exact_takes_no_more_than_asked
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(1024)
        if not chunk:
            raise EOFError("the peer closed")
        data += chunk
    return data[:count]
