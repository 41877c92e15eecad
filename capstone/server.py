"""The chat server's I/O driver: sockets and a multiplexer around the sans-IO room.

One loop, the shape of the lesson servers: wait for readiness, accept, recv, decode
frames, hand them to the room, apply the effects it returns. What makes it a server
you can run for a team rather than a classroom toy:

- a broadcast is encoded once (by the room) and the same bytes object is queued for
  every reader; each connection's queue is flushed with one send() per wake-up;
- nothing blocks: sockets are non-blocking, and a reader that cannot keep up is cut
  off once its queue passes `max_queue` (the others get LEFT);
- closing "after an error" flushes, shuts down the sending side, then reads and
  discards until the peer closes (bounded in time), so the error is not lost to a reset;
- EMFILE on accept gives up a spare descriptor to accept-and-close instead of spinning;
- SIGINT/SIGTERM wake the loop through a wake-up fd; everyone gets ERROR SHUTDOWN and
  every connection is closed within one second.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from capstone import codec
from capstone.console import ServerConsole
from capstone.multiplexers import Backend
from capstone.room import Broadcast, Close, Limits, Log, Room, Send
from lessons.common import address_text, printable
from lessons.framing import FrameDecoder, FrameTooLarge
from lessons.unixsock import peer_credentials, remove_socket_file

RECV_SIZE = 65536
ACCEPT_BATCH = 64  # accepts per wake-up, so a connection storm cannot starve the members
LINGER_SECONDS = 2.0  # how long a closing connection may take to read its last frames
SHUTDOWN_GRACE = 0.7  # seconds to flush ERROR SHUTDOWN before everything is closed
KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}

LogFn = Callable[[str, str], None]


@dataclass(eq=False)
class Peer:
    """The I/O side of one connection; the room keeps the chat side under the same id."""

    sock: socket.socket
    label: str
    decoder: FrameDecoder
    admin: bool = False
    out: list = field(default_factory=list)  # bytes waiting to be sent, in order
    writing: bool = False  # registered for POLLOUT because the kernel buffer was full
    closing: bool = False  # flush, then shut down the sending side; input is discarded
    draining: bool = False  # sending side shut down: waiting (briefly) for the peer's EOF


@dataclass
class Listeners:
    chat: socket.socket
    admin: socket.socket | None = None
    chat_path: str | None = None  # Unix socket file of the chat, removed at exit
    admin_path: str | None = None


class ChatServer:
    def __init__(self, listeners: Listeners, backend: Backend, limits: Limits,
                 log: LogFn, console: int | None = None) -> None:
        self.listeners = listeners
        self.backend = backend
        self.limits = limits
        self.room = Room(limits)
        self.log = log
        self.console = console  # fd of a terminal whose lines are announcements
        self.peers: dict[int, Peer] = {}
        self.dirty: dict[int, Peer] = {}  # peers sent something (or closed) during this wake-up
        self.broadcast_pending = False  # a broadcast was queued: every member has output
        self.draining: dict[int, float] = {}  # fd -> deadline, oldest first
        self.stopping_at: float | None = None
        self._console = ServerConsole()  # what the administrator types on that terminal
        self._spare_fd: int | None = None
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    # ----- start and stop -------------------------------------------------------------

    def serve_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Run until SIGINT/SIGTERM. `on_ready` runs once the signals are ours, so whoever
        sees what it prints (the 'listening on' line) may stop the server cleanly at once."""
        self._install_signals()
        self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        for listener in (self.listeners.chat, self.listeners.admin):
            if listener is not None:
                listener.setblocking(False)
                self.backend.register(listener.fileno())
        self.backend.register(self._wakeup_r.fileno())
        if self.console is not None:
            self.backend.register(self.console)
        try:
            on_ready()
            self._loop()
        finally:
            self._close_everything()

    def _install_signals(self) -> None:
        """A signal writes a byte to the wake-up socket, so the wait returns at once."""
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        if self.stopping_at is None:
            self.stopping_at = time.monotonic()

    def _begin_shutdown(self) -> None:
        self.log("stop", "stopping: telling everyone, closing within a second")
        self._stop_listening()
        self._apply(self.room.shutdown())

    def _stop_listening(self) -> None:
        for listener in (self.listeners.chat, self.listeners.admin):
            if listener is not None and listener.fileno() >= 0:
                self.backend.unregister(listener.fileno())
                listener.close()
        for path in (self.listeners.chat_path, self.listeners.admin_path):
            if path:
                remove_socket_file(path)
        self.listeners.chat_path = self.listeners.admin_path = None  # removed once, never a successor's

    def _close_everything(self) -> None:
        for peer in list(self.peers.values()):
            self._drop(peer)
        self._stop_listening()
        signal.set_wakeup_fd(-1)
        self._wakeup_r.close()
        self._wakeup_w.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
        self.backend.close()

    # ----- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        shutdown_started = False
        while True:
            if self.stopping_at is not None and not shutdown_started:
                shutdown_started = True
                self._begin_shutdown()
                self._flush_dirty()
            if shutdown_started and (not self.peers or time.monotonic() >= self.stopping_at + SHUTDOWN_GRACE):
                return
            for fd, readable, writable in self.backend.wait(self._timeout()):
                self._dispatch(fd, readable, writable)
            now = time.monotonic()
            self._apply(self.room.tick(now))
            self._expire_drains(now)
            self._flush_dirty()

    def _timeout(self) -> float | None:
        deadlines = [self.room.next_deadline(), next(iter(self.draining.values()), None)]
        if self.stopping_at is not None:
            deadlines.append(self.stopping_at + SHUTDOWN_GRACE)
        pending = [deadline for deadline in deadlines if deadline is not None]
        if not pending:
            return None
        return max(0.0, min(pending) - time.monotonic())

    def _dispatch(self, fd: int, readable: bool, writable: bool) -> None:
        peer = self.peers.get(fd)
        if peer is not None:
            if writable:
                self._flush(fd, peer)
            if readable and fd in self.peers:
                self._on_readable(fd, peer)
        elif fd == self._wakeup_r.fileno():
            self._drain_wakeup()
        elif fd == self.console:
            self._on_console()
        elif self.listeners.chat.fileno() == fd:
            self._accept_all(self.listeners.chat, admin=False)
        elif self.listeners.admin is not None and self.listeners.admin.fileno() == fd:
            self._accept_all(self.listeners.admin, admin=True)

    # ----- accepting ---------------------------------------------------------------------

    def _accept_all(self, listener: socket.socket, admin: bool) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    self._refuse_one(listener)
                    return
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                raise
            if admin:
                self._adopt_admin(sock)
            else:
                self._adopt_chat(sock, address)

    def _refuse_one(self, listener: socket.socket) -> None:
        """Out of descriptors: use the spare one to accept and close, so poll stops firing."""
        self.log("drop", "too many open files: refusing a new connection")
        if self._spare_fd is None:
            return
        os.close(self._spare_fd)
        try:
            sock, _ = listener.accept()
            sock.close()
        except OSError:
            pass
        finally:
            self._spare_fd = os.open(os.devnull, os.O_RDONLY)

    def _adopt_chat(self, sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            set_keepalive(sock)
        label = address_text(address) if address else f"unix#{sock.fileno()}"
        relay = self.connect_client(sock, label)
        if relay is None:
            return
        peer = Peer(relay, label, codec.new_decoder(self.limits.max_payload))
        if self._watch(peer):
            self._apply(self.room.connect(relay.fileno(), time.monotonic()))

    def connect_client(self, sock: socket.socket, label: str) -> socket.socket | None:
        """The hook the fork engine overrides: here the client's own socket is the peer."""
        return sock

    def _adopt_admin(self, sock: socket.socket) -> None:
        pid, uid, _ = peer_credentials(sock)
        if uid not in (os.geteuid(), 0):
            self.log("admin", f"refused admin connection from uid {uid} (pid {pid})")
            sock.close()
            return
        peer = Peer(sock, f"admin pid {pid}", codec.new_decoder(self.limits.max_payload), admin=True)
        if self._watch(peer):
            self._apply(self.room.connect(sock.fileno(), time.monotonic(), admin=True))

    def _watch(self, peer: Peer) -> bool:
        peer.sock.setblocking(False)
        try:
            self.backend.register(peer.sock.fileno())
        except ValueError as err:  # select() and fd >= 1024
            self.log("drop", f"{peer.label}: {err}")
            peer.sock.close()
            return False
        self.peers[peer.sock.fileno()] = peer
        return True

    # ----- reading -----------------------------------------------------------------------

    def _on_readable(self, fd: int, peer: Peer) -> None:
        try:
            data = peer.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:  # reset, or an error the kernel reported with POLLERR
            self._gone(fd, peer, "lost the connection")
            return
        if peer.closing:  # nothing it sends counts any more; its EOF ends it
            if not data:
                self._drop(peer)
            return
        if not data:
            self._gone(fd, peer, "closed the connection")
            return
        self._on_data(fd, peer, data)

    def _on_data(self, fd: int, peer: Peer, data: bytes) -> None:
        decoder = peer.decoder
        decoder.feed(data)
        now = time.monotonic()
        room = self.room
        try:
            for kind_fields, payload in decoder:
                self._apply(room.receive(fd, kind_fields[0], payload, now))
                if peer.closing or fd not in self.peers:
                    return
        except FrameTooLarge as err:
            self._apply(room.too_large(fd, err.length))

    def _gone(self, fd: int, peer: Peer, why: str) -> None:
        """EOF or reset: the others hear LEFT; what was queued for it is dropped."""
        self._apply(self.room.disconnect(fd, why))
        self._drop(peer)

    # ----- effects -----------------------------------------------------------------------

    def _apply(self, effects: list) -> None:
        peers, dirty = self.peers, self.dirty
        for effect in effects:
            kind = type(effect)
            if kind is Broadcast:  # the hot loop: one list append per reader, nothing more
                data, exclude = effect.data, effect.exclude
                for conn in self.room.members:
                    if conn != exclude:
                        peers[conn].out.append(data)
                self.broadcast_pending = True
            elif kind is Send:
                peer = peers.get(effect.conn)
                if peer is not None:
                    peer.out.append(effect.data)
                    dirty[effect.conn] = peer
            elif kind is Close:
                peer = peers.get(effect.conn)
                if peer is not None:
                    peer.closing = True
                    dirty[effect.conn] = peer
            elif kind is Log:
                self.log(effect.event, effect.text)

    # ----- writing -----------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        """One coalesced send per connection per wake-up.

        Peers waiting for POLLOUT are tried too: a failed send is how a reader that never
        reads is found to be over its queue bound.
        """
        while self.broadcast_pending or self.dirty:
            if self.broadcast_pending:
                self.broadcast_pending = False
                self.dirty.clear()
                for fd, peer in list(self.peers.items()):
                    if (peer.out or peer.closing) and fd in self.peers:
                        self._flush(fd, peer)
                continue
            fd, peer = self.dirty.popitem()
            if fd in self.peers:
                self._flush(fd, peer)

    def _flush(self, fd: int, peer: Peer) -> None:
        if peer.out:
            data = peer.out[0] if len(peer.out) == 1 else b"".join(peer.out)
            try:
                sent = peer.sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._gone(fd, peer, "lost the connection")
                return
            left = len(data) - sent
            peer.out = [memoryview(data)[sent:]] if left else []
            if left > self.limits.max_queue:
                self._gone(fd, peer, f"was too slow to read (over {self.limits.max_queue} bytes queued)")
                return
        self._want_write(fd, peer, bool(peer.out))
        if not peer.out and peer.closing and not peer.draining:
            self._start_drain(fd, peer)

    def _want_write(self, fd: int, peer: Peer, wanted: bool) -> None:
        if peer.writing != wanted:
            peer.writing = wanted
            self.backend.modify(fd, wanted)

    def _start_drain(self, fd: int, peer: Peer) -> None:
        """Everything is sent: shut down our side and wait (briefly) for the peer to close.

        Closing at once while the peer's bytes are unread would send a reset, and a reset
        can destroy the error frame before the peer reads it.
        """
        try:
            peer.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(peer)
            return
        peer.draining = True
        self.draining[fd] = time.monotonic() + LINGER_SECONDS

    def _expire_drains(self, now: float) -> None:
        while self.draining:
            fd, deadline = next(iter(self.draining.items()))
            if deadline > now:
                return
            self._drop(self.peers[fd])

    def _drop(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        if self.peers.pop(fd, None) is None:
            return
        self.dirty.pop(fd, None)
        self.draining.pop(fd, None)
        try:
            self.backend.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        peer.sock.close()
        self.connection_closed(fd)

    def connection_closed(self, fd: int) -> None:
        """Hook for the fork engine (reap the relay child); nothing to do here."""

    # ----- signals and the console ------------------------------------------------------

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(512):
                pass
        except BlockingIOError:
            pass
        self.on_signal()

    def on_signal(self) -> None:
        """Hook: a signal arrived (the fork engine reaps its relays here)."""

    def _on_console(self) -> None:
        """A line typed on the server's terminal: an announcement or a command (console.py)."""
        try:
            data = os.read(self.console, 4096)
        except OSError:  # EIO: the terminal hung up; the same as its end
            data = b""
        if not data:
            self.backend.unregister(self.console)
            self.console = None
        for effects in self._console.feed(data, self.room):
            self._apply(effects)


def set_keepalive(sock: socket.socket) -> None:
    """Drop a member whose machine vanished: probe after 60 s idle, every 10 s, 3 times."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE.items():
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def plain_log(stream=None) -> LogFn:  # noqa: ANN001
    """A log line per event; peer-supplied text is made printable first."""
    out = stream or sys.stdout

    def log(event: str, text: str) -> None:
        out.write(f"{time.strftime('%H:%M:%S')} {event:>6}  {printable(text)}\n")
        out.flush()

    return log


def rich_log() -> LogFn:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    styles = {"join": "green", "leave": "yellow", "drop": "red", "admin": "bold magenta", "stop": "bold"}

    def log(event: str, text: str) -> None:
        style = styles.get(event, "")
        tag = f"[{style}]{event:>6}[/]" if style else f"{event:>6}"
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {tag}  {escape(printable(text))}")

    return log
