"""The fork engine: one process per client, one hub that owns the room.

The notes' homework invites a process per client. Processes share no memory, so the
room cannot live in them (socketserver's docs warn about exactly this); it lives in
one hub process, and each child is a dumb relay between its client's TCP socket and
one end of a Unix socket pair whose other end the hub keeps:

    client <--TCP--> child (relay) <--socketpair--> hub (ChatServer loop + Room)

So the hub is the ordinary event-loop server with its public hooks overridden
(`connect_client`, `install_signals`, `on_signal`, `close_everything`): instead of
watching the client's socket, it forks a relay and watches the pair. Every rule
(order, limits, timeouts, shutdown) is the same code. The price: each byte crosses
two sockets and a context switch, and each client costs a process.

A relay lives exactly as long as its hub wants it:
- the hub shuts down its end for writing (after an error, or ERROR SHUTDOWN): the relay
  passes that EOF on; once the client's kernel has acknowledged all of it, it closes the
  pair (the hub is done with this client), then reads and discards what the client still
  sends until the client closes, for at most LINGER_SECONDS, so the client's last frame
  is not destroyed by a reset;
- the hub closes its end (it dropped the client, or its shutdown time is up): the relay
  reads what the client already sent and ends;
- the hub ends, however it ends: the kernel kills the relay (PR_SET_PDEATHSIG), and
  where that does not exist the closed pair ends it as above (and a stopping hub
  kills what is left).
A relay never spins: a hang-up it cannot act on ends it.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import socket
import struct
import sys
import termios
import time

from capstone.server import LINGER_SECONDS, ChatServer
from lessons.toolkit.children import die_with_parent, libc, reap_exited

RELAY_BUFFER = 256 * 1024  # a child stops reading from one side while this much waits for the other
RELAY_EXIT_WAIT = 0.15  # a hub ending without a stop signal (an error) reaps relays this long
SHUTDOWN_LINGER = 0.2  # at shutdown, relays still lingering this long after the signal die with the hub
REAP_WAIT = 0.05  # without PR_SET_PDEATHSIG: after SIGKILL, how long the hub reaps; init reaps the rest
DRAIN_READS = 64  # reads of what a client already sent before a relay closes it
DELIVERY_CHECK_MS = 50  # how often a relay asks whether the client has acknowledged its last bytes
HANG_UP = select.POLLHUP | select.POLLERR


class ForkingChatServer(ChatServer):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.relays: set[int] = set()  # pids of relay children not yet reaped
        if sys.platform == "linux":
            libc()  # loaded once in the hub, so that a new relay has nothing to load

    def connect_client(self, sock: socket.socket, label: str) -> socket.socket | None:
        try:
            hub_end, child_end = socket.socketpair()
        except OSError as err:  # EMFILE: the hub is out of descriptors, this client is not served
            self.log("drop", f"{label}: cannot make a relay's socket pair ({err.strerror})")
            sock.close()
            return None
        hub_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as err:
            self.log("drop", f"{label}: cannot fork a relay ({err.strerror})")
            for s in (sock, hub_end, child_end):
                s.close()
            return None
        if pid == 0:
            become_relay(hub_pid, sock, child_end)
        child_end.close()
        sock.close()
        self.relays.add(pid)
        return hub_end

    def install_signals(self) -> None:
        super().install_signals()
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop to reap

    def on_signal(self) -> None:
        self.relays -= set(reap_exited())  # relays that ended: no zombie stays

    def close_everything(self) -> None:
        """Closing the pairs tells every relay to end; relays that linger for a client
        that keeps its connection are reaped until SHUTDOWN_LINGER after the signal,
        the rest die with the hub."""
        try:
            super().close_everything()
        finally:
            if self.stopping_at is not None:  # relays end in real time, whatever the server's clock
                wait = max(0.0, self.stopping_at + SHUTDOWN_LINGER - self.clock())
            else:
                wait = RELAY_EXIT_WAIT
            end_relays(self.relays, time.monotonic() + wait)
            self.relays.clear()


# ----- in the hub: reaping and ending relays ----------------------------------------------


def end_relays(pids: set[int], deadline: float) -> None:
    """Reap relays as they end until `deadline`; the rest die when the hub does.

    On Linux the kernel kills them once the hub has exited (PR_SET_PDEATHSIG): killing
    them here would make hundreds of exits compete with the hub's own for the CPU.
    Elsewhere: SIGKILL them all at once (one by one, kill and wait, took seconds at 500
    members) and reap them for REAP_WAIT at most; init reaps the rest.
    """
    alive = reap_until(set(pids), deadline)
    if sys.platform == "linux":
        return
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap_until(alive, time.monotonic() + REAP_WAIT)


def reap_until(pids: set[int], deadline: float) -> set[int]:
    """Reap until every pid in `pids` is reaped or `deadline` passes; returns the rest."""
    alive = set(pids)
    while True:
        alive -= set(reap_exited())
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.005)  # polling interval while relays exit


# ----- in the child: becoming a relay ---------------------------------------------------


def become_relay(hub_pid: int, client: socket.socket, hub: socket.socket) -> None:
    """In the child: keep only the two sockets, relay until done, never return.

    A relay must not outlive the hub, use the hub's signal handlers, or write to the
    hub's output (its log may be a pipe that a writer thread owns): it ends with os._exit.
    """
    status = 1
    try:
        leave_signals_to_hub()
        die_with_hub(hub_pid)
        forget_hub_descriptors(client, hub)
        relay(client, hub)
        status = 0
    finally:
        os._exit(status)


def leave_signals_to_hub() -> None:
    """Drop every handler inherited from the hub. Ctrl-C and a SIGTERM sent to the whole
    process group are the hub's to handle: it tells the clients, then closes the pairs."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if callable(signal.getsignal(signum)):  # a Python handler: it would run the hub's code
            signal.signal(signum, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def die_with_hub(hub_pid: int) -> None:
    """Linux: the kernel SIGKILLs this relay when the hub ends, however it ends.

    The hub may have died between fork() and prctl(); then no signal will come, and
    getppid() already names another process: end now.
    """
    if sys.platform == "linux":
        die_with_parent(hub_pid)
    elif os.getppid() != hub_pid:
        os._exit(1)


def forget_hub_descriptors(client: socket.socket, hub: socket.socket) -> None:
    """Standard input and output become /dev/null; every other descriptor but the two sockets is closed."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    keep = sorted((client.fileno(), hub.fileno()))
    os.closerange(3, keep[0])
    os.closerange(keep[0] + 1, keep[1])
    os.closerange(keep[1] + 1, 1 << 20)


# ----- in the child: relaying -------------------------------------------------------------


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
        try:
            data = self.source.recv(65536)
        except BlockingIOError:
            return
        if data:
            self.buffer += data
        else:
            self.eof = True

    def write(self) -> None:
        if self.buffer:
            try:
                sent = self.sink.send(self.buffer)
            except BlockingIOError:
                return  # full; a hang-up must still be noticed, so this is no reason to loop
            del self.buffer[:sent]
        if self.eof and not self.buffer and not self.shut:
            self.shut = True
            self.sink.shutdown(socket.SHUT_WR)


def relay(client: socket.socket, hub: socket.socket) -> None:
    """Copy bytes both ways until the hub has finished with this client, then linger."""
    for sock in (client, hub):
        sock.setblocking(False)
    handed_over = copy(Pipe(client, hub), Pipe(hub, client)) and delivered(client, hub)
    hub.close()  # now, not at exit: the hub may forget this client while we finish
    step_back()
    if handed_over:
        linger(client)
    discard_unread(client)


def step_back() -> None:
    """A relay that no longer relays runs at the lowest priority: at shutdown hundreds of
    them end (or are killed) at once, and their exits must not starve the hub."""
    try:
        os.nice(19)
    except OSError:
        pass


def copy(up: Pipe, down: Pipe) -> bool:
    """Relay until the hub's EOF has been passed on to the client (True), or until either
    side is gone (False). Each wake-up moves bytes or ends the relay: a hang-up that no
    read can consume would wake poll() again at once, forever. So once the hub has closed
    its end and we cannot take more from it (the client does not read), we end."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in (up.source, down.source)}
    while not down.shut:
        for fd in by_fd:
            poller.register(fd, _mask(fd, up, down))  # registering again modifies the mask
        try:
            for fd, mask in poller.poll():
                if not _service(by_fd[fd], mask, up, down):
                    return False
        except OSError:
            return False  # the client reset, or the hub is gone
    return True


def delivered(client: socket.socket, hub: socket.socket) -> bool:
    """Wait until the client's kernel has acknowledged everything, our EOF included, reading
    and discarding what the client sends meanwhile. False if the hub closes its end first
    (its shutdown time is up) or the client goes: then a kill can no longer cost the client
    its last frame, which a reset would destroy while still queued here."""
    poller = select.poll()
    poller.register(client, select.POLLIN)
    poller.register(hub, 0)  # only its hang-up matters
    while unacknowledged(client):
        for fd, _ in poller.poll(DELIVERY_CHECK_MS):
            if fd == hub.fileno() or not read_and_discard(client):
                return False
    return True


def unacknowledged(sock: socket.socket) -> int:
    """Bytes we sent that the peer has not acknowledged (SIOCOUTQ); 0 where unsupported."""
    request = getattr(termios, "TIOCOUTQ", None)  # SIOCOUTQ has the same number on Linux
    if request is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def read_and_discard(client: socket.socket) -> bool:
    """One read of what the client sent; False once it has closed or reset."""
    try:
        return bool(client.recv(65536))
    except BlockingIOError:
        return True
    except OSError:
        return False


def linger(client: socket.socket) -> None:
    """The client has our EOF: read and discard until it closes, so that it gets no reset,
    for LINGER_SECONDS at most (the hub, at shutdown, kills relays that linger too long)."""
    poller = select.poll()
    poller.register(client, select.POLLIN)
    deadline = time.monotonic() + LINGER_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        if not poller.poll(left * 1000) or not read_and_discard(client):
            return


def discard_unread(client: socket.socket) -> None:
    """Read what the client already sent: closing with unread bytes would send a reset,
    and a reset can destroy what the client has not read yet."""
    for _ in range(DRAIN_READS):
        try:
            if not client.recv(65536):
                return
        except OSError:  # BlockingIOError: nothing more for now
            return


def _mask(fd: int, up: Pipe, down: Pipe) -> int:
    mask = 0
    for pipe in (up, down):
        if pipe.source.fileno() == fd and pipe.wants_read():
            mask |= select.POLLIN
        if pipe.sink.fileno() == fd and pipe.buffer:
            mask |= select.POLLOUT
    return mask


def _service(sock: socket.socket, mask: int, up: Pipe, down: Pipe) -> bool:
    """Act on one socket's events; False when it hung up and nothing can be read from it."""
    consumed = False
    for pipe in (up, down):
        if pipe.source is sock and mask & (select.POLLIN | HANG_UP) and pipe.wants_read():
            pipe.read()
            consumed = True
    for pipe in (up, down):
        pipe.write()
    return consumed or not mask & HANG_UP
