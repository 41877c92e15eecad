"""The checks every echo-server exercise shares (poll-echo, epoll-edge, unix-server).

A check file imports these tests with `from lessons.exercises.echo_battery import *`
and defines one fixture, `server`, that starts the learner's server and yields an
`EchoServer`. Every test here then runs against it: a polite client first, then the
hostile peers of peers.py. Failures say what the *client* saw, in the lesson's terms.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pytest

from lessons.exercises import peers
from lessons.exercises.harness import LearnerThread, is_todo, listener_on_loopback, patience, short
from lessons.toolkit.i18n import N_, _

STOP_SECONDS = patience(5.0)  # a server must return this soon after `stop` is set
CROWD = 100

__all__ = [
    "EchoServer", "expect_echo", "serving_on_loopback", "holding_accepted", "test_echoes_what_one_client_sends",
    "test_serves_a_second_client_while_the_first_is_silent", "test_keeps_serving_after_a_client_leaves",
    "test_survives_a_client_that_resets_mid_message", "test_answers_a_half_closed_client_then_closes",
    "test_bytes_sent_one_at_a_time_come_back_in_order", "test_a_large_merged_send_comes_back_whole",
    "test_a_hundred_clients_at_once", "test_returns_soon_after_stop_is_set",
]


@dataclass
class EchoServer:
    """The learner's server as the checks see it: an address, a thread, a stop flag."""

    address: peers.Address
    thread: LearnerThread
    stop: threading.Event
    clients: list[socket.socket] = field(default_factory=list)
    listener: socket.socket | None = None  # for checks that look at how it is registered
    accepted: list[socket.socket] = field(default_factory=list)  # every socket its accept() returned

    def connect(self) -> socket.socket:
        sock = peers.connect(self.address)
        self.clients.append(sock)
        return sock

    def stopped(self) -> bool:
        """The server's thread ended (it crashed, or returned early): no reason to wait for it."""
        return not self.thread.running

    def read(self, sock: socket.socket, count: int, timeout: float = peers.DEADLINE) -> bytes:
        return peers.read_exactly(sock, count, timeout, give_up=self.stopped)

    def fail_if_crashed(self, when: str = "") -> None:
        """A crash is reported as what it is; the stub's NotImplementedError is raised as-is.

        `when` (translated, e.g. " while stopping") says when it happened, after the crash."""
        error = self.thread.error
        if error is None:
            return
        if is_todo(error):
            raise error
        note = ""
        if isinstance(error, KeyError):
            note = _(" That is the notes' bug: the socket was looked up in the fd map after it had "
                     "been deleted from it; take it out of the map only when you are done with it.")
        pytest.fail(_("{crash}{when}.").format(crash=self.thread.crash_text(), when=when) + note, pytrace=False)

    def shut_down(self) -> None:
        """Teardown: stop the server, close our clients; a crash nobody noticed yet fails here."""
        self.stop.set()
        self.thread.join(STOP_SECONDS)
        peers.close_all(self.clients)
        self.fail_if_crashed()


@contextmanager
def holding_accepted(accepted: list[socket.socket]) -> Iterator[None]:
    """While inside, every socket accept() returns is also kept in `accepted`.

    A client socket the server forgets without close() would otherwise be closed anyway,
    by the garbage collector, as soon as the server drops it (or returns): the client
    would see EOF and a server that never closes anything would pass. Holding one more
    reference keeps such a socket open, so the client sees only the closes the server made.
    """
    original = socket.socket.accept

    def accept_and_keep(self: socket.socket) -> tuple[socket.socket, object]:
        sock, address = original(self)
        accepted.append(sock)
        return sock, address

    socket.socket.accept = accept_and_keep  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.accept = original  # type: ignore[method-assign]
        for sock in accepted:
            sock.close()


@contextmanager
def serving_on_loopback(serve: Callable) -> Iterator[EchoServer]:
    """The learner's serve(listener, stop) in a thread, on a free loopback port (port 0)."""
    listener = listener_on_loopback()
    stop = threading.Event()
    running = EchoServer(listener.getsockname(), LearnerThread(serve, listener, stop), stop, listener=listener)
    try:
        with holding_accepted(running.accepted):
            running.thread.start()
            yield running
            running.shut_down()
    finally:
        listener.close()


