"""recv_exact catches ConnectionResetError and returns the bytes it has, fewer than asked.

Caught by: test_recv_exact_fails_when_the_peer_resets_mid_frame
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except ConnectionResetError:
            return data
        if not chunk:
            raise EOFError("the peer closed")
        data += chunk
    return data
