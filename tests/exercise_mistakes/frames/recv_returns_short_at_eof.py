"""recv_exact stops at b"" and returns the bytes it has, fewer than asked, instead of raising EOFError.

Caught by: test_recv_exact_raises_eoferror_when_the_peer_stops_mid_frame
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data
