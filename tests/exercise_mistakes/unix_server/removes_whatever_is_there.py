"""serve() unlinks any file at its path before bind(): a live server's socket and ordinary files too.

Caught by: test_refuses_a_socket_file_another_server_listens_on
"""

import os

from lessons.exercises.unix_server import solution
from lessons.exercises.unix_server.solution import *  # noqa: F401,F403


def serve(path, stop):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    solution.serve(path, stop)
