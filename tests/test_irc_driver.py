"""The driver with IRC peers in-process: socket pairs, a fake clock, no waiting (as test_driver.py)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import pytest

from capstone.irc.session import IrcNetwork
from capstone.multiplexers import PollBackend
from capstone.room import Limits
from capstone.server import IRC_SWEEP, ChatServer, Listeners
from test_driver import FakeClock

HEADER = struct.Struct("!IB")
JOIN, SAY, WELCOME, LEFT = 0x01, 0x02, 0x81, 0x84


@dataclass(frozen=True)
class CountingNetwork(IrcNetwork):
    """Counts how often a broadcast is turned into IRC lines."""

    translated: list = field(default_factory=list, compare=False)

    def from_broadcast(self, data: bytes) -> bytes:
        self.translated.append(data)
        return super().from_broadcast(data)


class Far:
    """The test's end of one connection."""

    def __init__(self, sock: socket.socket, fd: int) -> None:
        self.sock, self.fd, self.received, self.ended = sock, fd, b"", False
        sock.setblocking(False)

    def read(self) -> bytes:
        while not self.ended:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            self.received += data
            self.ended = not data
        return self.received


@pytest.fixture
def server():
    clock = FakeClock()
    chat, irc = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    network = CountingNetwork(idle_ping=90, ping_timeout=60)
    running = ChatServer(Listeners(chat, irc=irc), PollBackend(), Limits(join_timeout=0), lambda *line: None,
                         clock=clock, irc=network)
    running.start()
    running.clock_, running.network = clock, network

    def connect(irc: bool) -> Far:
        near, far = socket.socketpair()
        fd = running.adopt(near, None, irc=irc)
        return Far(far, fd)

    running.connect = connect
    yield running
    running.close_everything()


def turn_until(server: ChatServer, condition, why: str) -> None:  # noqa: ANN001
    for _ in range(200):
        if condition():
            return
        server.run_once(0)
    assert condition(), why


def irc_member(server: ChatServer, nick: str) -> Far:
    far = server.connect(irc=True)
    far.sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    turn_until(server, lambda: b" 366 " in far.read(), f"{nick} was never welcomed")
    far.received = b""
    return far


def test_a_broadcast_is_turned_into_irc_lines_once_for_every_irc_reader(server):
    bob, cy = irc_member(server, "bob"), irc_member(server, "cy")
    server.network.translated.clear()  # "cy joined" went to bob alone
    ann = server.connect(irc=False)
    ann.sock.sendall(HEADER.pack(3, JOIN) + b"ann" + HEADER.pack(5, SAY) + b"hello")
    line = b":ann!chat@learn.chat PRIVMSG #chat :hello\r\n"
    turn_until(server, lambda: bob.read().endswith(line) and cy.read().endswith(line), "hello did not reach both")
    assert len(server.network.translated) == 2  # JOINED ann, then the MESSAGE: once each, not once per reader


def test_a_silent_irc_client_is_pinged_then_dropped_and_the_others_hear_left(server):
    bob = irc_member(server, "bob")
    ann = server.connect(irc=False)
    ann.sock.sendall(HEADER.pack(3, JOIN) + b"ann")
    turn_until(server, lambda: ann.read().startswith(HEADER.pack(3, WELCOME)), "ann was never welcomed")
    server.clock_.advance(90 + IRC_SWEEP)
    turn_until(server, lambda: b"PING learn.chat\r\n" in bob.read(), "bob was never pinged")
    server.clock_.advance(60 + IRC_SWEEP)
    turn_until(server, lambda: bob.read().endswith(b"(Ping timeout: 60 seconds)\r\n"), "bob was never dropped")
    turn_until(server, lambda: ann.read().endswith(HEADER.pack(3, LEFT) + b"bob"), "ann never heard bob leave")


def test_a_client_that_answers_the_ping_stays(server):
    bob = irc_member(server, "bob")
    server.clock_.advance(90 + IRC_SWEEP)
    turn_until(server, lambda: b"PING learn.chat\r\n" in bob.read(), "bob was never pinged")
    bob.sock.sendall(b"PONG learn.chat\r\n")
    server.run_once(0)
    server.clock_.advance(60 + IRC_SWEEP)
    server.run_once(0)
    assert bob.fd in server.peers and b"ERROR" not in bob.read()
