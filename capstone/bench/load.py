"""The chat load generator: N members join, S of them say M messages of B bytes, all count.

Each message is stamped (load_spec.py), so each receiving member measures latency,
notices a lost message or a sender's messages out of sequence, and records the order it
saw everything in; afterwards the orders of all members are compared, because the
protocol promises one single order for every member.

The members are spread over forked workers (pool.py), each driving its share of the
sockets from one epoll loop with no per-frame objects on the hot path. Each worker
reports the CPU it used, and the report says how busy the generator was next to the
server.

Phases, steered by the parent over a pipe per worker:
    join  -> every member sends JOIN and waits for WELCOME      -> "joined"
    go    -> senders send; everyone reads until all expected    -> "done" + results
    close -> the sockets are closed, the worker exits
"""

from __future__ import annotations

import select
import socket
import time
from array import array
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from multiprocessing.connection import Connection
from typing import Callable, Iterator

from capstone.bench.load_spec import STAMP, Load, message_text
from capstone.bench.pool import Workers, own_cpu_seconds, run_in_worker
from capstone.bench.stats import latency_summary, total_order_violations
from capstone.bench.wire import JOIN_WINDOW, RECV_SIZE, connect_and_join, connect_irc, whole_frames, whole_lines
from capstone.codec import Kind, encode
from lessons.toolkit.common import RunFailure
from lessons.toolkit.i18n import _

SEND_CHUNK = 64 * 1024  # a sender queues at most this much before the socket takes it
PROGRESS_EVERY_NS = 100_000_000  # a progress report to the parent every 0.1 s
# Batched reading (when senders go flat out): the kernel wakes a member only once LOWAT
# bytes wait (SO_RCVLOWAT), and a sweep every SWEEP_EVERY_NS picks up the remainders.
# Fewer, larger recv() calls keep the generator cheaper than the server it measures.
LOWAT = 16 * 1024
SWEEP_EVERY_NS = 20_000_000
MESSAGE, WELCOME, ERROR = int(Kind.MESSAGE), int(Kind.WELCOME), int(Kind.ERROR)  # plain ints: faster compares


class Member:
    """One chat connection and what it has seen (slots: thousands of these per worker)."""

    __slots__ = ("index", "sock", "inbox", "outbox", "welcomed", "sender", "next_seq",
                 "expected", "received", "order", "last_seq", "closed", "irc")

    def __init__(self, index: int, load: Load) -> None:
        self.index = index
        self.sock: socket.socket | None = None
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.welcomed = False
        self.sender = index if index < load.senders else -1
        self.next_seq = 0
        own = load.messages if self.sender >= 0 else 0
        self.expected = load.senders * load.messages - own
        self.received = 0
        self.order = array("l")  # global ids (sender * messages + seq) in arrival order
        self.last_seq = [-1] * load.senders
        self.closed = False
        self.irc = load.is_irc(index)  # an IRC client: reads PRIVMSG lines instead of frames

    @property
    def name(self) -> bytes:
        return b"m%d" % self.index


