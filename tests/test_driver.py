"""The chat server's driver in-process: real sockets, a fake clock, no waiting.

Between the pure room tests (test_room.py) and the subprocess tests (the conformance
suite): a real ChatServer with a real poll backend, whose clients are socket pairs the
test holds the far ends of. Its clock is a number the test moves, and each turn of the
loop is `run_once(0)`, so the timing rules -- linger after an error, the shutdown grace,
the join timeout, a deferred WHO -- are checked exactly and at once, not in real time.
"""

from __future__ import annotations

import socket
import struct
from typing import Callable

import pytest

from capstone.multiplexers import PollBackend
from capstone.room import Limits
from capstone.server import LINGER_SECONDS, SHUTDOWN_GRACE, ChatServer, Listeners, OutputLimits, PeerState

HEADER = struct.Struct("!IB")  # PROTOCOL.md: payload length, kind
JOIN, SAY, PING, WHO = 0x01, 0x02, 0x04, 0x05
ERROR, LEFT, MESSAGE, PONG, MEMBERS = 0x82, 0x84, 0x85, 0x87, 0x88
TOO_LARGE, SHUTDOWN, TIMEOUT = 5, 8, 9
TURNS = 400  # loop turns a test may take before it counts as stuck


class FakeClock:
    """Monotonic seconds that move only when the test says; far from the real clock, so a
    stray time.monotonic() in the server shows up as a wrong deadline."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Client:
    """The far end of one connection: what the test sends, and what it has received."""

    def __init__(self, sock: socket.socket, fd: int) -> None:
        self.sock, self.fd = sock, fd
        self.sock.setblocking(False)
        self.received = bytearray()
        self.ended = False  # the server shut down its side (we read b"")

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(HEADER.pack(len(payload), kind) + payload)

    def read(self) -> None:
        """Whatever has arrived; never waits."""
        while not self.ended:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            self.received += data
            self.ended = not data

    def frames(self) -> list[tuple[int, bytes]]:
        """Every whole frame received so far, in order."""
        self.read()
        frames, offset = [], 0
        while offset + HEADER.size <= len(self.received):
            length, kind = HEADER.unpack_from(self.received, offset)
            start = offset + HEADER.size
            if start + length > len(self.received):
                break
            frames.append((kind, bytes(self.received[start:start + length])))
            offset = start + length
        return frames

    def at_eof(self) -> bool:
        """The server has shut down its sending side (after all it sent)."""
        self.read()
        return self.ended

    def kinds(self) -> list[int]:
        return [kind for kind, _ in self.frames()]

    def errors(self) -> list[int]:
        return [payload[0] for kind, payload in self.frames() if kind == ERROR]


class InProcessServer:
    def __init__(self, output: OutputLimits = OutputLimits(), **limits: float) -> None:
        self.clock = FakeClock()
        self.lines: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.server = ChatServer(Listeners(self.listener), PollBackend(), Limits(**limits),
                                 lambda event, text: self.lines.append(f"{event} {text}"),
                                 output=output, clock=self.clock)
        self.server.start()
        self.running = True

    def connect(self, buffer: int | None = None) -> Client:
        """A new chat connection (kernel buffers of about `buffer` bytes each way, if given)."""
        near, far = socket.socketpair()
        if buffer is not None:
            near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        fd = self.server.adopt(near, None)
        assert fd is not None
        return Client(far, fd)

    def member(self, name: str, buffer: int | None = None) -> Client:
        client = self.connect(buffer)
        client.send(JOIN, name.encode())
        self.turn_until(lambda: client.kinds()[:1] == [0x81], f"{name} was never welcomed")
        return client

    def turn(self) -> bool:
        """One turn of the server's loop, without waiting."""
        self.running = self.server.run_once(0)
        return self.running

    def turn_until(self, condition: Callable[[], bool], why: str) -> None:
        for _ in range(TURNS):
            if condition():
                return
            if not self.turn():
                break
        assert condition(), why

    def state(self, client: Client) -> PeerState | None:
        """The driver's state for this connection; None once it is closed."""
        peer = self.server.peers.get(client.fd)
        return None if peer is None else peer.state

    def close(self) -> None:
        self.server.close_everything()
        self.listener.close()


@pytest.fixture
def chat():
    made: list[InProcessServer] = []

    def make(output: OutputLimits = OutputLimits(), **limits: float) -> InProcessServer:
        made.append(InProcessServer(output, **limits))
        return made[-1]

    yield make
    for each in made:
        each.close()


# ----- a slow reader ------------------------------------------------------------------------


def test_a_reader_that_stops_reading_is_dropped_and_the_others_hear_left(chat) -> None:
    server = chat(OutputLimits(max_queue=20_000), rate_limit=0)
    talker, stuck, reader = server.member("talker"), server.member("stuck", buffer=4096), server.member("reader")
    said = 0
    while server.state(stuck) is PeerState.OPEN:
        assert said < TURNS, "the stuck reader was never dropped"
        talker.send(SAY, b"y" * 1000)
        said += 1
        server.turn()
        reader.read()
    assert server.state(stuck) is None, "dropped at once, not flushed and lingered"
    assert server.state(reader) is PeerState.OPEN and server.state(talker) is PeerState.OPEN
    server.turn_until(lambda: (LEFT, b"stuck") in reader.frames(), "the reader never heard LEFT stuck")
    assert reader.kinds().count(MESSAGE) == said, "the reader lost messages"
    assert any("stuck was too slow" in line for line in server.lines), server.lines
    assert server.server.buffered == sum(peer.queued + 8 * len(peer.out) for peer in server.server.peers.values())


