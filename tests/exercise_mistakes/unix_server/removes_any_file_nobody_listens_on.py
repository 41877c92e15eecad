"""The stale-file test only tries connect(): an ordinary file refuses it too, so it is deleted as "stale".

Caught by: test_refuses_to_delete_a_file_that_is_not_a_socket
"""

import os
import socket

from lessons.exercises.unix_server import solution
from lessons.exercises.unix_server.solution import *  # noqa: F401,F403


def serve(path, stop):
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # "nobody listens: stale"
        except OSError:
            pass
        finally:
            probe.close()
    solution.serve(path, stop)