@dataclass
class WorkerResult:
    """What one worker measured, sent to the parent once (arrays travel as bytes)."""

    received: int = 0
    expected: int = 0
    sequence_violations: int = 0
    first_send: int = 0  # monotonic ns
    last_receipt: int = 0
    cpu_seconds: float = 0.0
    latencies: bytes = b""  # array("q") of ns
    orders: dict[int, bytes] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Worker:
    """Drives its share of the members from one epoll loop, in the phases the parent calls."""

    def __init__(self, control: Connection, addresses: list[tuple[str, int]], load: Load, indexes: list[int],
                 irc_address: tuple[str, int] | None = None) -> None:
        self.control = control
        self.addresses = addresses  # member i joins through addresses[i % len]: nodes get even shares
        self.irc_address = irc_address
        self.load = load
        self.members = [Member(index, load) for index in indexes]
        self.by_fd: dict[int, Member] = {}
        self.epoll = select.epoll()
        self.latencies = array("q")
        self.result = WorkerResult(expected=sum(member.expected for member in self.members))
        self.phase = "join"
        self.go_time = 0
        self.cpu_at_go = 0.0
        self.sequence_violations = 0
        self.settled = 0  # members welcomed, or dropped before their WELCOME

    # -- the loop --------------------------------------------------------------------
    def run(self) -> None:
        self.epoll.register(self.control.fileno(), select.EPOLLIN)
        waiting = iter(self.members)
        in_flight = self.start_joins(waiting, JOIN_WINDOW)
        next_progress = next_sweep = time.monotonic_ns() + PROGRESS_EVERY_NS
        while self.phase != "closed":
            events = self.epoll.poll(self.poll_timeout())
            for fd, mask in events:
                if fd == self.control.fileno():
                    self.on_control(self.control.recv())
                    continue
                member = self.by_fd[fd]
                if mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    settled = self.on_readable(member)
                    in_flight -= settled
                    self.settled += settled
                if mask & select.EPOLLOUT and not member.closed:
                    self.send_more(member)
            if self.phase == "join":
                in_flight += self.start_joins(waiting, JOIN_WINDOW - in_flight)
                if self.settled == len(self.members):
                    self.phase = "joined"
                    self.control.send(("joined", None))
            elif self.phase == "go":
                if self.load.rate > 0:
                    self.send_due()
                elif not events or time.monotonic_ns() >= next_sweep:
                    next_sweep = time.monotonic_ns() + SWEEP_EVERY_NS
                    self.sweep()
                tick = time.monotonic_ns() >= next_progress
                if tick:
                    next_progress = time.monotonic_ns() + PROGRESS_EVERY_NS
                    self.control.send(("progress", self.result.received))
                if (tick or self.result.received >= self.result.expected) and self.finished():
                    self.report()

    def poll_timeout(self) -> float:
        if self.phase != "go":
            return 0.1
        if self.load.rate <= 0:
            return 0.005  # then a sweep
        due = min((self.due_time(member) for member in self.senders_left()), default=None)
        if due is None:
            return 0.1
        return max(0.0, min(0.1, (due - time.monotonic_ns()) / 1e9))

    def on_control(self, message: tuple[str, object]) -> None:
        command = message[0]
        if command == "go":
            self.phase = "go"
            self.go_time = time.monotonic_ns()
            self.cpu_at_go = own_cpu_seconds()
            if self.load.rate <= 0:
                for member in self.members:
                    if not member.closed:
                        member.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, LOWAT)
            self.send_due()
        elif command == "stop" and self.phase == "go":
            self.report()
        elif command == "close":
            self.close_all()

    # -- joining ---------------------------------------------------------------------
    def start_joins(self, waiting: Iterator[Member], count: int) -> int:
        """Connect `count` more members and send their JOIN; returns how many started."""
        started = 0
        for member in islice(waiting, max(count, 0)):
            if member.irc:
                sock = member.sock = connect_irc(self.irc_address, member.name)
            else:
                sock = member.sock = connect_and_join(self.addresses[member.index % len(self.addresses)], member.name)
            self.by_fd[sock.fileno()] = member
            self.epoll.register(sock.fileno(), select.EPOLLIN)
            started += 1
        return started

    # -- receiving -------------------------------------------------------------------
    def on_readable(self, member: Member) -> int:
        """Read and parse what arrived; returns 1 if this read brought the WELCOME."""
        was_welcomed = member.welcomed
        try:
            data = member.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as err:
            data = b""
            self.note(f"m{member.index}: {err.strerror}")
        if not data:
            self.drop(member, _("the server closed the connection"))
            return int(not was_welcomed)
        if member.irc:
            self.parse_irc(member, data)
        else:
            self.parse(member, data)
        return int(member.welcomed and not was_welcomed)

    def parse(self, member: Member, data: bytes) -> None:
        """Walk the frames in place: only MESSAGE frames are decoded, the rest skipped."""
        now = time.monotonic_ns()
        inbox = member.inbox
        inbox += data
        stamp_unpack = STAMP.unpack_from
        before = member.received
        end = 0
        for kind, start, end in whole_frames(inbox):
            if kind == MESSAGE:  # payload: name length, name, then the stamped text
                sender, seq, stamp = stamp_unpack(inbox, start + 1 + inbox[start])
                self.on_message(member, int(sender), int(seq), now - int(stamp))
            elif kind == WELCOME:
                member.welcomed = True
            elif kind == ERROR:
                code = inbox[start] if end > start else 0
                self.note(_("m{index} got ERROR {code}: {reason}").format(index=member.index, code=code, reason=bytes(inbox[start + 1:end]).decode(errors='replace')))
        del inbox[:end]
        if member.received > before:
            self.result.received += member.received - before
            self.result.last_receipt = now

    def parse_irc(self, member: Member, data: bytes) -> None:
        """The same for an IRC member: a PRIVMSG's text (after " :") starts with the stamp;
        the end of the NAMES list (366) ends its registration."""
        now = time.monotonic_ns()
        inbox = member.inbox
        inbox += data
        stamp_unpack = STAMP.unpack_from
        before = member.received
        end = -2
        for start, end in whole_lines(inbox):
            command = inbox.find(b" ", start) + 1
            if inbox.startswith(b"PRIVMSG ", command):
                sender, seq, stamp = stamp_unpack(inbox, inbox.find(b" :", command) + 2)
                self.on_message(member, int(sender), int(seq), now - int(stamp))
            elif inbox.startswith(b"366 ", command):
                member.welcomed = True
            elif inbox.startswith(b"ERROR ", start) or inbox.startswith(b"43", command):  # 43x: the nick
                self.note(f"m{member.index} got {bytes(inbox[start:end]).decode(errors='replace')}")
        del inbox[:end + 2]
        if member.received > before:
            self.result.received += member.received - before
            self.result.last_receipt = now

    def on_message(self, member: Member, sender: int, seq: int, latency: int) -> None:
        self.latencies.append(latency)
        member.order.append(sender * self.load.messages + seq)
        if seq <= member.last_seq[sender]:
            self.sequence_violations += 1  # a repeat, or an older message after a newer one
        else:
            member.last_seq[sender] = seq
        member.received += 1

    def sweep(self) -> None:
        """Read what waits below the low-water mark on every member still expecting messages."""
        for member in self.members:
            if member.received < member.expected and not member.closed:
                self.on_readable(member)

    # -- sending ---------------------------------------------------------------------
    def senders_left(self) -> list[Member]:
        return [m for m in self.members if m.sender >= 0 and not m.closed and m.next_seq < self.load.messages]

    def due_time(self, member: Member) -> int:
        return self.go_time + int(member.next_seq * 1e9 / self.load.rate)

    def send_due(self) -> None:
        for member in self.senders_left():
            if not member.outbox:
                self.send_more(member)

    def send_more(self, member: Member) -> None:
        """Top up the member's outbox with the messages now due, write what the socket takes."""
        now = time.monotonic_ns()
        load = self.load
        while member.next_seq < load.messages and len(member.outbox) < SEND_CHUNK:
            if load.rate > 0 and self.due_time(member) > now:
                break
            member.outbox += encode(Kind.SAY, message_text(member.sender, member.next_seq, load.size))
            member.next_seq += 1
            if not self.result.first_send:
                self.result.first_send = time.monotonic_ns()
        try:
            sent = member.sock.send(member.outbox) if member.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as err:
            self.drop(member, err.strerror or _("send failed"))
            return
        del member.outbox[:sent]
        more_now = load.rate == 0 and member.next_seq < load.messages
        wanted = select.EPOLLIN | (select.EPOLLOUT if member.outbox or more_now else 0)
        self.epoll.modify(member.sock.fileno(), wanted)

    # -- ending ----------------------------------------------------------------------
    def finished(self) -> bool:
        everyone_has_all = all(m.received >= m.expected or m.closed for m in self.members)
        return everyone_has_all and not self.senders_left() and not any(m.outbox for m in self.members)

    def report(self) -> None:
        result = self.result
        result.cpu_seconds = own_cpu_seconds() - self.cpu_at_go
        result.sequence_violations = self.sequence_violations
        result.latencies = self.latencies.tobytes()
        result.orders = {m.index: m.order.tobytes() for m in self.members}
        self.control.send(("done", result))
        self.phase = "reported"

    def drop(self, member: Member, why: str) -> None:
        if member.closed:
            return
        self.note(f"m{member.index}: {why}")
        member.closed = True
        self.epoll.unregister(member.sock.fileno())
        member.sock.close()

    def note(self, error: str) -> None:
        if len(self.result.errors) < 20:  # enough to explain, not enough to flood the pipe
            self.result.errors.append(error)

    def close_all(self) -> None:
        for member in self.members:
            if member.sock is not None and not member.closed:
                member.sock.close()
        self.phase = "closed"


