"""What a hostile client can do to the chat server's driver, and the bounds that stop it.

Two layers, as the findings of the hostile-client run (issue 9) need:
- in-process: a real ChatServer (real sockets: socket pairs registered with a real poll
  backend) whose queues the test fills directly, to check the bounds exactly: a frame
  that would pass --max-queue drops that connection before it is queued, the slowest
  readers go first past --max-buffered, and a flush never re-copies a stuck queue;
- real server processes: a WHO flood that never reads, a PING flood, a log nobody reads.
Numbers are shrunk (small queues, few members) so every test takes a few seconds.
"""

from __future__ import annotations

import os
import socket
import signal
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from chatserver import ENGINES, ServerProcess, serve_command
from chatwire import Kind, WireClient, encode

from capstone import codec
from capstone.multiplexers import PollBackend
from capstone.room import Limits, Send
from capstone.server import ChatServer as Driver
from capstone.server import Listeners, OutputLimits, Peer, PeerState

EVERY_ENGINE = pytest.mark.parametrize("engine", ENGINES)


# ------------------------------------------------------------------ in-process driver
class CountingSocket(socket.socket):
    """A socket that counts the bytes the server offers it: a flush that re-joins the
    whole queue offers the same bytes again and again."""

    offered = 0
    calls = 0

    def send(self, data, *args):  # noqa: ANN001, ANN002, ANN201
        self.offered += len(data)
        self.calls += 1
        return super().send(data, *args)

    def sendmsg(self, buffers, *args):  # noqa: ANN001, ANN002, ANN201
        buffers = list(buffers)
        self.offered += sum(len(buffer) for buffer in buffers)
        self.calls += 1
        return super().sendmsg(buffers, *args)


class InProcess:
    """A ChatServer driven by hand: members are socket pairs whose far ends the test holds."""

    def __init__(self, **limits: float) -> None:
        self.lines: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        output = OutputLimits(**{key: limits.pop(key) for key in ("max_queue", "max_buffered") if key in limits})
        self.server = Driver(Listeners(self.listener), PollBackend(), Limits(**limits),
                             lambda event, text: self.lines.append(f"{event} {text}"), output=output)
        self.server.backend.register(self.listener.fileno())
        self.far: dict[str, socket.socket] = {}
        self.fds: dict[str, int] = {}

    def member(self, name: str) -> Peer:
        near, far = socket.socketpair()
        near = CountingSocket(near.family, near.type, 0, fileno=near.detach())
        fd = self.server.adopt(near, name)
        peer = self.server.peers[fd]
        self.server._apply(self.server.room.receive(fd, Kind.JOIN, name.encode(), time.monotonic()))
        self.far[name], self.fds[name] = far, fd
        return peer

    def alive(self, name: str) -> bool:
        fd = self.fds[name]
        return fd in self.server.peers and self.server.peers[fd].state is PeerState.OPEN

    def stuck(self, name: str) -> int:
        """Fill the kernel buffer towards `name` (whose far end never reads); the filler's size."""
        peer = self.server.peers[self.fds[name]]
        filler = 0
        while True:
            try:
                filler += socket.socket.send(peer.sock, b"\0" * 65536)
            except BlockingIOError:
                break
        self.server._want_write(self.fds[name], peer, True)
        return filler

    def drain(self, name: str) -> bytes:
        """What the server sent `name` so far (read from the far end without waiting)."""
        far, data = self.far[name], b""
        far.setblocking(False)
        while True:
            try:
                data += far.recv(1 << 20)
            except BlockingIOError:
                return data

    def assert_accounting(self) -> None:
        """The server-wide count equals what the queues hold: no drift from partial sends or drops."""
        peers = self.server.peers.values()
        assert self.server.buffered == sum(peer.queued + 8 * len(peer.out) for peer in peers)
        for peer in peers:
            assert peer.queued == sum(len(frame) for frame in peer.out) - peer.offset

    def close(self) -> None:
        self.assert_accounting()
        for sock in self.far.values():
            sock.close()
        self.server.close_everything()
        self.listener.close()


