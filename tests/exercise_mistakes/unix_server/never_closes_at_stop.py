"""serve() removes its file at stop but returns without closing the client sockets still open.

Caught by: test_returns_soon_after_stop_is_set
"""

import os
import selectors

from lessons.exercises.unix_server.solution import *  # noqa: F401,F403
from lessons.exercises.unix_server.solution import WAIT_SECONDS, echo_once, listen_unix


def serve(path, stop):
    listener = listen_unix(path)
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
        listener.close()
        selector.close()
        os.unlink(path)
