"""What the four echo servers share, so that each lesson module keeps only its multiplexer.

poll_server, epoll_server, select_server and selectors_server differ in one thing: the
call that waits until a socket is ready. Everything else lives here, once: the options,
the answer ("收到了: " + what arrived), accepting a client (and resting at EMFILE),
reading and answering it (and keeping what did not fit for POLLOUT), the narrated log
(through a LogSink, so it never blocks) and its --trace lines, Ctrl-C and SIGTERM, and
the closing summary. The client's half of the protocol is here too (`read_answer`), for
tcp-client and the --demo clients.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Callable, Protocol, TextIO

import typer

from lessons.toolkit.common import DEFAULT_PORT, address_text, open_listener, os_error_text, printable_bytes
from lessons.toolkit.i18n import _, ngettext
from lessons.toolkit.logsink import LogSink, RepeatCounter
from lessons.toolkit.narrate import Narrator

REPLY_PREFIX = "收到了: ".encode()  # "received:", the notes' answer, then the bytes that arrived
RECV_SIZE = 1024  # the notes' recv(1024): a longer message takes several reads
TICK_SECONDS = 0.2  # how often a server loop looks at its stop flag
PREVIEW_CHARS = 60  # longer text is shortened in the log
ACCEPT_PAUSE = 0.5  # seconds the listener is not watched after accept() ran out of descriptors
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

HostOption = Annotated[str, typer.Option(help=_("Address to listen on; 0.0.0.0 means every interface."))]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help=_("Port to listen on; 0 picks a free one."))]
DemoOption = Annotated[
    bool, typer.Option("--demo", help=_("Run the server with three scripted clients, narrated, then exit."))
]
TraceOption = Annotated[
    bool, typer.Option("--trace", help=_("Also print every readiness event as the kernel reported it."))
]


class StopFlag(threading.Event):
    """The loop's stop flag, checked every TICK_SECONDS; it remembers who raised it first."""

    reason = ""

    def stop(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
        self.set()


class ClientGone(Exception):
    """This client closed, reset or stopped reading: drop it, and only it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Stats:
    accepted: int = 0
    refused: int = 0  # accepted, then closed at once (the select server's fd limit)
    closed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


class OutOfDescriptors(Exception):
    """accept() failed with EMFILE (or ENFILE...): the client stays queued in the kernel."""


ServeLoop = Callable[[socket.socket, "EchoLog", StopFlag], None]


class RunningDemo(Protocol):
    """What run_server needs of the demo's clients once they have started."""

    def join(self) -> None: ...

    def raise_failure(self) -> None: ...


StartDemo = Callable[[tuple, "EchoLog", StopFlag], RunningDemo]


def preview(data: bytes) -> str:
    """Untrusted bytes as safe, short text for the log."""
    text = printable_bytes(data)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "..."


class EchoLog:
    """The server's narrated log and counters; it remembers who is behind each descriptor."""

    def __init__(self, narrate: Narrator, call: str, trace: bool) -> None:
        self.narrate = narrate
        self.call = call  # "poll", "epoll", "select", "EpollSelector.select"
        self.trace = trace
        self.stats = Stats()
        self.listener_fd = -1
        self.peers: dict[int, str] = {}
        self.accept_failures: dict[str, RepeatCounter] = {}  # one counter per reason
        self.serving = threading.Event()  # the listener is watched: the demo's clients may come

    def who(self, fd: int) -> str:
        return f"{self.peers.get(fd, 'client')} (fd {fd})"

    def _fd_note(self, fd: int) -> str:
        return _(" (the listening socket)") if fd == self.listener_fd else ""

    def registered(self, fd: int, mask: str) -> None:
        """--trace: `register fd 5 POLLIN`; the same for modify (a new mask) and unregister."""
        self.detail("trace", _("register fd {fd} {mask}{fd_note}").format(fd=fd, mask=mask, fd_note=self._fd_note(fd)))
        if fd == self.listener_fd:
            self.serving.set()

    def modified(self, fd: int, mask: str) -> None:
        self.detail("trace", _("modify fd {fd} {mask}{fd_note}").format(fd=fd, mask=mask, fd_note=self._fd_note(fd)))

    def unregistered(self, fd: int) -> None:
        self.detail("trace", _("unregister fd {fd}{fd_note}").format(fd=fd, fd_note=self._fd_note(fd)))

    def returned(self, events: list, describe: Callable[[int], str]) -> None:
        """--trace: the whole list one call returned, `poll() -> [(5, POLLIN), (7, POLLIN|POLLHUP)]`."""
        if self.trace and events:
            pairs = ", ".join(f"({fd}, {describe(mask)})" for fd, mask in events)
            waiting = _("  fd {fd}: a client is waiting to be accepted").format(fd=self.listener_fd) \
                if any(fd == self.listener_fd for fd, _mask in events) else ""
            self.narrate("trace", f"{self.call}() -> [{pairs}]{waiting}")

    def accept_failed(self, reason: str) -> None:
        """A flood of failed accepts (EMFILE) becomes one line a second with a count."""
        counter = self.accept_failures.setdefault(reason, RepeatCounter())
        self._report_accept_failures(reason, counter.count(time.monotonic()))

    def report_repeats(self) -> None:
        """Say how many failures were summed up since the last line; called once per round."""
        now = time.monotonic()
        for reason, counter in self.accept_failures.items():
            self._report_accept_failures(reason, counter.due(now))

    def _report_accept_failures(self, reason: str, count: int) -> None:
        if count:
            self.narrate("error", ngettext("accept() failed: {reason}", "accept() failed {count:,} times: {reason}",
                                           count).format(count=count, reason=reason))

    def detail(self, tag: str, text: str) -> None:
        """A line only --trace shows."""
        if self.trace:
            self.narrate(tag, text)

    def accepted(self, fd: int, address: object) -> None:
        self.stats.accepted += 1
        self.peers[fd] = address_text(address)
        self.narrate("accept", _("{who} connected").format(who=self.who(fd)))

    def received(self, fd: int, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        self.narrate("recv", _("{who} sent {size} bytes: '{data}'").format(who=self.who(fd), size=len(data), data=preview(data)))

    def sending(self, fd: int, size: int) -> None:
        """Printed before send(), so the line comes before the client's reaction to it."""
        self.detail("send", _("fd {fd}: {size} bytes").format(fd=fd, size=size))

    def sent(self, size: int) -> None:
        self.stats.bytes_out += size

    def closed(self, fd: int, why: str) -> None:
        self.stats.closed += 1
        self.narrate("close", f"{self.who(fd)}: {why}")
        self.peers.pop(fd, None)

    def refused(self, fd: int, why: str) -> None:
        self.stats.refused += 1
        self.narrate("error", _("{who} refused: {why}").format(who=self.who(fd), why=why))
        self.peers.pop(fd, None)

    def summary(self, why: str) -> None:
        s = self.stats
        served = s.accepted - s.refused
        clients = ngettext("{count} client", "{count} clients", served).format(count=served)
        refused = _(", refused {count}").format(count=s.refused) if s.refused else ""
        still = _(", {count} still connected at the end").format(count=len(self.peers)) if self.peers else ""
        self.narrate("summary", _("stopped ({why}): served {clients}, {bytes_in} bytes in, "
                                  "{bytes_out} bytes out{refused}{still}.").format(
            why=why, clients=clients, bytes_in=s.bytes_in, bytes_out=s.bytes_out, refused=refused, still=still))


def accept_client(server: socket.socket, log: EchoLog) -> socket.socket | None:
    """Accept one waiting client as a non-blocking socket; None if nobody was waiting after all."""
    try:
        conn, address = server.accept()
    except BlockingIOError:
        return None  # the queue is empty: readiness is a hint, not a promise
    except OSError as err:  # the client gave up already, or we are out of descriptors
        if err.errno in OUT_OF_DESCRIPTORS:
            log.accept_failed(_("{error}; waiting clients stay queued until a client leaves").format(
                error=os_error_text(err)))
            raise OutOfDescriptors() from None
        log.accept_failed(_("{error}; the server carries on").format(error=os_error_text(err)))
        return None
    conn.setblocking(False)  # a wrong readiness hint must cost an EAGAIN, never a frozen server
    log.accepted(conn.fileno(), address)
    return conn


class AcceptPause:
    """Out of descriptors, the listener stays readable while every accept() fails: a loop
    that keeps watching it spins at 100% CPU. So the server stops watching it until a
    client leaves (a descriptor is free again) or ACCEPT_PAUSE has passed.
    An edge-triggered listener needs this too: its one edge came while accept() failed,
    and registering it again is what makes epoll look at its queue once more.
    """

    def __init__(self, log: EchoLog) -> None:
        self.log = log
        self.resume_at: float | None = None

    @property
    def paused(self) -> bool:
        return self.resume_at is not None

    def pause(self) -> None:
        self.resume_at = time.monotonic() + ACCEPT_PAUSE

    def descriptor_freed(self) -> None:
        if self.resume_at is not None:
            self.resume_at = 0.0  # a client left: try again at the next round

    def time_to_resume(self) -> bool:
        """Called once per round: True when the listener should be watched again."""
        self.log.report_repeats()
        if self.resume_at is not None and time.monotonic() >= self.resume_at:
            self.resume_at = None
            return True
        return False


class Outbox:
    """The part of an answer a client could not take yet, by descriptor.

    When a client does not read, its receive buffer and our send buffer fill up and
    send() takes only part of an answer (or nothing). Instead of waiting in sendall()
    (which would freeze every client) the server keeps the rest here, stops reading from
    that client, and asks the kernel to say when it can write again (POLLOUT, EPOLLOUT,
    select's write list, EVENT_WRITE). So at most one answer per client waits here.
    """

    def __init__(self, log: EchoLog) -> None:
        self.log = log
        self.waiting: dict[int, bytes] = {}

    def holds(self, fd: int) -> bool:
        return fd in self.waiting

    def send(self, conn: socket.socket, data: bytes) -> None:
        """Send what the kernel takes now; keep the rest. Raises ClientGone if the connection broke."""
        fd = conn.fileno()
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as err:
            raise ClientGone(_("connection lost while answering: {reason}").format(reason=os_error_text(err))) from None
        self.log.sent(sent)
        if sent < len(data):
            if fd not in self.waiting:
                self.log.detail("send", _("fd {fd}: only {sent} of {size} bytes fit; the rest waits until "
                                          "the client reads").format(fd=fd, sent=sent, size=len(data)))
            self.waiting[fd] = data[sent:]
        else:
            self.waiting.pop(fd, None)

    def send_rest(self, conn: socket.socket) -> bool:
        """The client can take more: send what waits. True once nothing is left."""
        self.send(conn, self.waiting[conn.fileno()])
        return not self.holds(conn.fileno())

    def forget(self, fd: int) -> None:
        self.waiting.pop(fd, None)


def echo_once(conn: socket.socket, log: EchoLog, outbox: Outbox) -> bool:
    """Read what one client sent (up to RECV_SIZE bytes) and answer "收到了: " + those bytes.

    Returns True if it answered in full; False if there was nothing to read after all
    (EAGAIN) or the answer did not fit and waits in `outbox` (then stop reading this
    client and wait until it can be written to). Raises ClientGone when the client closed
    or reset.
    """
    fd = conn.fileno()
    try:
        data = conn.recv(RECV_SIZE)
    except BlockingIOError:
        log.detail("recv", _("fd {fd}: nothing more to read (EAGAIN)").format(fd=fd))
        return False
    except OSError as err:  # ConnectionResetError above all
        raise ClientGone(_("connection lost: {reason}").format(reason=os_error_text(err))) from None
    if not data:
        raise ClientGone(_("it closed its side (recv returned b'')"))
    log.received(fd, data)
    answer = REPLY_PREFIX + data
    log.sending(fd, len(answer))
    outbox.send(conn, answer)  # never blocks: what does not fit waits in the outbox
    return not outbox.holds(fd)


def loopback_if_wildcard(address: tuple) -> tuple:
    """A client cannot connect to 0.0.0.0 ("every address"); it must name one."""
    host, port = address[0], address[1]
    if host == "0.0.0.0":
        return ("127.0.0.1", port)
    if host == "::":
        return ("::1", port)
    return (host, port)


def stop_on_signals(stop: StopFlag) -> Callable[[], None]:
    """Ctrl-C and SIGTERM raise the stop flag, so the loop ends its round and closes every socket.

    A second one acts at once. Returns the function that restores the old handlers.
    The handler only sets a flag: printing from a signal handler could deadlock the log.
    """
    names = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}

    def on_signal(signum: int, frame: object) -> None:
        stop.stop(names[signum])
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals are delivered to the main thread only
    previous = {signum: signal.signal(signum, on_signal) for signum in names}
    return lambda: [signal.signal(signum, handler) for signum, handler in previous.items()]


OUTPUT_CLOSED = _("its output was closed")


def log_output(stop: StopFlag) -> TextIO | LogSink:
    """stdout behind a LogSink: a pipe nobody reads never blocks the loop, a closed one stops it.

    `| head -1` closes the pipe after one line; the sink sees EPIPE and raises the stop
    flag, so the server (and its demo) ends at once, quietly. Where stdout is no real
    file (a test capturing it in-process) it is used as it is.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout
    sys.stdout.flush()
    return LogSink(fd, on_closed=lambda: stop.stop(OUTPUT_CLOSED))


def run_server(call: str, serve: ServeLoop, host: str, port: int, trace: bool,
               demo: StartDemo | None = None, mode: str = "") -> None:
    """Listen, run `serve` until Ctrl-C, SIGTERM or the end of the demo, then print the summary.

    `demo` starts scripted clients (lessons/echo_demo.py; the lesson picks the story);
    `mode` is one line printed under `listening on` (epoll's --edge says what it does).
    """
    if demo and port == DEFAULT_PORT:
        port = 0  # the demo brings its own clients: a free port means it never collides with 8888
    server = open_listener(host, port)
    server.setblocking(False)
    stop = StopFlag()
    output = log_output(stop)
    narrate = Narrator(output)
    log = EchoLog(narrate, call, trace)
    log.listener_fd = server.fileno()
    restore_signals = stop_on_signals(stop)
    output.write(f"listening on {address_text(server.getsockname())}\n")
    if mode:
        output.write(mode + "\n")
    address = loopback_if_wildcard(server.getsockname())
    demo_run = demo(address, log, stop) if demo else None
    try:
        serve(server, log, stop)
    finally:
        server.close()
        restore_signals()
    if demo_run is not None:
        demo_run.join()
    if stop.reason == "Ctrl-C" and output.isatty():
        output.write("\n")  # the terminal echoed ^C: start the summary on a line of its own
    log.summary(stop.reason or "stopped")
    if isinstance(output, LogSink):
        output.wait_written(2.0)  # the writer thread dies with the process: let it finish
    if demo_run is not None and stop.reason != OUTPUT_CLOSED:
        demo_run.raise_failure()


@dataclass
class Answer:
    data: bytes  # everything the server sent back, prefixes included
    complete: bool  # all our bytes came back
    closed: bool  # the server closed the connection


def echoed(received: bytes) -> bytes:
    """Our own bytes as the server sent them back: its answers without their prefixes."""
    return received.replace(REPLY_PREFIX, b"")


def read_answer(sock: socket.socket, sent: bytes, timeout: float) -> Answer:
    """Read answers until every byte we sent has come back, the server closes, or time runs out.

    TCP keeps no message boundaries: the server may read one message in several pieces
    and answer each piece, so one recv() here is not one answer. (A message that itself
    contains "收到了: " cannot be told apart from the answers and ends in a timeout.)
    """
    deadline = time.monotonic() + timeout
    received = b""
    while echoed(received) != sent:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Answer(received, complete=False, closed=False)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return Answer(received, complete=False, closed=False)
        except OSError:
            return Answer(received, complete=False, closed=True)
        if not chunk:
            return Answer(received, complete=False, closed=True)
        received += chunk
    return Answer(received, complete=True, closed=False)
