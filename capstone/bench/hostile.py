"""`learn bench hostile`: what hostile clients do to a chat server, seen by one healthy member.

The findings of the hardening issue, rebuilt as one run against one server:

- N stuck readers: members who JOIN and never read a byte. Each has a small receive
  buffer (SO_RCVBUF), so the server's own queue for it fills quickly, and a name of 32
  emoji, so that one MEMBERS reply (the answer to WHO) is over 100 KB at 1,000 of them;
- a WHO flood: one member writes W WHO frames in 64 KiB writes and never reads;
- talkers: members who SAY 4 KB twenty times a second (and read what they are sent);
- one healthy member who PINGs every 20 ms and times each PONG.

What is measured: the healthy member's PING round trip, the server's peak memory, how
many stuck readers the server dropped, and whether it is alive and answering at the end.

Every connection is driven from one selector loop in this process; the stuck readers are
not even registered, since they never read. The healthy member joins first, so the
JOINED and LEFT frames it reads say who got in and who was dropped: no other client has
to read for that. A thread samples the server's memory from /proc.
"""

from __future__ import annotations

import os
import random
import selectors
import socket
import struct
import threading
import time
import unicodedata
from array import array
from dataclasses import asdict, dataclass, field
from typing import Callable

from capstone.bench.stats import latency_summary
from capstone.bench.wire import JOIN_WINDOW, RECV_SIZE, connect_and_join
from capstone.codec import ErrorCode, Kind, encode, new_decoder
from lessons.toolkit.common import RunFailure
from lessons.toolkit.i18n import _

# What the issue asks of a hardened server at its scale (1,000 stuck readers, 13,000 WHO).
ISSUE_STUCK, ISSUE_WHO = 1000, 13_000
TARGET_PEAK_RSS_MIB = 256
TARGET_PING_P99_MS = 100.0

STUCK_RCVBUF = 4096  # the kernel doubles it; a few KiB of window, so the server queues the rest
NAME_LENGTH = 32  # emoji per stuck reader's name: the longest name the protocol allows
TALK_RATE = 20.0  # SAYs per second per talker: the server's default rate limit, never refused
TALK_SIZE = 4000  # bytes of text per SAY (the payload limit is 4096)
FLOOD_WRITE = 64 * 1024  # bytes per write of the WHO flood
MAX_TALKER_BACKLOG = 1 << 20  # a talker the server stopped reading stops piling up bytes here
LATE_PONG_GRACE = 5.0  # seconds to wait for PONGs still owed when the run ends
ANSWER_TIMEOUT = 5.0  # seconds a new connection waits for its PONG at the end
SAMPLE_EVERY = 0.05  # seconds between samples of the server's RSS
CHILDREN_EVERY = 1.0  # seconds between sums of the fork engine's children (a walk of /proc)
FD_MARGIN = 64  # descriptors beyond the connections: listeners, pipes, logs, the final check
PING_STAMP = struct.Struct("!QQ")  # sequence number, send time (monotonic ns)
HEALTHY, FLOODER = b"healthy", b"who-flooder"
WHO_FRAME = encode(Kind.WHO)


def emoji_alphabet() -> list[str]:
    """Pictographs and emoticons (U+1F300..U+1F64F) that stay themselves under NFKC."""
    return [chr(code) for code in range(0x1F300, 0x1F650)
            if unicodedata.category(chr(code)).startswith("S")
            and unicodedata.normalize("NFKC", chr(code)) == chr(code)]


def emoji_names(count: int, seed: int = 9) -> list[bytes]:
    """`count` distinct names of NAME_LENGTH random emoji each, UTF-8 (4 bytes per emoji)."""
    alphabet = emoji_alphabet()
    chooser = random.Random(seed)  # the same names every run: runs compare
    names: dict[bytes, None] = {}
    while len(names) < count:
        names["".join(chooser.choices(alphabet, k=NAME_LENGTH)).encode()] = None
    return list(names)