def worker_main(control: Connection, indexes: list[int], addresses: list[tuple[str, int]], load: Load,
                irc_address: tuple[str, int] | None = None) -> None:
    run_in_worker(control, lambda: Worker(control, addresses, load, indexes, irc_address).run())


# -- the parent side ---------------------------------------------------------------------
@dataclass
class Measurement:
    """What the parent computes from the workers' results for one server."""

    target: str
    deliveries: int
    expected: int
    lost: int
    order_violations: int
    wall_seconds: float
    deliveries_per_second: float
    latency_ms: dict[str, float]
    server_peak_rss_kib: int  # VmHWM of the server process
    server_pss_kib: int  # PSS of the server and its children, members still connected
    server_processes: int
    server_cpu_seconds: float  # from the first send to the last receipt, children included
    server_cpu_us_per_delivery: float  # fair even when the generator is the limit
    generator_cpu_seconds: float
    generator_workers: int
    generator_busy: float  # its CPU / (wall time x workers): near 1.0 means it was the limit
    errors: list[str]


def run_load(nodes, load: Load, on_progress: Callable[[int], None] | None = None,  # noqa: ANN001 - servers.Nodes
             irc_address: tuple[str, int] | None = None) -> Measurement:
    """Join, send, count and analyse one run against server(s) already listening."""
    target = nodes.setup
    workers = Workers(load.clients, load.workers,
                      partial(worker_main, addresses=nodes.addresses, load=load, irc_address=irc_address))
    try:
        try:
            workers.collect("joined", time.monotonic() + load.timeout)
        except TimeoutError:
            raise RunFailure(_("the {clients} members did not all join {target} within {timeout:g} "
                               "s.").format(clients=load.clients, target=target, timeout=load.timeout)) from None
        cpu_before = nodes.cpu_seconds()
        workers.tell("go")
        try:
            results = workers.collect("done", time.monotonic() + load.timeout, on_progress)
        except TimeoutError:
            workers.tell("stop")  # report what arrived: the rest counts as lost
            results = workers.collect("done", time.monotonic() + 30, on_progress)
        server_cpu_used = nodes.cpu_seconds() - cpu_before
        memory = nodes.memory()  # while every member is still connected
    except (RuntimeError, TimeoutError) as err:  # a worker failed, or did not even report
        raise RunFailure(_("the load against {target} failed: {err}.").format(target=target, err=err)) from None
    finally:
        workers.close()
    return analyse(target, load, results, memory, server_cpu_used)


