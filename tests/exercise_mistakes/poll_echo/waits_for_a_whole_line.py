"""serve() echoes only whole lines (it waits for b"\n"), so bytes without a newline never come back.

Caught by: test_bytes_sent_one_at_a_time_come_back_in_order
"""

import select

from lessons.exercises.poll_echo.solution import *  # noqa: F401,F403
from lessons.exercises.poll_echo.solution import GONE, POLL_TIMEOUT_MS


def serve(listener, stop):
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    clients, pending = {}, {}
    try:
        while not stop.is_set():
            for fd, event in poller.poll(POLL_TIMEOUT_MS):
                if fd == listener.fileno():
                    sock, _ = listener.accept()
                    clients[sock.fileno()], pending[sock.fileno()] = sock, b""
                    poller.register(sock, select.POLLIN)
                    continue
                try:
                    data = clients[fd].recv(4096) if event & (select.POLLIN | GONE) else b"?"
                except ConnectionError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    clients.pop(fd).close()
                    continue
                pending[fd] += data
                line, newline, rest = pending[fd].rpartition(b"\n")
                if newline:
                    clients[fd].sendall(line + newline)
                    pending[fd] = rest
    finally:
        for sock in clients.values():
            sock.close()