@dataclass(frozen=True)
class HostileLoad:
    """The options of `learn bench hostile`."""

    stuck: int = ISSUE_STUCK
    who: int = ISSUE_WHO
    talkers: int = 1
    duration: float = 20.0
    engine: str = "epoll"
    ping_interval_ms: float = 20.0
    max_queue: int | None = None  # passed to the server only when given
    max_buffered: int | None = None  # likewise: older servers do not know this option
    server_memory_mib: int = 2048  # RLIMIT_AS of the server; 0 = none
    timeout: float = 60.0  # seconds for everyone to join

    def server_options(self) -> tuple[str, ...]:
        """The server's own defaults (its limits are what is tested), plus what was given."""
        options: list[str] = []
        if self.max_queue is not None:
            options += ["--max-queue", str(self.max_queue)]
        if self.max_buffered is not None:
            options += ["--max-buffered", str(self.max_buffered)]
        return tuple(options)

    @property
    def connections(self) -> int:
        return self.stuck + self.talkers + 2  # and the healthy member and the flooder


@dataclass
class HostileReport:
    target: str
    stuck: int
    who: int
    talkers: int
    duration: float
    server_options: list[str]
    server_memory_limit_mib: int
    fd_limit: int
    join_seconds: float
    stuck_joined: int
    ping_ms: dict[str, float]  # the healthy member's round trips; unanswered PINGs at their wait so far
    pings_sent: int
    pongs: int
    pings_refused: int  # answered with ERROR RATE_LIMITED
    pings_unanswered: int
    peak_rss_kib: int
    kernel_tcp_rise_kib: int  # peak rise of the machine's TCP buffer memory (/proc/net/sockstat)
    stuck_dropped: int
    flooder_dropped: bool
    who_written: int  # WHO frames the kernel took from the flooder
    talkers_dropped: int
    healthy_dropped_after: float | None  # seconds into the hostile phase; None: never dropped
    server_alive: bool  # still running when the run ended (before our SIGTERM)
    server_answering: bool
    server_exit_code: int | None  # on its own death, or on our SIGTERM (the contract: 0)
    server_last_error: str  # the last line of its stderr
    targets: dict[str, float] = field(default_factory=lambda: {
        "peak_rss_mib": TARGET_PEAK_RSS_MIB, "ping_p99_ms": TARGET_PING_P99_MS})
    notes: list[str] = field(default_factory=list)

    @property
    def peak_rss_met(self) -> bool:
        """Under the target, measured on a server that lived to the end."""
        return self.server_alive and self.peak_rss_kib < TARGET_PEAK_RSS_MIB * 1024

    @property
    def ping_met(self) -> bool:
        """p99 under the target, and the healthy member was answered and never dropped."""
        return (self.pongs > 0 and self.healthy_dropped_after is None and not self.pings_unanswered
                and self.ping_ms["p99"] < TARGET_PING_P99_MS)

    @property
    def at_issue_scale(self) -> bool:
        return self.stuck >= ISSUE_STUCK and self.who >= ISSUE_WHO

    def as_json(self) -> dict:
        return {"benchmark": "hostile", **asdict(self),
                "met": {"peak_rss": self.peak_rss_met, "ping_p99": self.ping_met}}


# -- the clients -------------------------------------------------------------------------
class Client:
    """One connection the loop drives: what it still has to write, whether it reads."""

    def __init__(self, sock: socket.socket, name: bytes, reads: bool) -> None:
        self.sock = sock
        self.name = name
        self.reads = reads
        self.outbox = bytearray()
        self.closed = False
        self.watched = 0  # the selector events it is registered for (0: not registered)

    def wanted(self) -> int:
        if self.closed:
            return 0
        return (selectors.EVENT_READ if self.reads else 0) | (selectors.EVENT_WRITE if self.outbox else 0)

    def on_data(self, data: bytes) -> None:
        """A talker reads and forgets (it is a member who keeps up, nothing more)."""


