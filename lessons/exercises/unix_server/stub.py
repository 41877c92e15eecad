"""Exercise unix-server: a Unix domain socket server that cleans up after itself.

Lesson:  learn show unix-recv          Check:  learn exercise check unix-server

The notes' receiver bound "./sock" and crashed on the next run, because the file was
still there. A socket file outlives its server unless the server removes it, and only
a connection attempt tells a stale file (nobody listening: "connection refused") from
a live one (another server is using it).

Write serve(path, stop), an echo server on an AF_UNIX stream socket at `path`:
- nothing at `path`: fine. A stale socket file: remove it, then bind. A socket file
  someone listens on, or anything that is not a socket: raise FileExistsError and leave
  it alone (it is not yours to delete);
- the socket file gets mode 0600, so only your user can connect: set the umask before
  bind(), there is no gap in which the file is open to others;
- serve several clients at once (one silent client must not block the others);
- when `stop` is set: close everything and remove the socket file.
The check gives you a path in a fresh temporary directory.
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
    # TODO: os.lstat(path) (FileNotFoundError: nothing to do). Not stat.S_ISSOCK -> raise.
    # Try to connect a fresh AF_UNIX socket to it: ConnectionRefusedError means stale,
    # so os.unlink(path); a successful connect means a live server, so raise.
    raise NotImplementedError("TODO: write prepare_path()")


def listen_unix(path: str) -> socket.socket:
    """A listening AF_UNIX socket at `path`, created with mode 0600."""
    # TODO: prepare_path(path); old = os.umask(0o177); bind; restore the umask in a
    # `finally:`; listen().
    raise NotImplementedError("TODO: write listen_unix()")


def serve(path: str, stop: threading.Event) -> None:
    """Echo to every client on the socket file `path` until `stop` is set; then remove the file."""
    # TODO 1: listener = listen_unix(path); a selectors.DefaultSelector() watching it.
    # TODO 2: until stop.is_set(): selector.select(WAIT_SECONDS); accept new clients and
    #         register them; echo a ready client's bytes; b"" or ConnectionError -> drop it.
    # TODO 3: finally: close the clients, the listener and the selector; os.unlink(path).
    raise NotImplementedError("TODO: write serve()")