def analyse(target: str, load: Load, results: list[WorkerResult], memory, server_cpu: float) -> Measurement:
    """Merge the workers' results: rates, latency percentiles, losses, order checks."""
    latencies = array("q")
    orders: dict[int, array] = {}
    for result in results:
        latencies.frombytes(result.latencies)
        for index, raw in result.orders.items():
            orders[index] = array("l", raw)
    received = sum(result.received for result in results)
    first = min((r.first_send for r in results if r.first_send), default=0)
    last = max((r.last_receipt for r in results), default=0)
    wall = max(last - first, 1) / 1e9
    generator_cpu = sum(r.cpu_seconds for r in results)
    violations = sum(r.sequence_violations for r in results) + total_order_violations(orders)
    return Measurement(
        target=target,
        deliveries=received,
        expected=load.expected_deliveries,
        lost=load.expected_deliveries - received,
        order_violations=violations,
        wall_seconds=round(wall, 4),
        deliveries_per_second=round(received / wall, 1),
        latency_ms=latency_summary(latencies),
        server_peak_rss_kib=memory.peak_rss_kib,
        server_pss_kib=memory.pss_kib,
        server_processes=memory.processes,
        server_cpu_seconds=round(server_cpu, 3),
        server_cpu_us_per_delivery=round(server_cpu * 1e6 / max(received, 1), 3),
        generator_cpu_seconds=round(generator_cpu, 3),
        generator_workers=len(results),
        generator_busy=round(generator_cpu / (wall * len(results)), 2),
        errors=[error for r in results for error in r.errors][:10],
    )


