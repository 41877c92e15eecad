"""Many idle members, one broadcast at a time: fan-out latency and memory per member.

`learn bench scale --members 5000`: the members join (spread over forked workers, each
driving its share from one epoll loop) and then stay idle. One more connection, the
speaker, says one message, stamped with `time.monotonic_ns()`; every worker notes when
the last of its members has it. The time until the last member of all has it is one
sample; the speaker repeats that `--repeat` times, one broadcast after another.

A first, untimed broadcast proves that every member has drained the JOINED flood (one
JOINED per later joiner: about members^2 / 2 frames), because every member sees the
server's broadcasts in one order. The server's memory is sampled before anyone joins
and after that first broadcast: their difference divided by the members is the memory
one idle member costs the server (its socket object, buffers, queue, entry in the room).
"""

from __future__ import annotations

import resource
import select
import socket
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from multiprocessing.connection import Connection
from typing import Callable

from capstone.bench.pool import Workers, own_cpu_seconds, run_in_worker
from capstone.bench.stats import latency_summary_ms, median
from capstone.bench.wire import JOIN_WINDOW, RECV_SIZE, connect_and_join, whole_frames
from capstone.codec import HEADER, Kind, encode
from lessons.toolkit.common import RunFailure
from lessons.toolkit.i18n import _

SPEAKER = b"speaker"
MESSAGE, WELCOME = int(Kind.MESSAGE), int(Kind.WELCOME)


@dataclass
class ScaleReport:
    target: str
    members: int
    repeat: int
    join_seconds: float
    broadcast_ms: dict[str, float]
    samples_ms: list[float]
    server_cpu_ms_per_broadcast: float  # median: the server's own share of one fan-out
    busiest_node_cpu_ms_per_broadcast: float  # median: with several nodes, the one that worked most
    receivers_cpu_ms_per_broadcast: float  # median: the generator's workers reading it
    send_floor_ms: float | None  # a bare loop of one send() per member: no server does less
    rss_before_kib: int
    rss_after_kib: int
    kib_per_member: float
    fd_limit: int
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"benchmark": "scale", **asdict(self)}


