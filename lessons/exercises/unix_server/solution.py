"""Exercise unix-server, the reference solution: a Unix socket server that cleans up.

Lesson:  learn show unix-recv          Check:  learn exercise check unix-server
"""

from __future__ import annotations

import os
import selectors
import socket
import stat
import threading

WAIT_SECONDS = 0.2  # how often to look at `stop`


def prepare_path(path: str) -> None:
    """Remove a stale socket file at `path`; raise FileExistsError if it is live or not a socket."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise FileExistsError(f"{path} exists and is not a socket file")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:  # nobody listens: a leftover from a server that died
        os.unlink(path)
        return
    finally:
        probe.close()
    raise FileExistsError(f"another server is listening on {path}")


def listen_unix(path: str) -> socket.socket:
    """A listening AF_UNIX socket at `path`, created with mode 0600."""
    prepare_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the file is born 0600: no moment when others may connect
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.listen()
    return sock


def serve(path: str, stop: threading.Event) -> None:
    """Echo to every client on the socket file `path` until `stop` is set; then remove the file."""
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
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()
        os.unlink(path)


def echo_once(sock: socket.socket) -> bool:
    """Answer one readable client; False when it is finished or broken."""
    try:
        data = sock.recv(4096)
        if data:
            sock.sendall(data)
    except ConnectionError:
        return False
    return bool(data)