def wait_until_waiting(thread: LearnerThread, timeout: float = 2.0) -> None:
    """Until the server's thread sleeps in the kernel (state S: in poll(), select(), recv()), or the timeout."""
    path = f"/proc/self/task/{thread.thread.native_id}/stat"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if open(path).read().rpartition(")")[2].split()[0] == "S":
                return
        except (OSError, IndexError):
            return  # the thread has ended: nothing to wait for
        time.sleep(0.005)


CRASH_GRACE = 0.5  # seconds: how long a closed connection may wait for its server thread's crash


def expect_echo(server: EchoServer, sock: socket.socket, data: bytes, situation: str = "") -> None:
    """Read len(data) bytes back; if they do not come, say what the client saw (`situation`: translated)."""
    got = server.read(sock, len(data))
    if got == data:
        return
    when = f" {situation}" if situation else ""
    server.fail_if_crashed(when)
    if peers.closed_by_peer(sock, 0.2):
        # a server thread that crashed closes its sockets a moment before its error is recorded
        server.thread.join(CRASH_GRACE)
        server.fail_if_crashed(when)
        pytest.fail(_("your server closed the connection{when}: the client had sent {sent} "
                      "and got back {got} before the connection ended.").format(
            when=when, sent=short(data), got=short(got)), pytrace=False)
    if got and data.startswith(got):
        pytest.fail(_("the client sent {sent} bytes{when} and got only the first {got} back "
                      "within {seconds} s: keep reading (and answering) until everything has "
                      "come through.").format(sent=len(data), when=when, got=len(got),
                                              seconds=f"{peers.DEADLINE:g}"), pytrace=False)
    pytest.fail(_("the client sent {sent}{when} and got back {got} within {seconds} s; an echo server "
                  "answers with exactly the bytes it received.").format(
        sent=short(data), when=when, got=short(got), seconds=f"{peers.DEADLINE:g}"), pytrace=False)


@pytest.mark.title(N_("Echoes what one client sends"))
def test_echoes_what_one_client_sends(server: EchoServer) -> None:
    client = server.connect()
    client.sendall(b"hello, poll\n")
    expect_echo(server, client, b"hello, poll\n")


@pytest.mark.title(N_("Serves a second client while the first is connected and silent (a stalled peer)"))
def test_serves_a_second_client_while_the_first_is_silent(server: EchoServer) -> None:
    silent = peers.stall(server.address, b"half a mess")
    server.clients.append(silent)
    second = server.connect()
    second.sendall(b"anyone there?")
    got = server.read(second, 13)
    server.fail_if_crashed()
    if got != b"anyone there?":
        pytest.fail(_("the second client got no answer while the first one was connected and silent: "
                      "your server is waiting on one client's recv(); ask the multiplexer which "
                      "sockets are ready and read only those."), pytrace=False)
    expect_echo(server, silent, b"half a mess", _("while another client was connected"))
    second.sendall(b"!")
    expect_echo(server, second, b"!", _("while another client was connected"))


@pytest.mark.title(N_("Keeps serving after one client leaves (the notes' KeyError)"))
def test_keeps_serving_after_a_client_leaves(server: EchoServer) -> None:
    first, second = server.connect(), server.connect()
    first.sendall(b"first")
    expect_echo(server, first, b"first")
    second.sendall(b"second")
    expect_echo(server, second, b"second")
    first.close()
    second.sendall(b"still here?")
    expect_echo(server, second, b"still here?", _("after the first client left"))
    third = server.connect()
    third.sendall(b"new client")
    expect_echo(server, third, b"new client", _("to a client that connected after the first one left"))


@pytest.mark.title(N_("Survives a client that resets the connection mid-message (RST, ECONNRESET)"))
def test_survives_a_client_that_resets_mid_message(server: EchoServer) -> None:
    other = server.connect()
    rude = peers.connect(server.address)
    rude.sendall(b"this message is cut sh")
    peers.reset(rude)
    other.sendall(b"are you alive?")
    expect_echo(server, other, b"are you alive?",
                _("after another client reset its connection (recv() raises ConnectionResetError then)"))
    # On a busy machine the reset and that message can come out of one poll() together, and
    # the answer leave just before a server that does not catch the reset dies on it: only
    # an answer to a message sent after that round shows the server lived through the reset.
    other.sendall(b"still there?")
    expect_echo(server, other, b"still there?",
                _("after another client reset its connection (recv() raises ConnectionResetError then)"))