def send_floor_ms(count: int, repeat: int = 5) -> float:
    """Median ms of a bare Python loop sending one small frame to `count` loopback sockets.

    A broadcast to `count` TCP members needs at least this: one send() per socket, and on
    loopback each send also runs the receiving side's TCP work. No chat server written in
    Python on this machine can fan out faster than this loop.
    """
    frame = encode(Kind.MESSAGE, b"\x07speaker" + b"x" * 64)
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    senders: list[socket.socket] = []
    receivers: list[socket.socket] = []
    try:
        for _unused in range(count):
            receivers.append(socket.create_connection(listener.getsockname()))
            senders.append(listener.accept()[0])
        samples = []
        for _unused in range(repeat):
            start = time.perf_counter()
            for sock in senders:
                sock.send(frame)
            samples.append((time.perf_counter() - start) * 1000)
            for sock in receivers:
                sock.recv(RECV_SIZE)
        return round(sorted(samples)[len(samples) // 2], 3)
    finally:
        for sock in [listener, *senders, *receivers]:
            sock.close()


class ScaleWorker:
    """Joins its members, then reports each broadcast round once all its members have it."""

    def __init__(self, control: Connection, indexes: list[int], addresses: list[tuple[str, int]]) -> None:
        self.control = control
        self.addresses = addresses  # member i joins through addresses[i % len]: nodes get even shares
        self.indexes = indexes
        self.epoll = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        self.inboxes: dict[int, bytearray] = {}
        self.welcomed = 0
        self.have_round: dict[int, int] = {}  # round -> how many of our members have it

    def run(self) -> None:
        self.join_all()
        self.control.send(("joined", None))
        while True:
            for fd, _unused in self.epoll.poll(1.0):
                if fd == self.control.fileno():
                    self.close_all()
                    return
                self.on_readable(fd)

    def join_all(self) -> None:
        """Connect with at most JOIN_WINDOW JOINs in flight, until every member is welcome."""
        waiting = iter(self.indexes)
        in_flight = 0
        while self.welcomed < len(self.indexes):
            for index in islice(waiting, JOIN_WINDOW - in_flight):
                self.add(connect_and_join(self.addresses[index % len(self.addresses)], b"m%d" % index))
                in_flight += 1
            before = self.welcomed
            for fd, _unused in self.epoll.poll(1.0):
                self.on_readable(fd)
            in_flight -= self.welcomed - before
        self.epoll.register(self.control.fileno(), select.EPOLLIN)

    def add(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        self.socks[fd] = sock
        self.inboxes[fd] = bytearray()
        self.epoll.register(fd, select.EPOLLIN)

    def on_readable(self, fd: int) -> None:
        data = self.socks[fd].recv(RECV_SIZE)
        if not data:
            raise RuntimeError(_("the server closed a member's connection (fd {fd})").format(fd=fd))
        now = time.monotonic_ns()
        inbox = self.inboxes[fd]
        inbox += data
        end = 0
        for kind, start, end in whole_frames(inbox):
            if kind == MESSAGE:  # payload: name length, name, then "round N SENT_NS"
                text = bytes(inbox[start + 1 + inbox[start]:end])
                self.on_round(int(text.split()[1]), now)
            elif kind == WELCOME:
                self.welcomed += 1
        del inbox[:end]

    def on_round(self, number: int, now: int) -> None:
        """Count one member having round `number`; the last one reports it with our CPU so far."""
        self.have_round[number] = self.have_round.get(number, 0) + 1
        if self.have_round[number] == len(self.socks):
            self.control.send(("round", (number, now, own_cpu_seconds())))

    def close_all(self) -> None:
        for sock in self.socks.values():
            sock.close()


def scale_worker(control: Connection, indexes: list[int], addresses: list[tuple[str, int]]) -> None:
    run_in_worker(control, lambda: ScaleWorker(control, indexes, addresses).run())


def speaker_joins(address: tuple[str, int], deadline: float) -> socket.socket:
    """The extra member who says the timed messages (it joins last: no JOINED flood to read)."""
    sock = connect_and_join(address, SPEAKER)
    sock.setblocking(True)
    sock.settimeout(max(deadline - time.monotonic(), 1.0))
    length, kind = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
    if length:
        sock.recv(length, socket.MSG_WAITALL)  # the accepted name
    if kind != WELCOME:
        raise RunFailure(_("the speaker was not welcomed (frame kind 0x{kind:02x}).").format(kind=kind))
    return sock


def broadcast_once(speaker: socket.socket, workers: Workers, number: int, timeout: float) -> tuple[float, list[float]]:
    """Say round `number`: ms until the last member anywhere has it, and each worker's CPU total."""
    sent = time.monotonic_ns()
    speaker.sendall(encode(Kind.SAY, b"round %d %d" % (number, sent)))
    try:
        answers = workers.collect("round", time.monotonic() + timeout)
    except TimeoutError:
        raise RunFailure(_("broadcast {number} did not reach every member within {timeout:g} s.").format(number=number, timeout=timeout)) from None
    if any(answer[0] != number for answer in answers):
        raise RunFailure(_("a worker reported round {answers} while {number} was expected.").format(answers=answers, number=number))
    return (max(receipt for _unused, receipt, _unused in answers) - sent) / 1e6, [cpu for _unused, _, cpu in answers]


@dataclass
class Rounds:
    """Per timed broadcast: latency, and the CPU the server and the receivers spent on it (ms)."""

    latency: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    busiest_node_cpu: list[float] = field(default_factory=list)  # with one server: the same as server_cpu
    receivers_cpu: list[float] = field(default_factory=list)


def time_broadcasts(speaker: socket.socket, pool: Workers, server_cpu: Callable[[], list[float]], repeat: int,
                    timeout: float) -> Rounds:
    """`server_cpu()` gives each server process's CPU seconds so far (one per node)."""
    rounds = Rounds()
    _, receivers_before = broadcast_once(speaker, pool, 0, timeout)  # untimed: the JOINED flood is read
    for number in range(1, repeat + 1):
        server_before = server_cpu()
        latency, receivers_now = broadcast_once(speaker, pool, number, timeout)
        rounds.latency.append(latency)
        used = [(now - then) * 1000 for now, then in zip(server_cpu(), server_before)]
        rounds.server_cpu.append(sum(used))
        rounds.busiest_node_cpu.append(max(used))
        rounds.receivers_cpu.append((sum(receivers_now) - sum(receivers_before)) * 1000)
        receivers_before = receivers_now
    return rounds


def run_scale(target: str, members: int = 5000, repeat: int = 20, workers: int = 2,
              timeout: float = 120.0) -> ScaleReport:
    from capstone.bench.servers import Nodes, raise_fd_limit, start_server

    fd_limit = raise_fd_limit(members + 200, "--members")
    notes: list[str] = []
    floor = None
    if fd_limit == resource.RLIM_INFINITY or 2 * members + 50 < fd_limit:
        floor = send_floor_ms(members)  # before the server starts: nothing else is running
    else:
        notes.append(_("the send() floor needs {needed} descriptors at once; the limit {fd_limit} "
                       "is too low.").format(needed=2 * members, fd_limit=fd_limit))
    if target == "fork":
        notes.append(_("the fork engine runs one process per member: its memory is the sum of their PSS."))
    nodes = Nodes(target, [start_server(target)])
    try:
        return measure_scale(nodes, members, repeat, workers, timeout, floor, fd_limit, notes)
    finally:
        nodes.stop()


def measure_scale(nodes, members: int, repeat: int, workers: int, timeout: float,  # noqa: ANN001 - servers.Nodes
                  floor: float | None, fd_limit: int, notes: list[str]) -> ScaleReport:
    """Join the members to `nodes` (already listening), time the broadcasts, read the memory."""
    addresses = nodes.addresses
    before = nodes.memory_kib()
    started = time.monotonic()
    pool = Workers(members, workers, partial(scale_worker, addresses=addresses))
    try:
        pool.collect("joined", started + timeout)
        speaker = speaker_joins(addresses[0], started + timeout)
        join_seconds = time.monotonic() - started
        rounds = time_broadcasts(speaker, pool, nodes.cpu_seconds_each, repeat, timeout)
        after = nodes.memory_kib()  # every member joined, the JOINED flood long delivered
        speaker.close()
    except TimeoutError:
        raise RunFailure(_("the {members} members did not all join {target} within {timeout:g} "
                           "s.").format(members=members, target=nodes.setup, timeout=timeout)) from None
    except RuntimeError as err:
        raise RunFailure(str(err) + nodes.last_words()) from None
    finally:
        pool.close()
    return ScaleReport(
        target=nodes.setup, members=members, repeat=repeat, join_seconds=round(join_seconds, 3),
        broadcast_ms=latency_summary_ms(rounds.latency), samples_ms=[round(s, 3) for s in rounds.latency],
        server_cpu_ms_per_broadcast=median(rounds.server_cpu),
        busiest_node_cpu_ms_per_broadcast=median(rounds.busiest_node_cpu), receivers_cpu_ms_per_broadcast=median(rounds.receivers_cpu),
        send_floor_ms=floor,
        rss_before_kib=before, rss_after_kib=after, kib_per_member=round((after - before) / members, 2),
        fd_limit=fd_limit, notes=notes,
    )


@dataclass
class ClusterScaleReport:
    """The same scale run on each cluster setup, in one run, and their ratios to 1 node."""

    nodes: int
    members: int
    setups: list[ScaleReport]

    def ratio(self, report: ScaleReport) -> float:
        """Its median broadcast time over 1 node's: below 1, the extra nodes made it faster."""
        single = self.setups[0].broadcast_ms["p50"]
        return round(report.broadcast_ms["p50"] / single, 2) if single else 0.0

    def as_json(self) -> dict:
        return {"benchmark": "scale-cluster", "nodes": self.nodes, "members": self.members,
                "setups": [{**asdict(report), "ratio_p50_to_1_node": self.ratio(report)} for report in self.setups]}


def run_scale_cluster(nodes: int, members: int = 5000, repeat: int = 20, workers: int = 2,
                      timeout: float = 120.0, on_setup: Callable[[str], None] | None = None) -> ClusterScaleReport:
    """1 node, then `nodes` nodes on one port, then on `nodes` ports: one NATS server for the run."""
    from capstone.bench.cluster import NatsBroker, room_name, setup_names, start_setup
    from capstone.bench.servers import raise_fd_limit

    fd_limit = raise_fd_limit(members + 200, "--members")
    broker = NatsBroker()
    reports = []
    try:
        for number, name in enumerate(setup_names(nodes)):
            if on_setup:
                on_setup(name)
            setup = start_setup(number, nodes, broker, room_name(number))
            try:
                reports.append(measure_scale(setup, members, repeat, workers, timeout, None, fd_limit, []))
            finally:
                setup.stop()
    finally:
        broker.stop()
    return ClusterScaleReport(nodes, members, reports)
