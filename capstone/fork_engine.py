"""The fork engine: one process per client, one hub that owns the room.

The notes' homework invites a process per client. Processes share no memory, so the
room cannot live in them (socketserver's docs warn about exactly this); it lives in
one hub process, and each child is a dumb relay between its client's TCP socket and
one end of a Unix socket pair whose other end the hub keeps:

    client <--TCP--> child (relay) <--socketpair--> hub (ChatServer loop + Room)

So the hub is the ordinary event-loop server with one hook overridden: instead of
watching the client's socket, it forks a relay and watches the pair. Every rule
(order, limits, timeouts, shutdown) is the same code. The price: each byte crosses
two sockets and a context switch, and each client costs a process.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time

from capstone.server import LINGER_SECONDS, ChatServer

RELAY_BUFFER = 256 * 1024  # a child stops reading from one side while this much waits for the other
CHILD_EXIT_WAIT = 0.15  # at shutdown, how long the hub waits before killing relays


class ForkingChatServer(ChatServer):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.children: dict[int, int] = {}  # hub fd -> child pid

    def connect_client(self, sock: socket.socket, label: str) -> socket.socket | None:
        hub_end, child_end = socket.socketpair()
        try:
            pid = os.fork()
        except OSError as err:
            self.log("drop", f"{label}: cannot fork a relay ({err.strerror})")
            for s in (sock, hub_end, child_end):
                s.close()
            return None
        if pid == 0:
            self._become_relay(sock, child_end)
        child_end.close()
        sock.close()
        self.children[hub_end.fileno()] = pid
        return hub_end

    def _become_relay(self, client: socket.socket, hub: socket.socket) -> None:
        """In the child: keep only the two sockets, relay until done, never return."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the hub; it decides
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            keep = sorted((client.fileno(), hub.fileno()))
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, 1 << 20)
            relay(client, hub)
            status = 0
        finally:
            os._exit(status)

    def _install_signals(self) -> None:
        super()._install_signals()
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop to reap

    def on_signal(self) -> None:
        reap_children()

    def connection_closed(self, fd: int) -> None:
        self.children.pop(fd, None)

    def _close_everything(self) -> None:
        pids = list(self.children.values())
        super()._close_everything()
        finish_children(pids)


def reap_children() -> None:
    """Collect every relay that has exited, so none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def finish_children(pids: list[int]) -> None:
    """Give relays a moment to finish, then kill and reap the rest."""
    deadline = time.monotonic() + CHILD_EXIT_WAIT
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    alive.discard(pid)
            except ChildProcessError:
                alive.discard(pid)
        if alive:
            time.sleep(0.01)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


class Pipe:
    """One direction of the relay: bytes read from `source`, waiting to go to `sink`."""

    def __init__(self, source: socket.socket, sink: socket.socket) -> None:
        self.source, self.sink = source, sink
        self.buffer = bytearray()
        self.eof = False  # source has closed its sending side
        self.shut = False  # we passed that EOF on to sink

    def wants_read(self) -> bool:
        return not self.eof and len(self.buffer) < RELAY_BUFFER

    def read(self) -> None:
        data = self.source.recv(65536)
        if data:
            self.buffer += data
        else:
            self.eof = True

    def write(self) -> None:
        if self.buffer:
            sent = self.sink.send(self.buffer)
            del self.buffer[:sent]
        if self.eof and not self.buffer and not self.shut:
            self.shut = True
            self.sink.shutdown(socket.SHUT_WR)


def relay(client: socket.socket, hub: socket.socket) -> None:
    """Copy bytes both ways until the hub has finished with this client, then linger."""
    for sock in (client, hub):
        sock.setblocking(False)
    up, down = Pipe(client, hub), Pipe(hub, client)
    poller = select.poll()
    by_fd = {client.fileno(): client, hub.fileno(): hub}
    while not down.shut:  # until the hub's EOF has been passed on to the client
        for fd in by_fd:
            poller.register(fd, _mask(fd, up, down))  # registering again modifies the mask
        try:
            for fd, mask in poller.poll():
                _service(by_fd[fd], mask, up, down)
        except BlockingIOError:
            continue
        except OSError:
            return  # the client reset, or the hub is gone: exiting closes both, the hub sees EOF
    linger(client)


def linger(client: socket.socket) -> None:
    """Read and discard until the client closes (or time is up), so it gets no reset."""
    deadline = time.monotonic() + LINGER_SECONDS
    client.setblocking(True)
    while (left := deadline - time.monotonic()) > 0:
        client.settimeout(left)
        try:
            if not client.recv(65536):
                return
        except OSError:
            return


def _mask(fd: int, up: Pipe, down: Pipe) -> int:
    mask = 0
    for pipe in (up, down):
        if pipe.source.fileno() == fd and pipe.wants_read():
            mask |= select.POLLIN
        if pipe.sink.fileno() == fd and pipe.buffer:
            mask |= select.POLLOUT
    return mask


def _service(sock: socket.socket, mask: int, up: Pipe, down: Pipe) -> None:
    for pipe in (up, down):
        if pipe.source is sock and mask & (select.POLLIN | select.POLLHUP | select.POLLERR) and pipe.wants_read():
            pipe.read()
    for pipe in (up, down):
        pipe.write()