@pytest.fixture
def driver():
    made: list[InProcess] = []

    def make(**limits: float) -> InProcess:
        made.append(InProcess(**limits))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_reply_that_would_pass_max_queue_drops_the_connection_before_it_is_queued(driver) -> None:
    chat = driver(max_queue=10_000)
    asker, other = chat.member("asker"), chat.member("other")
    chat.server._flush_dirty()
    fd = chat.fds["asker"]
    chat.server._apply([Send(fd, codec.encode(Kind.PONG, b"x" * 60))] * 100)  # 6,500 bytes: fits
    assert chat.alive("asker") and asker.queued == 6500
    chat.server._apply([Send(fd, codec.encode(Kind.PONG, b"x" * 60))] * 100)  # would pass 10,000
    assert not chat.alive("asker")
    assert asker.queued <= 10_000, "the frame that passed the bound was queued anyway"
    assert other.out and other.out[-1] == codec.encode_text(Kind.LEFT, "asker")
    assert chat.server.buffered == other.queued + 8 * len(other.out)


def test_a_broadcast_that_would_pass_max_queue_drops_only_that_reader(driver) -> None:
    chat = driver(max_queue=20_000)
    for name in ("talker", "stuck", "reader"):
        chat.member(name)
    chat.server._flush_dirty()
    chat.stuck("stuck")
    talker = chat.fds["talker"]
    say = codec.encode(Kind.SAY, b"y" * 1000)
    for _ in range(25):
        chat.server._apply(chat.server.room.receive(talker, Kind.SAY, say[5:], time.monotonic()))
        chat.server._flush_dirty()
    assert not chat.alive("stuck") and chat.alive("reader") and chat.alive("talker")
    assert any("stuck was too slow" in line for line in chat.lines), chat.lines


def test_past_max_buffered_the_longest_queues_are_dropped_first(driver) -> None:
    chat = driver(max_queue=1 << 20, max_buffered=100_000)
    for name in ("big", "middle", "small"):
        chat.member(name)
    chat.server._flush_dirty()
    for name, size in (("big", 50_000), ("middle", 30_000), ("small", 10_000)):
        chat.stuck(name)
        chat.server._apply([Send(chat.fds[name], b"z" * size)])
    assert all(chat.alive(name) for name in ("big", "middle", "small"))
    chat.server._apply([Send(chat.fds["small"], b"z" * 20_000)])  # 110,000 queued in all: over
    assert not chat.alive("big"), "the slowest reader was not dropped first"
    assert chat.alive("middle") and chat.alive("small")
    assert chat.server.buffered <= 100_000


def test_a_broadcast_costs_the_same_however_long_the_stuck_queues_are(driver) -> None:
    """Finding 3: the old flush re-joined and re-offered a stuck reader's whole queue on
    every broadcast (quadratic). Now a stuck reader waits for POLLOUT and is not touched."""
    chat = driver(max_queue=50 << 20, rate_limit=0)
    chat.member("talker")
    stuck = [chat.member(f"stuck{i}") for i in range(5)]
    chat.server._flush_dirty()
    for index, peer in enumerate(stuck):
        chat.stuck(f"stuck{index}")
        peer.sock.offered = 0
    talker = chat.fds["talker"]
    for _ in range(300):
        chat.server._apply(chat.server.room.receive(talker, Kind.SAY, b"w" * 1000, time.monotonic()))
        chat.server._flush_dirty()
    queued = sum(peer.queued for peer in stuck)
    offered = sum(peer.sock.offered for peer in stuck)
    assert queued > 5 * 299_000
    assert offered < queued, f"{offered:,} bytes offered to send() for {queued:,} queued: the queue was re-sent"


def test_a_writable_stuck_reader_gets_many_buffers_in_one_sendmsg_and_keeps_its_place(driver) -> None:
    chat = driver(max_queue=50 << 20)
    peer = chat.member("slow")
    chat.server._flush_dirty()
    chat.drain("slow")  # the WELCOME
    filler = chat.stuck("slow")
    frames = [codec.encode_text(Kind.ANNOUNCE, f"{i:05d}" + "a" * 995) for i in range(3000)]
    chat.server._apply([Send(chat.fds["slow"], frame) for frame in frames])
    expected = b"\0" * filler + b"".join(frames)
    stream = b""
    peer.sock.calls = 0
    deadline = time.monotonic() + 20
    while len(stream) < len(expected) and time.monotonic() < deadline:
        stream += chat.drain("slow")
        chat.server._flush(chat.fds["slow"], peer)
    assert stream == expected, "frames were lost, repeated or reordered across partial sends"
    assert not peer.out and peer.offset == 0 and peer.queued == 0
    assert peer.sock.calls < 300, f"{peer.sock.calls} send calls for 3,000 frames: not batched"


