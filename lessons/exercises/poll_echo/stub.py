"""Exercise poll-echo: a poll() echo server that survives disconnects.

Lesson:  learn show poll-server        Check:  learn exercise check poll-echo

Write serve(listener, stop). Wait for readiness with select.poll(), accept new clients,
read what each one sends and send exactly those bytes back. Keep serving when a client
leaves, resets its connection or half-closes it: one client's end is never the server's.

The check hands you a listening socket (bound to a free port, already listening) and a
threading.Event. Return soon after the event is set, closing every client socket; leave
the listener open, it belongs to the caller.

The notes' server crashed at the first disconnect: it deleted the socket from its fd
map and then used it (KeyError). Yours must not.
"""

from __future__ import annotations

import select
import socket
import threading

POLL_TIMEOUT_MS = 200  # poll() counts MILLISECONDS; wake up this often to look at `stop`


def serve(listener: socket.socket, stop: threading.Event) -> None:
    """Echo every client's bytes back to it until `stop` is set."""
    # TODO 1: make a poll object; register the listener for POLLIN.
    # TODO 2: keep a dict fd -> socket: poll() gives back fd numbers, you need the sockets.
    # TODO 3: loop until stop.is_set(), calling poller.poll(POLL_TIMEOUT_MS):
    #   - the listener is ready: accept() and register the new client for POLLIN;
    #   - a client is ready: recv(); bytes -> sendall() them back;
    #     b"" (the client finished) or ConnectionResetError -> drop that client:
    #     unregister, close, and forget it, without looking it up again afterwards;
    #   - POLLHUP or POLLERR without POLLIN: the client is gone, drop it the same way.
    # TODO 4: once stop is set, close every client socket (not the listener).
    raise NotImplementedError("TODO: write serve() with select.poll()")
