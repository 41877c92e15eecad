"""recv_exact is one recv(count): one recv() taken for one message.

Caught by: test_recv_exact_gets_bytes_that_arrive_one_at_a_time
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403


def recv_exact(sock, count):
    data = sock.recv(count)
    if not data:
        raise EOFError("the peer closed")
    return data
