"""The chat server's I/O driver: sockets and a multiplexer around the sans-IO room.

One loop, the shape of the lesson servers: wait for readiness, accept, recv, decode
frames, hand them to the room, apply the effects it returns. What makes it a server
you can run for a team rather than a classroom toy (and one a hostile client cannot
freeze, bloat or crash):

- a broadcast is encoded once (by the room) and the same bytes object is queued for
  every reader; a queue is sent with one send() (or one sendmsg() over many buffers)
  per wake-up, keeping an offset into the first buffer: nothing is ever re-joined, so
  a broadcast costs O(members) however many of them have stopped reading;
- output is bounded where it is produced: a frame that would push one connection past
  `max_queue` drops that connection instead of being queued (the others get LEFT), and
  when all queues together pass `max_buffered` the connections with the most unsent
  output are dropped first;
- WHO and PING past their rate wait (the room's Defer): the room keeps the frame and
  the bytes behind it, and the driver reads nothing more from that connection until the
  room's Resume, so a flood slows its sender and nobody else;
- closing "after an error" flushes, shuts down the sending side, then reads and
  discards until the peer closes (bounded in time), so the error is not lost to a reset;
- EMFILE on accept gives up a spare descriptor to accept-and-close instead of spinning;
  the select engine refuses chat connections before its descriptors reach FD_SETSIZE,
  so the administrator can always get in; floods of one event are logged as one
  summary line a second;
- SIGINT/SIGTERM wake the loop through a wake-up fd; everyone gets ERROR SHUTDOWN and
  every connection is closed within one second.
"""

from __future__ import annotations

import errno
import itertools
import os
import resource
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable

from capstone.console import ServerConsole
from capstone.irc.session import IrcNetwork, IrcSession, ToRoom
from capstone.multiplexers import Backend
from capstone.room import Broadcast, Close, Defer, Limits, Log, Resume, Room, Send
from lessons.toolkit.common import address_text, printable
from lessons.toolkit.i18n import _, ngettext
from lessons.toolkit.logsink import RepeatCounter
from lessons.toolkit.unixsock import SocketFile, peer_credentials

RECV_SIZE = 65536
ACCEPT_BATCH = 64  # accepts per wake-up, so a connection storm cannot starve the members
LINGER_SECONDS = 2.0  # how long a closing connection may take to read its last frames
SHUTDOWN_GRACE = 0.7  # seconds to flush ERROR SHUTDOWN before everything is closed
KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 3}
# Keepalive probes only an idle connection. A member with unacknowledged data (a room
# with traffic) is given up after this long without an acknowledgement instead of the
# kernel's ~15 minutes of retransmissions: the same 90 s as keepalive's 60 + 3 x 10.
USER_TIMEOUT_MS = 90_000
# The kernel grows a loopback send buffer to 4 MiB for a reader that does not read: with
# 1,000 stuck members that is 1.5 GB of kernel memory that no RSS shows. 64 KiB is still
# dozens of chat frames in flight per member (Linux doubles it for its bookkeeping).
MEMBER_SNDBUF = 64 * 1024
IOV_BATCH = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)  # buffers per sendmsg
QUEUE_ENTRY_COST = 8  # bytes a queued reference costs (a deque slot); counted in max_buffered
FD_RESERVE = 16  # descriptors below the limit (FD_SETSIZE, ulimit -n) kept for the administrator
IRC_SWEEP = 5.0  # seconds between two looks for silent IRC clients (to PING, or to drop)

LogFn = Callable[[str, str], None]
Clock = Callable[[], float]


@dataclass(frozen=True)
class OutputLimits:
    """The driver's own bounds: how much output may wait in its queues (the room never sees them)."""

    max_queue: int = 1 << 20  # bytes queued for one slow reader
    max_buffered: int = 64 << 20  # bytes queued for all connections together


class PeerState(Enum):
    OPEN = "open"  # frames are read and handed to the room
    CLOSING = "closing"  # the room closed it: flush what is queued; what it sends is discarded
    DRAINING = "draining"  # all sent and our side shut down: waiting (briefly) for the peer's EOF