# ----- linger after an error ----------------------------------------------------------------


def test_after_an_error_the_server_lingers_for_the_peers_eof_then_gives_up(chat) -> None:
    server = chat()
    bob = server.member("bob")
    client = server.connect()
    client.sock.sendall(HEADER.pack(1 << 20, SAY) + b"partial payload")
    server.turn_until(client.at_eof, "the error was never followed by our EOF")
    assert client.errors() == [TOO_LARGE]
    assert server.state(client) is PeerState.DRAINING
    client.sock.sendall(b"more bytes the server reads and throws away")
    server.clock.advance(LINGER_SECONDS - 0.01)
    for _ in range(5):
        server.turn()
    assert server.state(client) is PeerState.DRAINING, "the linger ended early"
    server.clock.advance(0.02)
    server.turn()
    assert server.state(client) is None, "the linger did not end at LINGER_SECONDS"
    assert server.state(bob) is PeerState.OPEN and bob.kinds()[1:] == []


def test_a_peer_that_closes_during_the_linger_is_closed_at_once(chat) -> None:
    server = chat()
    client = server.connect()
    client.send(0x03)  # LEAVE before JOIN: just closed
    server.turn_until(client.at_eof, "LEAVE did not close the connection")
    assert server.state(client) is PeerState.DRAINING
    client.sock.close()
    server.turn_until(lambda: server.state(client) is None, "the peer's EOF did not end the linger")


# ----- shutdown ---------------------------------------------------------------------------------


def test_shutdown_flushes_what_was_queued_then_error_shutdown_then_stops(chat) -> None:
    server = chat(rate_limit=0)
    talker, slow = server.member("talker"), server.member("slow", buffer=4096)
    for index in range(40):  # far more than the kernel buffers hold: a queue builds up
        talker.send(SAY, f"{index:03d}".encode() * 100)
    server.turn_until(lambda: server.server.peers[slow.fd].queued > 0, "no queue built up")
    server.server.request_stop()
    for _ in range(TURNS):
        if not server.turn():
            break
        for client in (talker, slow):
            client.read()
            if client.ended and client.sock.fileno() >= 0:
                client.sock.close()  # as a client does once it has read ERROR SHUTDOWN
    assert not server.running, "the server did not stop once everyone had closed"
    frames = slow.frames()
    assert [kind for kind, _ in frames] == [0x81] + [MESSAGE] * 40 + [ERROR], "not all flushed, or out of order"
    assert frames[-1][1][0] == SHUTDOWN and talker.errors() == [SHUTDOWN]
    assert server.clock.now == 1_000_000.0, "the server stopped only because time passed"


def test_shutdown_gives_up_on_a_client_that_never_closes_after_the_grace(chat) -> None:
    server = chat()
    stubborn = server.member("stubborn")
    server.server.request_stop()
    server.turn_until(stubborn.at_eof, "no ERROR SHUTDOWN and EOF")
    assert stubborn.errors() == [SHUTDOWN]
    server.clock.advance(SHUTDOWN_GRACE - 0.01)
    assert server.turn() and server.turn(), "stopped before the grace was over"
    server.clock.advance(0.02)
    assert not server.turn(), "still running after the grace"


# ----- the join timeout, and a deferred WHO -----------------------------------------------------


def test_a_connection_that_never_joins_is_closed_at_the_join_timeout(chat) -> None:
    server = chat(join_timeout=10)
    member = server.member("member")
    silent = server.connect()
    server.clock.advance(9.99)
    for _ in range(5):
        server.turn()
    assert server.state(silent) is PeerState.OPEN and silent.frames() == []
    server.clock.advance(0.02)
    server.turn_until(silent.at_eof, "the join timeout never closed the connection")
    assert silent.errors() == [TIMEOUT]
    assert server.state(member) is PeerState.OPEN and member.kinds() == [0x81]


def test_a_who_over_its_rate_stops_the_reading_until_its_token_is_back(chat) -> None:
    server = chat(query_rate=1)
    asker = server.member("asker")
    for payload in (b"1", b"2", b"3"):
        asker.send(PING, payload)
    asker.send(WHO)
    server.turn_until(lambda: asker.kinds().count(PONG) == 2, "the bucket's two PINGs were not answered")
    assert server.server.peers[asker.fd].paused, "reading goes on while a frame waits"
    asker.send(PING, b"4")
    for _ in range(5):
        server.turn()
    assert asker.kinds().count(PONG) == 2, "a deferred frame was answered before its time"
    server.clock.advance(1.0)
    server.turn_until(lambda: asker.kinds().count(PONG) == 3, "the deferred PING was never answered")
    assert server.server.peers[asker.fd].paused, "the WHO behind it has no token yet"
    server.clock.advance(1.0)
    server.turn_until(lambda: asker.kinds()[-1:] == [MEMBERS], "the WHO was never answered")
    server.clock.advance(1.0)
    server.turn_until(lambda: asker.frames()[-1] == (PONG, b"4"), "the PING read after resuming was lost")
    assert not server.server.peers[asker.fd].paused
    assert [payload for kind, payload in asker.frames() if kind == PONG] == [b"1", b"2", b"3", b"4"]
