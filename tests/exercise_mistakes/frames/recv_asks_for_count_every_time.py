"""recv_exact asks recv() for `count` bytes every time, not for what is still missing.

After a short first read it takes bytes of the next record too, and returns more than
`count`: the very bug the exercise is about (issue 10, defect 5).
Caught by: test_recv_exact_asks_only_for_what_is_still_missing
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403


def recv_exact(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count)
        if not chunk:
            raise EOFError("the peer closed")
        data += chunk
    return data