@dataclass(eq=False)
class Peer:
    """The I/O side of one connection; the room keeps the chat side under the same id."""

    sock: socket.socket
    label: str
    admin: bool = False
    state: PeerState = PeerState.OPEN
    out: deque = field(default_factory=deque)  # frames waiting to be sent, in order
    offset: int = 0  # bytes of out[0] already sent
    queued: int = 0  # bytes waiting: what max_queue bounds
    writing: bool = False  # registered for POLLOUT because the kernel buffer was full
    paused: bool = False  # the room deferred a frame: nothing more is read until it resumes
    wire: IrcSession | None = None  # an IRC connection's adapter; None: the room's own frames


@dataclass
class Listeners:
    chat: socket.socket
    admin: socket.socket | None = None
    chat_path: str | None = None  # Unix socket file of the chat (shown in the banner)
    admin_path: str | None = None
    chat_file: SocketFile | None = None  # what is removed at exit, if still ours
    admin_file: SocketFile | None = None
    irc: socket.socket | None = None  # IRC clients (irssi, WeeChat, ii) into the same room


class ChatServer:
    """The event loop around the room. `serve_forever` is `start`, then `run_once` until the
    server has stopped, then `close_everything`.

    Hooks a subclass may override (the fork engine does, the way socketserver's mix-ins do):
    - `connect_client(sock, label)`: the socket to watch for a new chat client (or None);
    - `connection_closed(fd)`: a watched connection was closed;
    - `install_signals()`: make SIGINT/SIGTERM stop the loop (call the base first);
    - `on_signal()`: a signal arrived;
    - `close_everything()`: release every socket and descriptor (call the base first).
    `request_stop()` stops the server as SIGTERM does. `clock` is read for every time the
    server needs, so tests can drive linger, shutdown and join timeouts without waiting.
    """

    def __init__(self, listeners: Listeners, backend: Backend, limits: Limits, log: LogFn,
                 console: int | None = None, *, output: OutputLimits = OutputLimits(),
                 clock: Clock = time.monotonic, room: Room | None = None,
                 irc: IrcNetwork = IrcNetwork()) -> None:
        self.listeners = listeners
        self.backend = backend
        self.limits = limits
        self.output = output
        self.clock = clock
        self.room = room if room is not None else Room(limits)
        self.log = log
        self.irc = irc  # the channel and timings of IRC sessions (when listeners.irc is set)
        self.irc_sweep_at: float | None = None  # next look for silent IRC clients
        self.console = console  # fd of a terminal whose lines are announcements
        self.peers: dict[int, Peer] = {}
        self.dirty: dict[int, Peer] = {}  # peers sent something (or closed) during this wake-up
        self.broadcast_pending = False  # a broadcast was queued: every member has output
        self.drain_deadlines: dict[int, float] = {}  # fd -> when a DRAINING peer is dropped, oldest first
        self.overflowed: dict[int, Peer] = {}  # over their queue bound: out of `peers`, dropped after the effects
        self.buffered = 0  # bytes (and slots) queued for all peers together
        self.stopping_at: float | None = None  # when a stop was requested
        self.shutdown_begun = False  # everyone has been told ERROR SHUTDOWN
        self.repeats: dict[str, RepeatCounter] = {}
        self._repeat_texts: dict[str, Callable[[int], str]] = {}
        self._enforcing_budget = False
        self._console = ServerConsole()  # what the administrator types on that terminal
        self._watched: dict[int, Callable[[], list]] = {}  # extra descriptors: fd -> what gives their effects
        self._spare_fd: int | None = None
        self._signals_installed = False
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.open_file_limit = None if soft_limit == resource.RLIM_INFINITY else soft_limit
        self._fds_at_start = 0  # descriptors the server itself holds, counted once it runs

    # ----- start and stop -------------------------------------------------------------

    def serve_forever(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Run until SIGINT/SIGTERM. `on_ready` runs once the signals are ours, so whoever
        sees what it prints (the 'listening on' line) may stop the server cleanly at once."""
        self.install_signals()
        self.start()
        try:
            on_ready()
            while self.run_once():
                pass
        finally:
            self.close_everything()

    def start(self) -> None:
        """Watch the listeners, the wake-up socket and the console; keep a spare descriptor."""
        self._spare_fd = os.open(os.devnull, os.O_RDONLY)
        self._fds_at_start = self._spare_fd + 1  # the lowest free number: about how many are open
        for listener in (self.listeners.chat, self.listeners.admin, self.listeners.irc):
            if listener is not None:
                listener.setblocking(False)
                self.backend.register(listener.fileno())
        if self.listeners.irc is not None:
            self.irc_sweep_at = self.clock() + IRC_SWEEP
        self.backend.register(self._wakeup_r.fileno())
        if self.console is not None:
            self.backend.register(self.console)

    def install_signals(self) -> None:
        """A signal writes a byte to the wake-up socket, so the wait returns at once;
        SIGINT and SIGTERM request the stop."""
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        self._signals_installed = True
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self.request_stop()

    def request_stop(self) -> None:
        """Stop as SIGTERM does: the next turn tells everyone, and the loop ends once all
        connections are closed or SHUTDOWN_GRACE has passed."""
        if self.stopping_at is None:
            self.stopping_at = self.clock()

    def _begin_shutdown(self) -> None:
        self.shutdown_begun = True
        self.log("stop", _("stopping: telling everyone, closing within a second"))
        self._stop_listening()
        self._apply(self.room.shutdown())
        self._flush_dirty()

    def _stop_listening(self) -> None:
        for listener in (self.listeners.chat, self.listeners.admin, self.listeners.irc):
            if listener is not None and listener.fileno() >= 0:
                self.backend.unregister(listener.fileno())
                listener.close()
        for socket_file in (self.listeners.chat_file, self.listeners.admin_file):
            if socket_file is not None:
                socket_file.remove()  # only while it is still ours, never a successor's
        self.listeners.chat_file = self.listeners.admin_file = None

    def close_everything(self) -> None:
        """Close every connection and listener, give the signals' wake-up back, free the rest."""
        for peer in list(self.peers.values()):
            self._drop(peer)
        self._drop_overflowed()
        self._stop_listening()
        self._report_repeats(float("inf"))
        if self._signals_installed:
            signal.set_wakeup_fd(-1)
        self._wakeup_r.close()
        self._wakeup_w.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        self.backend.close()

    def watch_descriptor(self, fd: int, on_readable: Callable[[], list]) -> None:
        """Watch one more descriptor; when it is readable, apply the effects `on_readable` returns.

        A cluster room's broker thread wakes the loop this way: the loop never waits on the
        broker, it only hears that there is something to take."""
        self.backend.register(fd)
        self._watched[fd] = on_readable

    # ----- the loop ----------------------------------------------------------------------

    def run_once(self, timeout: float | None = None) -> bool:
        """One turn of the loop: wait for readiness (at most `timeout` seconds, and never
        past the next deadline), handle it, then do what time asks. False once stopped."""
        if self.stopping_at is not None and not self.shutdown_begun:
            self._begin_shutdown()
        if self.shutdown_begun and (not self.peers or self.clock() >= self.stopping_at + SHUTDOWN_GRACE):
            return False
        for fd, readable, writable in self.backend.wait(self._timeout(timeout)):
            try:
                self._dispatch(fd, readable, writable)
            except MemoryError:  # accepting, a signal, the console: log it and carry on
                self.log("drop", _("out of memory while handling descriptor {fd}").format(fd=fd))
        now = self.clock()
        self._apply(self.room.tick(now))
        self._expire_drains(now)
        self._sweep_irc(now)
        self._report_repeats(now)
        self._flush_dirty()
        return True

    def _timeout(self, longest: float | None) -> float | None:
        deadlines = [self.room.next_deadline(), next(iter(self.drain_deadlines.values()), None), self.irc_sweep_at]
        deadlines += [counter.next_report_at() for counter in self.repeats.values()]
        if self.stopping_at is not None:
            deadlines.append(self.stopping_at + SHUTDOWN_GRACE)
        pending = [deadline for deadline in deadlines if deadline is not None]
        wait = max(0.0, min(pending) - self.clock()) if pending else None
        if longest is not None:
            wait = longest if wait is None else min(wait, longest)
        return wait

    def _dispatch(self, fd: int, readable: bool, writable: bool) -> None:
        peer = self.peers.get(fd)
        if peer is not None:
            try:
                if writable:
                    self._flush(fd, peer)
                if readable and self.peers.get(fd) is peer and not peer.paused:
                    self._on_readable(fd, peer)
            except MemoryError:  # never the whole server for one connection
                self._out_of_memory(fd, peer)
        elif fd == self._wakeup_r.fileno():
            self._drain_wakeup()
        elif fd in self._watched:
            self._apply(self._watched[fd]())
        elif fd == self.console:
            self._on_console()
        elif self.listeners.chat.fileno() == fd:
            self._accept_all(self.listeners.chat, admin=False)
        elif self.listeners.admin is not None and self.listeners.admin.fileno() == fd:
            self._accept_all(self.listeners.admin, admin=True)
        elif self.listeners.irc is not None and self.listeners.irc.fileno() == fd:
            self._accept_all(self.listeners.irc, admin=False, irc=True)

    def _out_of_memory(self, fd: int, peer: Peer) -> None:
        self._release_output(peer)
        if self.peers.get(fd) is peer:
            self._gone(fd, peer, _("was dropped: the server ran out of memory serving it"))

    # ----- summaries of repeated events ------------------------------------------------

    def _repeat(self, key: str, describe: Callable[[int], str]) -> None:
        """Count one more of a flood-prone event; log a summary at most once a second."""
        counter = self.repeats.get(key)
        if counter is None:
            counter = self.repeats[key] = RepeatCounter()
            self._repeat_texts[key] = describe
        count = counter.count(self.clock())
        if count:
            self.log("drop", describe(count))

    def _report_repeats(self, now: float) -> None:
        for key, counter in self.repeats.items():
            count = counter.due(now)
            if count:
                self.log("drop", self._repeat_texts[key](count))

    # ----- accepting ---------------------------------------------------------------------

    def _accept_all(self, listener: socket.socket, admin: bool, irc: bool = False) -> None:
        for _round in range(ACCEPT_BATCH):
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    self._refuse_one(listener)
                    continue
                self._repeat(f"accept {err.errno}", lambda count, err=err: ngettext(
                    "accept() failed {count:,} time: {reason}", "accept() failed {count:,} times: {reason}",
                    count).format(count=count, reason=err.strerror or err))
                return
            self.adopt(sock, address, admin, irc)

    def adopt(self, sock: socket.socket, address: object, admin: bool = False, irc: bool = False) -> int | None:
        """Serve a connection accepted on the chat (or the admin, or the IRC) socket; the id the
        room knows it by, or None if it was refused. Tests hand it one end of a socket pair."""
        if admin:
            return self._adopt_admin(sock)
        return self._adopt_chat(sock, address, irc)

    def _refuse_one(self, listener: socket.socket) -> None:
        """Out of descriptors: use the spare one to accept and close, so poll stops firing."""
        self._repeat("emfile", lambda count: ngettext(
            "refused {count:,} connection: too many open files",
            "refused {count:,} connections: too many open files", count).format(count=count))
        if self._spare_fd is None:
            return
        os.close(self._spare_fd)
        try:
            sock, _address = listener.accept()
            sock.close()
        except OSError:
            pass
        finally:
            self._spare_fd = os.open(os.devnull, os.O_RDONLY)

    def _adopt_chat(self, sock: socket.socket, address: object, irc: bool = False) -> int | None:
        if not self._room_for_chat(sock):
            return None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            tune_member_socket(sock)
        label = address_text(address) if address else f"unix#{sock.fileno()}"
        relay = self.connect_client(sock, label)
        if relay is None:
            return None
        wire = self.irc.new_session(self.clock()) if irc else None  # in the hub, so the fork engine speaks IRC too
        return self._watch(Peer(relay, label, wire=wire))

    def _room_for_chat(self, sock: socket.socket) -> bool:
        """The last few descriptors below the limit are kept for the administrator (and the
        console), so a flood of chat connections can never lock them out."""
        reason = self._why_no_room(sock)
        if reason is None:
            return True
        sock.close()
        self._repeat(reason, lambda count: ngettext(
            "refused {count:,} chat connection: {reason}, and the last {reserve} are kept for the administrator",
            "refused {count:,} chat connections: {reason}, and the last {reserve} are kept for the administrator",
            count).format(count=count, reason=reason, reserve=FD_RESERVE))
        return False

    def _why_no_room(self, sock: socket.socket) -> str | None:
        """select() cares about the descriptor's number, the open-file limit about how many
        are open: a peer each, what the server opened at start, and a few for a fork relay."""
        select_limit = self.backend.max_fd
        if select_limit is not None and sock.fileno() >= select_limit - FD_RESERVE:
            return _("{engine}() watches descriptors below {limit} only").format(
                engine=self.backend.name, limit=select_limit)
        limit = self.open_file_limit
        if limit is not None and self._fds_at_start + len(self.peers) + 3 >= limit - FD_RESERVE:
            return _("the server may open {limit} files (ulimit -n)").format(limit=limit)
        return None

    def connect_client(self, sock: socket.socket, label: str) -> socket.socket | None:
        """Hook: the socket to watch for a new chat client. Here the client's own socket;
        the fork engine forks a relay and returns its end of a socket pair."""
        return sock

    def _adopt_admin(self, sock: socket.socket) -> int | None:
        pid, uid, _gid = peer_credentials(sock)
        if uid not in (os.geteuid(), 0):
            self.log("admin", _("refused admin connection from uid {uid} (pid {pid})").format(uid=uid, pid=pid))
            sock.close()
            return None
        return self._watch(Peer(sock, f"admin pid {pid}", admin=True))

    def _watch(self, peer: Peer) -> int | None:
        """Register the peer with the multiplexer and tell the room; its fd is its id."""
        peer.sock.setblocking(False)
        fd = peer.sock.fileno()
        try:
            self.backend.register(fd)
        except ValueError as err:  # select() and fd >= FD_SETSIZE
            peer.sock.close()
            self._repeat("unwatchable", lambda count, err=err: ngettext(
                "closed {count:,} connection at once: {reason}", "closed {count:,} connections at once: {reason}",
                count).format(count=count, reason=err))
            return None
        self.peers[fd] = peer
        self._apply(self.room.connect(fd, self.clock(), admin=peer.admin))
        return fd

    # ----- reading -----------------------------------------------------------------------

    def _on_readable(self, fd: int, peer: Peer) -> None:
        """Bytes go to the room as they are; after a Close the room counts them for nothing."""
        try:
            data = peer.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:  # reset, or an error the kernel reported with POLLERR
            self._gone(fd, peer, _("lost the connection"))
            return
        if not data:
            self._gone(fd, peer, _("closed the connection"))
            return
        if peer.wire is not None:
            self._from_wire(fd, peer, peer.wire.receive_data(data, self.clock()))
        else:
            self._apply(self.room.receive_data(fd, data, self.clock()))

    def _from_wire(self, fd: int, peer: Peer, steps: Iterable) -> None:
        """What an IRC session made of its client's lines, in their order: frames for the
        room (as if a binary client had sent them) and its own replies to the client."""
        now = self.clock()
        for step in steps:
            if self.peers.get(fd) is not peer or peer.state is not PeerState.OPEN:
                break  # the room closed it: nothing it sent counts any more
            if type(step) is ToRoom:
                self._apply(self.room.receive_data(fd, step.data, now))
            else:
                self._queue(fd, peer, step.data)
                self.dirty[fd] = peer
        if self.buffered > self.output.max_buffered:
            self._enforce_budget()
        self._drop_overflowed()

    def _sweep_irc(self, now: float) -> None:
        """Every IRC_SWEEP seconds: PING the IRC clients that went silent, drop the ones that
        did not answer (a binary client has TCP keepalive for that; IRC expects PING)."""
        if self.irc_sweep_at is None or now < self.irc_sweep_at:
            return
        self.irc_sweep_at = now + IRC_SWEEP
        for fd, peer in list(self.peers.items()):
            if peer.wire is not None:
                self._from_wire(fd, peer, peer.wire.tick(now))

    def _gone(self, fd: int, peer: Peer, why: str) -> None:
        """EOF or reset: the others hear LEFT; what was queued for it is dropped."""
        self._apply(self.room.disconnect(fd, why))
        self._drop(peer)

    # ----- effects -----------------------------------------------------------------------

    def _apply(self, effects: list) -> None:
        peers, dirty, budget = self.peers, self.dirty, self.output.max_buffered
        for effect in effects:
            kind = type(effect)
            if kind is Broadcast:
                self._queue_broadcast(effect.data, effect.to, effect.exclude)
            elif kind is Send:
                peer = peers.get(effect.conn)
                if peer is not None:
                    data = effect.data if peer.wire is None else peer.wire.from_room(effect.data)
                    self._queue(effect.conn, peer, data)
                    dirty[effect.conn] = peer
            elif kind is Close:
                peer = peers.get(effect.conn)
                if peer is not None:
                    self._start_closing(effect.conn, peer)
            elif kind is Defer or kind is Resume:
                peer = peers.get(effect.conn)
                if peer is not None and peer.state is PeerState.OPEN:
                    peer.paused = kind is Defer  # a WHO/PING waits in the room: stop reading meanwhile
                    self._update_interest(effect.conn, peer)
            elif kind is Log:
                self.log(effect.event, effect.text)
            if self.buffered > budget:
                self._enforce_budget()
        self._drop_overflowed()

    def _queue_broadcast(self, data: bytes, recipients: tuple[int, ...], exclude: int | None) -> None:
        """The hot loop: per reader, one size check and one append."""
        peers, size = self.peers, len(data)
        limit = self.output.max_queue - size if self.stopping_at is None else float("inf")
        queued = 0
        lines = None  # the IRC form of this broadcast, made once for all IRC readers
        for conn in recipients:
            if conn != exclude:
                peer = peers.get(conn)
                if peer is None:  # dropped, or over its bound, since the room made this broadcast
                    continue
                if peer.wire is not None:
                    if lines is None:
                        lines = self.irc.from_broadcast(data)
                    self._queue(conn, peer, lines)
                    continue
                if peer.queued > limit:
                    self._overflow(conn, peer)
                    continue
                peer.out.append(data)
                peer.queued += size
                queued += 1
        self.buffered += (size + QUEUE_ENTRY_COST) * queued
        self.broadcast_pending = True

    def _queue(self, fd: int, peer: Peer, data: bytes) -> None:
        """Queue a frame for one connection, unless it would pass the connection's bound."""
        size = len(data)
        if not size:  # an IRC session had nothing to say for that frame
            return
        if self.stopping_at is None and peer.queued + size > self.output.max_queue:
            self._overflow(fd, peer)
            return
        peer.out.append(data)
        peer.queued += size
        self.buffered += size + QUEUE_ENTRY_COST

    def _start_closing(self, fd: int, peer: Peer) -> None:
        """The room closed it: flush, then shut down; read again (a deferred frame never counts)."""
        if peer.state is not PeerState.OPEN:
            return
        peer.state = PeerState.CLOSING
        peer.paused = False
        self.dirty[fd] = peer
        self._update_interest(fd, peer)

    def _overflow(self, fd: int, peer: Peer) -> None:
        """Past its bound: out of `peers` at once (nothing more is queued for it), what is
        queued is freed now, and it is dropped as soon as the effects being applied are done."""
        del self.peers[fd]
        self._release_output(peer)
        self.overflowed[fd] = peer

    def _release_output(self, peer: Peer) -> None:
        self.buffered -= peer.queued + QUEUE_ENTRY_COST * len(peer.out)
        peer.out.clear()
        peer.offset = peer.queued = 0

    def _drop_overflowed(self) -> None:
        while self.overflowed:
            fd, peer = self.overflowed.popitem()
            self._apply(self.room.disconnect(fd, _("was too slow to read (over {limit} bytes queued)").format(
                limit=self.output.max_queue)))
            self._close(fd, peer)

    def _enforce_budget(self) -> None:
        """All queues together are over max_buffered: drop the slowest readers (the longest
        queues) first, until the rest fits."""
        if self._enforcing_budget:
            return
        self._enforcing_budget = True
        try:
            slowest = sorted(self.peers.items(), key=lambda item: item[1].queued, reverse=True)
            for fd, peer in slowest:
                if self.buffered <= self.output.max_buffered or not peer.queued:
                    break
                if self.peers.get(fd) is peer:
                    self._release_output(peer)
                    self._gone(fd, peer, _("was dropped: the server's output for all members passed "
                                           "{limit} bytes and this member had the most unread").format(
                                           limit=self.output.max_buffered))
        finally:
            self._enforcing_budget = False

    # ----- writing -----------------------------------------------------------------------

    def _flush_dirty(self) -> None:
        """One send per connection per wake-up. After a broadcast, every reader that is not
        waiting for POLLOUT is tried; one whose kernel buffer is full waits for POLLOUT."""
        closing = PeerState.CLOSING
        while self.broadcast_pending or self.dirty:
            if self.broadcast_pending:
                self.broadcast_pending = False
                self.dirty.clear()
                for fd, peer in list(self.peers.items()):
                    if (peer.state is closing or (peer.out and not peer.writing)) and self.peers.get(fd) is peer:
                        self._flush(fd, peer)
                continue
            fd, peer = self.dirty.popitem()
            if self.peers.get(fd) is peer and (peer.state is closing or not peer.writing):
                self._flush(fd, peer)

    def _flush(self, fd: int, peer: Peer) -> None:
        if peer.out:
            try:
                sent = self._send_some(peer)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._gone(fd, peer, _("lost the connection"))
                return
            self._consume(peer, sent)
        self._want_write(fd, peer, bool(peer.out))
        if not peer.out and peer.state is PeerState.CLOSING:
            self._start_drain(fd, peer)

    def _send_some(self, peer: Peer) -> int:
        """One system call: send() for one buffer (the common case), else sendmsg() over the
        first IOV_BATCH buffers. Neither copies the queue."""
        out, offset = peer.out, peer.offset
        if len(out) == 1:
            head = out[0]
            return peer.sock.send(memoryview(head)[offset:] if offset else head)
        buffers = list(itertools.islice(out, IOV_BATCH))
        if offset:
            buffers[0] = memoryview(buffers[0])[offset:]
        return peer.sock.sendmsg(buffers)

    def _consume(self, peer: Peer, sent: int) -> None:
        """Forget the `sent` bytes: whole buffers leave the queue, a partial one moves the offset."""
        peer.queued -= sent
        self.buffered -= sent
        out, offset = peer.out, peer.offset + sent
        while out and offset >= len(out[0]):
            offset -= len(out.popleft())
            self.buffered -= QUEUE_ENTRY_COST
        peer.offset = offset

    def _want_write(self, fd: int, peer: Peer, wanted: bool) -> None:
        if peer.writing != wanted:
            peer.writing = wanted
            self._update_interest(fd, peer)

    def _update_interest(self, fd: int, peer: Peer) -> None:
        """Read unless a deferred frame waits; write while the kernel buffer is full."""
        self.backend.modify(fd, peer.writing, read=not peer.paused)

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
        peer.state = PeerState.DRAINING
        self.drain_deadlines[fd] = self.clock() + LINGER_SECONDS

    def _expire_drains(self, now: float) -> None:
        while self.drain_deadlines:
            fd, deadline = next(iter(self.drain_deadlines.items()))
            if deadline > now:
                return
            self._drop(self.peers[fd])

    def _drop(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        if self.peers.get(fd) is not peer:
            return
        del self.peers[fd]
        self._close(fd, peer)

    def _close(self, fd: int, peer: Peer) -> None:
        """Forget everything about a peer that is out of `peers`, and close its socket."""
        self._release_output(peer)
        self.dirty.pop(fd, None)
        self.drain_deadlines.pop(fd, None)
        try:
            self.backend.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        peer.sock.close()
        self.connection_closed(fd)

    def connection_closed(self, fd: int) -> None:
        """Hook: a watched connection was closed (the fork engine reaps its relay)."""

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


def tune_member_socket(sock: socket.socket) -> None:
    """Options for a TCP member: keepalive, no Nagle delay, a bounded kernel send buffer.

    Chat frames are small and already coalesced into one send per wake-up, so Nagle's
    algorithm only adds a delayed-ACK wait (about 40 ms) to a PONG behind a MESSAGE."""
    set_keepalive(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MEMBER_SNDBUF)


def set_keepalive(sock: socket.socket) -> None:
    """Drop a member whose machine vanished: probe an idle connection after 60 s, every 10 s,
    3 times; and give up on unacknowledged data after 90 s (keepalive does nothing then)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in KEEPALIVE.items():
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)


def plain_log(stream=None) -> LogFn:  # noqa: ANN001
    """A log line per event; peer-supplied text is made printable first.

    `stream` should be a lessons.toolkit.logsink.LogSink: a plain sys.stdout blocks the whole
    server as soon as nobody reads it."""
    out = stream or sys.stdout

    def log(event: str, text: str) -> None:
        out.write(f"{time.strftime('%H:%M:%S')} {event:>6}  {printable(text)}\n")
        out.flush()

    return log


def rich_log(stream=None) -> LogFn:  # noqa: ANN001
    """Coloured log lines for a terminal, written to `stream` (a LogSink) by rich."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=stream, highlight=False, soft_wrap=True)
    styles = {"join": "green", "leave": "yellow", "drop": "red", "admin": "bold magenta", "stop": "bold"}

    stopping = False

    def log(event: str, text: str) -> None:
        nonlocal stopping
        if event == "stop" and not stopping:  # Ctrl-C was echoed as "^C": start on a fresh line
            stopping = True
            console.file.write("\n")
        style = styles.get(event, "")
        tag = f"[{style}]{event:>6}[/]" if style else f"{event:>6}"
        console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {tag}  {escape(printable(text))}")

    return log
