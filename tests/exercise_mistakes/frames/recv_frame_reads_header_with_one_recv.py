"""recv_frame reads the 4-byte header with one sock.recv(4): a header split across segments is misread.

Caught by: test_recv_frame_reads_a_frame_whose_bytes_arrive_one_at_a_time
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import HEADER


def recv_frame(sock):
    (length,) = HEADER.unpack(sock.recv(4).ljust(4, b"\0"))
    return recv_exact(sock, length)