# -- several servers, the same load ------------------------------------------------------
@dataclass
class Comparison:
    """Every target's median run, each run's rate, and the targets that could not run."""

    load: Load
    baseline: str
    results: list[Measurement] = field(default_factory=list)
    runs: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def ratio(self, measurement: Measurement) -> float | None:
        """deliveries/s relative to the baseline engine (None when it was not run)."""
        base = next((m for m in self.results if m.target == self.baseline), None)
        if base is None or not base.deliveries_per_second:
            return None
        return round(measurement.deliveries_per_second / base.deliveries_per_second, 2)


def run_target(target: str, load: Load, on_progress: Callable[[int], None] | None = None) -> Measurement:
    """Start `target` on a fresh port, run the load once, stop it."""
    from capstone.bench.servers import Nodes, start_server

    server = start_server(target, irc=load.irc > 0)
    try:
        irc_address = (server.host, server.irc_port) if load.irc else None
        return run_load(Nodes(target, [server]), load, on_progress, irc_address)
    finally:
        server.stop()


def compare(targets: list[str], load: Load, repeat: int = 1, baseline: str = "epoll",
            on_run: Callable[[str, int], Callable[[int], None] | None] | None = None) -> Comparison:
    """Run the same load against every target `repeat` times; keep each one's median run."""
    from capstone.bench.servers import PEERS, uvloop_missing

    comparison = Comparison(load, baseline)
    for target in targets:
        if target == "uvloop" and uvloop_missing():
            comparison.skipped[target] = _("uvloop is not installed (pip install 'learn-netprog[fast]')")
            continue
        if load.irc and target in PEERS:
            comparison.skipped[target] = "it speaks no IRC (--irc)"
            continue
        runs = []
        for number in range(repeat):
            runs.append(run_target(target, load, on_run(target, number) if on_run else None))
        runs.sort(key=lambda m: m.deliveries_per_second)
        comparison.results.append(runs[len(runs) // 2])
        comparison.runs[target] = [m.deliveries_per_second for m in runs]
    return comparison


def compare_cluster(nodes: int, load: Load, repeat: int = 1,
                    on_run: Callable[[str, int], Callable[[int], None] | None] | None = None) -> Comparison:
    """The same load on 1 node, `nodes` nodes on one port and on `nodes` ports (cluster.py),
    each run on a fresh room of one NATS server the comparison starts and stops."""
    from capstone.bench.cluster import NatsBroker, room_name, setup_names, start_setup

    names = setup_names(nodes)
    comparison = Comparison(load, baseline=names[0])
    broker = NatsBroker()
    try:
        for number, name in enumerate(names):
            runs = []
            for attempt in range(repeat):
                setup = start_setup(number, nodes, broker, room_name(number * repeat + attempt))
                try:
                    runs.append(run_load(setup, load, on_run(name, attempt) if on_run else None))
                finally:
                    setup.stop()
            runs.sort(key=lambda m: m.deliveries_per_second)
            comparison.results.append(runs[len(runs) // 2])
            comparison.runs[name] = [m.deliveries_per_second for m in runs]
    finally:
        broker.stop()
    return comparison