class Healthy(Client):
    """The member whose experience is measured: it reads everything and times its PINGs."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, HEALTHY, reads=True)
        self.decoder = new_decoder(max_payload=1 << 24)  # server frames may exceed 4096
        self.welcomed = False
        self.joined: set[bytes] = set()
        self.left: set[bytes] = set()
        self.next_seq = 0
        self.owed: dict[int, int] = {}  # PING sequence -> send time (ns), PONG not yet here
        self.round_trips = array("q")  # ns
        self.refused = 0
        self.errors: list[str] = []

    def ping_frame(self) -> bytes:
        now = time.monotonic_ns()
        self.owed[self.next_seq] = now
        self.next_seq += 1
        return encode(Kind.PING, PING_STAMP.pack(self.next_seq - 1, now))

    def on_data(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.decoder.feed(data)
        for (kind,), payload in self.decoder:
            if kind == Kind.PONG and len(payload) == PING_STAMP.size:
                seq, sent = PING_STAMP.unpack(payload)
                if self.owed.pop(seq, None) is not None:
                    self.round_trips.append(now - sent)
            elif kind == Kind.JOINED:
                self.joined.add(payload)
            elif kind == Kind.LEFT:
                self.left.add(payload)
            elif kind == Kind.WELCOME:
                self.welcomed = True
            elif kind == Kind.ERROR:
                self.on_error(payload)

    def on_error(self, payload: bytes) -> None:
        """A refused PING is answered in its place in the order: it settles the oldest owed."""
        if payload[:1] == bytes([ErrorCode.RATE_LIMITED]) and self.owed:
            del self.owed[min(self.owed)]
            self.refused += 1
        elif len(self.errors) < 5:
            self.errors.append(payload[1:].decode(errors="replace"))

    def waits_ns(self, now: int) -> array:
        """Every answered round trip, and each PING still owed at how long it has waited."""
        return self.round_trips + array("q", (now - sent for sent in self.owed.values()))


class Scenario:
    """The connections of one run and the one selector loop that drives them."""

    def __init__(self, load: HostileLoad, address: tuple[str, int], server_gone: Callable[[], bool]) -> None:
        self.load = load
        self.address = address
        self.server_gone = server_gone
        self.selector = selectors.DefaultSelector()
        self.stuck_names = emoji_names(load.stuck)
        self.stuck: list[socket.socket] = []
        self.talkers: list[Client] = []
        self.flooder: Client | None = None
        self.healthy = Healthy(self.join(HEALTHY))
        self.watch(self.healthy)
        self.who_written = 0
        self.hostile_since = 0.0  # monotonic time the hostile phase began
        self.healthy_dropped_after: float | None = None

    # -- the loop ----------------------------------------------------------------------
    def join(self, name: bytes, rcvbuf: int = 0) -> socket.socket:
        try:
            return connect_and_join(self.address, name, rcvbuf)
        except OSError as err:
            raise RunFailure(_("could not connect to the server: {reason}.").format(reason=err.strerror or err)) from None

    def watch(self, client: Client) -> None:
        """Keep the selector's registration in step with what the client wants now."""
        wanted = client.wanted()
        if wanted == client.watched:
            return
        if not client.watched:
            self.selector.register(client.sock, wanted, client)
        elif not wanted:
            self.selector.unregister(client.sock)
        else:
            self.selector.modify(client.sock, wanted, client)
        client.watched = wanted

    def pump(self, timeout: float) -> None:
        """One wait for readiness, and the reads and writes it allows."""
        for key, mask in self.selector.select(max(timeout, 0.0)):
            client: Client = key.data
            if mask & selectors.EVENT_READ:
                self.read(client)
            if mask & selectors.EVENT_WRITE and not client.closed:
                self.write(client)

    def read(self, client: Client) -> None:
        try:
            data = client.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            client.on_data(data)
        else:
            self.lose(client)

    def write(self, client: Client, more: bytes = b"") -> None:
        """Queue `more`, then write as much as the socket takes, FLOOD_WRITE bytes at a time."""
        client.outbox += more
        sent_total = 0
        try:
            while client.outbox:
                sent = client.sock.send(client.outbox[:FLOOD_WRITE])  # a copy: the outbox may shrink
                del client.outbox[:sent]
                sent_total += sent
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.lose(client)
        if client is self.flooder:
            self.who_written += sent_total // len(WHO_FRAME)
        self.watch(client)

    def lose(self, client: Client) -> None:
        """The server closed this connection (or reset it): stop driving it."""
        client.closed = True
        client.outbox.clear()
        self.watch(client)
        if client is self.healthy and self.hostile_since:
            self.healthy_dropped_after = time.monotonic() - self.hostile_since

    # -- the phases --------------------------------------------------------------------
    def welcome_healthy(self, deadline: float) -> None:
        while not self.healthy.welcomed:
            if self.healthy.closed or self.server_gone() or time.monotonic() > deadline:
                raise RunFailure(_("the healthy member was not welcomed by the server."))
            self.pump(0.1)

    def join_everyone(self, deadline: float, on_joined: Callable[[int], None]) -> float:
        """Stuck readers, then talkers and the flooder: JOIN with at most JOIN_WINDOW
        unconfirmed (the healthy member confirms each by its JOINED). Returns the seconds."""
        started = time.monotonic()
        self.join_stuck(deadline, on_joined)
        for number in range(self.load.talkers):
            self.talkers.append(Client(self.join(b"talker%d" % number), b"talker%d" % number, reads=True))
            self.watch(self.talkers[-1])
        self.flooder = Client(self.join(FLOODER, STUCK_RCVBUF), FLOODER, reads=False)
        others = [talker.name for talker in self.talkers] + [FLOODER]
        while not all(name in self.healthy.joined for name in others) and time.monotonic() < deadline:
            self.pump(0.1)
        return time.monotonic() - started

    def join_stuck(self, deadline: float, on_joined: Callable[[int], None]) -> None:
        joined = self.healthy.joined  # only stuck readers join in this phase
        names = self.stuck_names
        waiting = iter(names)
        while len(joined) < len(names):
            if self.server_gone() or self.healthy.closed or time.monotonic() > deadline:
                return  # the report says how many got in
            while len(self.stuck) < len(names) and len(self.stuck) - len(joined) < JOIN_WINDOW:
                self.stuck.append(self.join(next(waiting), STUCK_RCVBUF))
            self.pump(0.1)
            on_joined(len(joined))

    def stuck_joined(self) -> int:
        return sum(1 for name in self.stuck_names if name in self.healthy.joined)

    def hostile(self, duration: float) -> None:
        """The flood goes out at once; PINGs and SAYs on their schedules until `duration` ends."""
        assert self.flooder is not None
        self.write(self.flooder, WHO_FRAME * self.load.who)
        ping_every, talk_every = self.load.ping_interval_ms / 1000, 1 / TALK_RATE
        now = self.hostile_since = time.monotonic()
        end, next_ping, next_talk = now + duration, now, now
        text = b"x" * TALK_SIZE
        while now < end and not self.healthy.closed and not self.server_gone():
            if now >= next_ping:
                self.write(self.healthy, self.healthy.ping_frame())
                next_ping = max(next_ping + ping_every, now)  # late: no burst to catch up
            if now >= next_talk:
                for talker in self.talkers:
                    if not talker.closed and len(talker.outbox) < MAX_TALKER_BACKLOG:
                        self.write(talker, encode(Kind.SAY, text))
                next_talk = max(next_talk + talk_every, now)
            self.pump(min(next_ping, next_talk, end) - time.monotonic())
            now = time.monotonic()

    def wait_for_late_pongs(self) -> None:
        deadline = time.monotonic() + LATE_PONG_GRACE
        while self.healthy.owed and not self.healthy.closed and time.monotonic() < deadline:
            if self.server_gone():
                return
            self.pump(0.05)

    def left(self, name: bytes) -> bool:
        return name in self.healthy.left

    def close(self) -> None:
        for client in [self.healthy, *self.talkers, *([self.flooder] if self.flooder else [])]:
            client.sock.close()
        for sock in self.stuck:
            sock.close()
        self.selector.close()


