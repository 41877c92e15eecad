"""serve() binds without looking at the path: a stale socket file from a crashed server makes bind() fail.

Caught by: test_replaces_a_stale_socket_file
"""

import os
import selectors
import socket

from lessons.exercises.unix_server.solution import *  # noqa: F401,F403
from lessons.exercises.unix_server.solution import WAIT_SECONDS, echo_once

REMOVE_AT_STOP = os.unlink


def listen(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen()
    return sock

def serve(path, stop):
    listener = listen(path)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            for key, _events in selector.select(WAIT_SECONDS):
                if key.fileobj is listener:
                    client, _address = listener.accept()
                    selector.register(client, selectors.EVENT_READ)
                elif not echo_once(key.fileobj):
                    selector.unregister(key.fileobj)
                    key.fileobj.close()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
        REMOVE_AT_STOP(path)