# ------------------------------------------------------------------ real servers
def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def join_many(server: ServerProcess, count: int, stem: str) -> list[WireClient]:
    members = []
    for index in range(count):
        client = server.connect(f"{stem}{index}")
        client.join(f"{index:02d}" + "\U0001f600" * 30)  # 30 emoji: 122 bytes a name
        members.append(client)
    return members


@EVERY_ENGINE
def test_a_who_flood_that_never_reads_costs_no_memory_and_stalls_nobody(engine: str) -> None:
    """Finding 1: 13,000 WHO in one write, never read. The old server answered all of them
    (34 MB here, 4.4 GB with 1,000 members) before checking any bound."""
    with ServerProcess.start("--engine", engine, "--port", "0", "--max-queue", "65536") as server:
        members = join_many(server, 20, "m")
        healthy = members[0]
        healthy.frames_until_pong(b"warm")  # the JOINED of the others
        before = peak_rss_mib(server.process.pid)  # the fork engine's hub: where the room lives
        flooder = server.connect("flooder", rcvbuf=4096)
        flooder.join("flooder")
        flooder.send_raw(encode(Kind.WHO) * 13_000)
        started = time.monotonic()
        while True:  # the healthy member is served all along, and sees the flooder leave
            healthy.send_frame(Kind.PING, b"alive?")
            frame = healthy.recv_frame(timeout=5)
            while frame.kind != Kind.PONG:
                if frame.kind == Kind.LEFT:
                    assert frame.text == "flooder"
                    break
                frame = healthy.recv_frame(timeout=5)
            if frame.kind == Kind.LEFT:
                break
            assert time.monotonic() - started < 30, "the flooder was never dropped"
        grown = peak_rss_mib(server.process.pid) - before
        assert grown < 12, f"the server's peak RSS grew by {grown:.0f} MiB during the flood"
        healthy.frames_until_pong(b"after")
        assert server.process.poll() is None, server.diagnostics()


def test_pings_past_their_rate_wait_for_a_token_and_are_all_answered_in_order() -> None:
    """PING and WHO have a bucket of their own (200, refilled at 100 a second): past it the
    server reads nothing more from that client until a token is back. Nothing is refused."""
    with ServerProcess.start("--port", "0") as server:
        pinger, healthy = server.connect("pinger"), server.connect("healthy")
        started = time.monotonic()
        pinger.send_raw(b"".join(encode(Kind.PING, str(i).encode()) for i in range(300)))
        for i in range(300):
            pinger.expect(Kind.PONG, str(i).encode())
        elapsed = time.monotonic() - started
        assert elapsed >= 0.8, f"300 PINGs answered in {elapsed:.2f} s: no rate limit (200 + 100 a second)"
        healthy.ping(b"unaffected")