def answers_ping(address: tuple[str, int]) -> bool:
    """Does a new connection get its PONG within ANSWER_TIMEOUT? (No JOIN needed for PING.)"""
    deadline = time.monotonic() + ANSWER_TIMEOUT
    decoder = new_decoder(max_payload=1 << 24)
    try:
        with socket.create_connection(address, timeout=ANSWER_TIMEOUT) as sock:
            sock.sendall(encode(Kind.PING, b"still there?"))
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                data = sock.recv(RECV_SIZE)
                if not data:
                    return False
                decoder.feed(data)
                if any(kind == Kind.PONG for (kind,), _payload in decoder):
                    return True
    except OSError:  # refused, reset, timed out
        return False
    return False


def kernel_tcp_kib() -> int:
    """The whole machine's TCP buffer memory now (`mem`, in pages, of /proc/net/sockstat).

    A server's RSS does not show the bytes waiting in its sockets' kernel buffers, and on
    loopback a send buffer grows to megabytes (tcp_wmem): stuck readers cost memory there too.
    """
    try:
        with open("/proc/net/sockstat", encoding="ascii") as sockstat:
            for line in sockstat:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MemorySampler(threading.Thread):
    """The server's peak memory: its RSS every SAMPLE_EVERY s (plus, for the fork engine,
    its children's PSS every CHILDREN_EVERY s); VmHWM, the kernel's own peak, at the end.
    Beside it, the peak rise of the machine's TCP buffer memory."""

    def __init__(self, pid: int, with_children: bool) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.with_children = with_children
        self.children_kib = 0
        self.peak_kib = 0
        self.tcp_before_kib = kernel_tcp_kib()
        self.tcp_peak_kib = self.tcp_before_kib
        self.done = threading.Event()

    def run(self) -> None:
        from capstone.bench.servers import children_of, pss_kib, status_kib

        next_children = 0.0
        while not self.done.wait(SAMPLE_EVERY):
            if self.with_children and time.monotonic() >= next_children:
                self.children_kib = sum(pss_kib(child) for child in children_of(self.pid))
                next_children = time.monotonic() + CHILDREN_EVERY
            own = status_kib(self.pid, "VmRSS")
            if own:
                self.peak_kib = max(self.peak_kib, own + self.children_kib)
            self.tcp_peak_kib = max(self.tcp_peak_kib, kernel_tcp_kib())

    @property
    def tcp_rise_kib(self) -> int:
        return self.tcp_peak_kib - self.tcp_before_kib

    def stop(self) -> int:
        """Stop sampling; the peak in KiB (VmHWM counts when the server is still there)."""
        from capstone.bench.servers import status_kib

        self.done.set()
        if self.is_alive():
            self.join()
        hwm = status_kib(self.pid, "VmHWM")
        return max(self.peak_kib, hwm + self.children_kib if hwm else 0)


