"""serve() closes its sockets at stop but leaves the socket file behind.

Caught by: test_removes_the_socket_file_when_stopped
"""

import selectors

from lessons.exercises.unix_server.solution import *  # noqa: F401,F403
from lessons.exercises.unix_server.solution import WAIT_SECONDS, echo_once, listen_unix as listen


def REMOVE_AT_STOP(path):
    pass  # "the OS cleans up" (it does not: the file stays)

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

