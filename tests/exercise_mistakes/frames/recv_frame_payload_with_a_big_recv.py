"""recv_frame reads the header right, then the payload with one big recv(65536), eating the next frames.

Caught by: test_recv_frame_reads_frames_merged_into_one_send
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import HEADER, recv_exact


def recv_frame(sock):
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return sock.recv(65536) if length else b""