# -- one run -----------------------------------------------------------------------------
def run_hostile(load: HostileLoad, on_phase: Callable[[str], None] = lambda text: None) -> HostileReport:
    """Start the server, run the hostile clients against it, stop it; what was measured."""
    from capstone.bench.servers import raise_fd_limit, start_server

    fd_limit = raise_fd_limit(load.connections + FD_MARGIN, "--stuck")
    notes = scale_notes(load)
    on_phase(_("starting the {engine} server").format(engine=load.engine))
    server = start_server(load.engine, load.server_options(), load.server_memory_mib * 1024 * 1024)
    sampler = MemorySampler(server.pid, with_children=load.engine == "fork")
    sampler.start()
    scenario: Scenario | None = None
    try:
        def server_gone() -> bool:
            return server.process.poll() is not None

        address = (server.host, server.port)
        scenario = Scenario(load, address, server_gone)
        deadline = time.monotonic() + load.timeout
        scenario.welcome_healthy(deadline)
        join_seconds = scenario.join_everyone(deadline, lambda count: on_phase(
            _("{count} of {total} stuck readers joined").format(count=count, total=load.stuck)))
        on_phase(_("hostile clients at work for {seconds:g} s").format(seconds=load.duration))
        scenario.hostile(load.duration)
        scenario.wait_for_late_pongs()
        now = time.monotonic_ns()
        on_phase(_("asking the server for a PONG"))
        answering = answers_ping(address)  # first: a server on its way down has time to go
        alive = not server_gone()
        peak_kib = sampler.stop()
    finally:
        sampler.stop()
        if scenario is not None:
            scenario.close()
        server.terminate()
        last_error = server.last_error()
        server.stop()
    return build_report(load, scenario, fd_limit, join_seconds, now, peak_kib, sampler.tcp_rise_kib,
                        alive, answering, server.process.returncode, last_error, notes)