@pytest.mark.title(N_("Answers a client that half-closes (shutdown SHUT_WR), then closes that connection"))
def test_answers_a_half_closed_client_then_closes(server: EchoServer) -> None:
    client = server.connect()
    client.sendall(b"last words")
    peers.half_close(client)
    data, closed = peers.read_to_eof(client, give_up=server.stopped)
    if data != b"last words":
        expect_echo(server, client, b"last words", _("and then shut down its sending side"))
    if not closed:
        server.fail_if_crashed(" " + _("after the client shut down its sending side"))
        pytest.fail(_("after the client's shutdown(SHUT_WR) your server answered but kept the "
                      "connection open for {seconds} s: recv() returning b'' means the client "
                      "has finished sending; close that socket.").format(seconds=f"{peers.DEADLINE:g}"),
                    pytrace=False)
    other = server.connect()
    other.sendall(b"next")
    expect_echo(server, other, b"next", _("after a client half-closed its connection"))


@pytest.mark.title(N_("Bytes sent one per send() come back complete and in order"))
def test_bytes_sent_one_at_a_time_come_back_in_order(server: EchoServer) -> None:
    client = server.connect()
    message = b"split into single bytes, every one its own segment"
    peers.send_bytewise(client, message)
    expect_echo(server, client, message, _("one byte per send()"))


@pytest.mark.title(N_("Several messages merged into one large send come back whole (64 KiB)"))
def test_a_large_merged_send_comes_back_whole(server: EchoServer) -> None:
    client = server.connect()
    messages = [f"message {n:05d}\n".encode() for n in range(4096)]  # 4096 * 16 bytes = 64 KiB
    sender = peers.in_background(lambda: peers.send_merged(client, messages))  # send and read at once
    expect_echo(server, client, b"".join(messages), _("in one send()"))
    sender.join(peers.DEADLINE)


@pytest.mark.limit(60)
@pytest.mark.title(N_("A hundred clients connect at once, and every one gets its own bytes back"))
def test_a_hundred_clients_at_once(server: EchoServer) -> None:
    crowd = peers.crowd(server.address, CROWD)
    server.clients.extend(crowd)
    for number, sock in enumerate(crowd):
        sock.sendall(f"client {number:03d}".encode())
    deadline = time.monotonic() + 3 * peers.DEADLINE
    answered = 0
    for number, sock in enumerate(crowd):
        expected = f"client {number:03d}".encode()
        if server.read(sock, len(expected), max(0.2, deadline - time.monotonic())) == expected:
            answered += 1
        elif server.stopped():
            break
    if answered < CROWD:
        server.fail_if_crashed(" " + _("while {n} clients were connected").format(n=CROWD))
    assert answered == CROWD, _(
        "only {answered} of {n} clients that connected at once got their own bytes back: "
        "accept every pending connection and keep them all registered.").format(answered=answered, n=CROWD)


@pytest.mark.title(N_("Returns soon after stop is set, and closes its clients"))
def test_returns_soon_after_stop_is_set(server: EchoServer) -> None:
    client = server.connect()
    client.sendall(b"ping")
    expect_echo(server, client, b"ping")
    wait_until_waiting(server.thread)  # set while it waits, not while it is about to look at stop anyway
    server.stop.set()
    if not server.thread.join(STOP_SECONDS):
        pytest.fail(_("your server was still running {seconds} s after stop was set: wait with "
                      "a timeout (poll() counts milliseconds, epoll and select seconds) and look at "
                      "stop.is_set() every time the wait returns.").format(seconds=f"{STOP_SECONDS:g}"),
                    pytrace=False)
    server.fail_if_crashed(" " + _("while stopping"))
    left_open = [sock for sock in server.accepted if sock.fileno() != -1]
    if peers.closed_by_peer(client, 1.0) is not True or left_open:  # it has returned: any close is made
        pytest.fail(_("your server returned but left {open} of {total} client connections open: close every "
                      "client socket before returning (the garbage collector closing them some time later "
                      "is not the same thing).").format(open=len(left_open) or 1, total=len(server.accepted)),
                    pytrace=False)