# ------------------------------------------------------------------ the log
def start_unread_server(*options: str) -> tuple[subprocess.Popen, str, str]:
    """A server whose stdout is a pipe that the test stops reading after the banner."""
    process = subprocess.Popen(serve_command("--port", "0", *options), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    banner = b""
    deadline = time.monotonic() + 30
    while banner.count(b"\n") < 2:
        assert time.monotonic() < deadline, f"no banner: {banner!r}"
        chunk = os.read(process.stdout.fileno(), 1)  # byte by byte: never read past the banner
        assert chunk, f"the server ended: {banner!r}"
        banner += chunk
    listening, admin = banner.decode().split("\n")[:2]
    return process, listening.rsplit(":", 1)[1], admin.removeprefix("admin socket ")


def flood_the_log_then_stop(process: subprocess.Popen, port: int, admin_path: str) -> None:
    """60 announcements of 3,000 bytes (180 KB of log lines, far more than a pipe or a
    terminal holds): each still reaches a member, PING is answered, SIGTERM gives exit 0."""
    member = WireClient.tcp(("127.0.0.1", port), "member")
    member.join("member")
    admin = WireClient.unix(admin_path, "admin")
    for _ in range(60):
        admin.send_frame(Kind.ADMIN_SAY, "n" * 3000)
        admin.expect(Kind.OK, timeout=5)
        member.expect(Kind.ANNOUNCE, timeout=5)
    member.ping(b"still serving")
    process.send_signal(signal.SIGTERM)
    assert process.wait(5) == 0


def test_a_log_nobody_reads_never_freezes_the_server() -> None:
    """Finding 2: the old server blocked in write() once ~64 KiB of log filled the pipe."""
    process, port, admin_path = start_unread_server()
    try:
        flood_the_log_then_stop(process, int(port), admin_path)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_a_closed_log_stops_the_server_like_sigterm() -> None:
    process, port, _ = start_unread_server()
    try:
        process.stdout.close()  # the reader went away (| head -2 exited)
        member = WireClient.tcp(("127.0.0.1", int(port)), "member")
        member.join("member")  # a log line: EPIPE
        assert member.expect_error(8, timeout=10)  # ERROR SHUTDOWN, as on SIGTERM
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.wait()


def test_frames_after_a_leave_in_the_same_read_are_not_handled(driver) -> None:
    chat = driver()
    peer = chat.member("quitter")
    chat.member("stayer")
    fd = chat.fds["quitter"]
    chat.far["quitter"].send(encode(Kind.LEAVE) + encode(Kind.WHO) * 1000)
    chat.server._dispatch(fd, True, False)
    assert peer.state is PeerState.CLOSING
    assert all(frame[4] != Kind.MEMBERS for frame in peer.out), "the frames after LEAVE were decoded and handled"
    assert chat.server.buffered == sum(p.queued + 8 * len(p.out) for p in chat.server.peers.values())


def test_a_memory_error_while_serving_one_connection_drops_only_that_connection(driver) -> None:
    chat = driver()
    greedy = chat.member("greedy")
    chat.member("other")
    chat.server._flush_dirty()

    def out_of_memory(data: bytes) -> None:
        raise MemoryError

    chat.server.room.connections[chat.fds["greedy"]].decoder.feed = out_of_memory
    chat.far["greedy"].send(encode(Kind.WHO))
    chat.server._dispatch(chat.fds["greedy"], True, False)
    assert not chat.alive("greedy") and chat.alive("other")
    assert any("out of memory" in line for line in chat.lines), chat.lines


def test_a_terminal_nobody_reads_never_freezes_the_server() -> None:
    """The same with a terminal (coloured log lines through rich) that is not being read,
    as after Ctrl-S: the pseudo-terminal's buffer fills and a plain print() would block."""
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen(serve_command("--port", "0"), stdin=subprocess.DEVNULL, stdout=slave,
                               stderr=subprocess.DEVNULL)
    os.close(slave)
    try:
        banner = b""
        deadline = time.monotonic() + 30
        while banner.count(b"\n") < 2:
            assert time.monotonic() < deadline, banner
            banner += os.read(master, 1)
        port = int(banner.split(b"\n")[0].rsplit(b":", 1)[1])
        admin_path = banner.split(b"\n")[1].strip().removeprefix(b"admin socket ").decode()
        flood_the_log_then_stop(process, port, admin_path)
    finally:
        process.kill()
        process.wait()
        os.close(master)


OPERATIONS = st.lists(st.tuples(st.sampled_from(["send", "broadcast", "flush", "read"]),
                                st.integers(0, 3), st.integers(5, 40_000)), max_size=60)


@settings(max_examples=25, deadline=None)
@given(OPERATIONS)
def test_the_bounds_hold_and_the_count_never_drifts_whatever_happens(operations) -> None:
    chat = InProcess(max_queue=60_000, max_buffered=100_000, rate_limit=0)
    try:
        names = [f"p{i}" for i in range(4)]
        for name in names:
            chat.member(name)
        for action, who, size in operations:
            name = names[who]
            if not chat.alive(name):
                continue
            fd = chat.fds[name]
            if action == "send":
                chat.server._apply([Send(fd, b"s" * size)])
            elif action == "broadcast":
                chat.server._apply(chat.server.room.receive(fd, Kind.SAY, b"b" * min(size, 4000), time.monotonic()))
            elif action == "flush":
                chat.server._flush_dirty()
                if fd in chat.server.peers:
                    chat.server._flush(fd, chat.server.peers[fd])
            else:
                chat.drain(name)
            assert all(peer.queued <= 60_000 for peer in chat.server.peers.values())
            assert chat.server.buffered <= 100_000
            chat.assert_accounting()
    finally:
        chat.close()