def build_report(load: HostileLoad, scenario: Scenario, fd_limit: int, join_seconds: float, now: int,
                 peak_kib: int, kernel_tcp_rise_kib: int, alive: bool, answering: bool, exit_code: int | None, last_error: str,
                 notes: list[str]) -> HostileReport:
    healthy = scenario.healthy
    stuck_joined = scenario.stuck_joined()
    if stuck_joined < load.stuck:
        notes.append(_("only {joined:,} of {total:,} stuck readers were let in.").format(joined=stuck_joined, total=load.stuck))
    if scenario.healthy_dropped_after is not None:
        notes.append(_("the server dropped the healthy member {seconds:.1f} s into the run: "
                       "who else was dropped after that was not seen.").format(seconds=scenario.healthy_dropped_after))
    if healthy.owed:
        notes.append(_("PINGs never answered count at the time they had waited: the percentiles are a lower bound."))
    if healthy.refused:
        notes.append(_("the server refused some PINGs (RATE_LIMITED): try a larger --ping-interval."))
    notes += [_("the server said: {error}").format(error=error) for error in healthy.errors]
    return HostileReport(
        target=load.engine, stuck=load.stuck, who=load.who, talkers=load.talkers, duration=load.duration,
        server_options=list(load.server_options()), server_memory_limit_mib=load.server_memory_mib,
        fd_limit=fd_limit, join_seconds=round(join_seconds, 3), stuck_joined=stuck_joined,
        ping_ms=latency_summary(healthy.waits_ns(now)), pings_sent=healthy.next_seq,
        pongs=len(healthy.round_trips), pings_refused=healthy.refused, pings_unanswered=len(healthy.owed),
        peak_rss_kib=peak_kib, kernel_tcp_rise_kib=kernel_tcp_rise_kib,
        stuck_dropped=sum(1 for name in scenario.stuck_names if scenario.left(name)),
        flooder_dropped=scenario.left(FLOODER), who_written=scenario.who_written,
        talkers_dropped=sum(1 for talker in scenario.talkers if scenario.left(talker.name)),
        healthy_dropped_after=None if scenario.healthy_dropped_after is None else round(scenario.healthy_dropped_after, 2),
        server_alive=alive, server_answering=answering,
        server_exit_code=exit_code, server_last_error=last_error,
        notes=notes,
    )


def scale_notes(load: HostileLoad) -> list[str]:
    notes = []
    if load.stuck < ISSUE_STUCK or load.who < ISSUE_WHO:
        notes.append(_("the targets are set for {stuck:,} stuck readers and {who:,} WHO frames; "
                       "this run is smaller.").format(stuck=ISSUE_STUCK, who=ISSUE_WHO))
    if load.engine == "fork":
        notes.append(_("the fork engine runs a process per member: its memory is the hub's RSS "
                       "plus the PSS of its children (sampled every second)."))
    if load.engine == "select" and load.connections > 1000:  # the server needs a few more of its own
        notes.append(_("the select engine cannot watch descriptors numbered 1024 or more (FD_SETSIZE)."))
    return notes
