"""`--demo` for the four echo servers: the server plus three scripted clients, narrated.

The server loop runs in the main thread exactly as it does without --demo; the clients
(alice, bob and carol) run in one background thread. Each step waits for what it
expects (an answer, the server noticing a departure) with a deadline instead of a
sleep, so the story prints in the order things happen and ends by itself.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

from lessons.toolkit.common import RunFailure, wait_for
from lessons.toolkit.i18n import _, ngettext
from lessons.echo_driver import (
    RECV_SIZE,
    REPLY_PREFIX,
    EchoLog,
    StopFlag,
    echoed,
    preview,
    read_answer,
)

STEP_TIMEOUT = 5.0  # the longest any single step may take before the demo gives up
STALL_WAIT = 1.0  # how long the server may stop reading the long message before we call it stuck
ARRIVED = 0.2  # enough to read bytes the server has already sent over loopback
LONG_MESSAGE = b"x" * 3000  # longer than one recv(RECV_SIZE)

Say = Callable[[str, str], None]


def wait_until(condition: Callable[[], object], timeout: float) -> bool:
    """True as soon as `condition()` holds, False if it still does not after `timeout` seconds."""
    try:
        wait_for(condition, timeout, interval=0.005)
    except TimeoutError:
        return False
    return True


class DemoClient:
    """One scripted client that narrates what it does."""

    def __init__(self, name: str, address: tuple, say: Say) -> None:
        self.name = name
        self.say = say
        say("client", _("{name} connects").format(name=name))
        self.sock = socket.create_connection(address, timeout=STEP_TIMEOUT)

    def ask(self, text: str) -> None:
        """Send `text` and wait until its whole answer is back."""
        message = text.encode()
        self.say("client", _("{name} sends '{text}'").format(name=self.name, text=preview(message)))
        self.sock.sendall(message)
        answer = read_answer(self.sock, message, STEP_TIMEOUT)
        if not answer.complete:
            raise RuntimeError(_("{name} got no complete answer within {seconds} s").format(name=self.name, seconds=STEP_TIMEOUT))
        self.say("client", _("{name} got '{text}'").format(name=self.name, text=preview(answer.data)))

    def reset(self) -> None:
        """Leave rudely: SO_LINGER on with a 0 s timeout makes close() send RST, not FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class DemoRun:
    """The clients' thread; a failure is kept and reported after the server's summary."""

    def __init__(self, address: tuple, log: EchoLog, stop: StopFlag, script: Callable[[tuple, EchoLog, StopFlag], None]) -> None:
        self.failure: Exception | None = None
        self.script = script
        self.thread = threading.Thread(target=self._run, args=(address, log, stop), daemon=True)

    def _run(self, address: tuple, log: EchoLog, stop: StopFlag) -> None:
        try:
            self.script(address, log, stop)
        except Exception as err:  # a broken demo must still stop the server, then explain
            if not stop.is_set():
                self.failure = err
            stop.stop(_("the demo failed"))
        else:
            stop.stop(_("the demo is over"))

    def start(self) -> DemoRun:
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(STEP_TIMEOUT)

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise RunFailure(_("the demo went wrong: {failure}.").format(failure=self.failure))


def start(address: tuple, log: EchoLog, stop: StopFlag) -> DemoRun:
    """Start the clients' thread: alice, bob and carol (run_server's `demo`)."""
    return DemoRun(address, log, stop, story).start()


def start_notes_bug(address: tuple, log: EchoLog, stop: StopFlag) -> DemoRun:
    """Start the short story of the notes' KeyError (poll-server --notes-bug --demo)."""
    return DemoRun(address, log, stop, notes_bug_story).start()


def story(address: tuple, log: EchoLog, stop: StopFlag) -> None:
    """Three clients, one server thread: connect, talk, a long message, a reset, a half-close."""
    Story(address, log, stop).tell()


def all_back_text(name: str, size: int, answers: int) -> str:
    """'alice got all 3000 bytes back, in 3 answers' (or 'in 1 answer')."""
    return ngettext("{name} got all {size} bytes back, in {count} answer",
                    "{name} got all {size} bytes back, in {count} answers", answers).format(
        name=name, size=size, count=answers)


def pieces_text(pieces: int) -> str:
    if pieces == 1:
        return _("the server read the whole message with one recv() this time; make RECV_SIZE smaller "
                 "(lessons/echo_driver.py) and it takes several: one recv() is not one message.")
    return _("the server read the message in {count} pieces: TCP carries a stream of bytes, not messages, "
             "so one recv() is not one message.").format(count=pieces)


def notes_bug_story(address: tuple, log: EchoLog, stop: StopFlag) -> None:
    """Two clients, one leaves: the notes' server dies of a KeyError and takes the other one with it."""
    Story(address, log, stop).tell_notes_bug()


class Story:
    def __init__(self, address: tuple, log: EchoLog, stop: StopFlag) -> None:
        self.address = address
        self.log = log
        self.stats = log.stats  # the server's counters: how the clients see what it noticed
        self.stop = stop
        self.say = log.narrate

    def server_sees(self, condition: Callable[[], object], what: str) -> bool:
        """Wait until the server has noticed something, so the log reads in causal order."""
        if wait_until(lambda: condition() or self.stop.is_set(), STEP_TIMEOUT) and not self.stop.is_set():
            return True
        self.say("demo", _("the server has not noticed {what} after {seconds} s.").format(what=what, seconds=STEP_TIMEOUT))
        return False

    def connect(self, name: str) -> DemoClient:
        accepted = self.stats.accepted
        client = DemoClient(name, self.address, self.say)
        self.server_sees(lambda: self.stats.accepted > accepted, _("{name} connecting").format(name=name))
        return client

    def tell(self) -> None:
        say = self.say
        self.log.serving.wait(STEP_TIMEOUT)  # so the server's first lines come before the first client
        say("demo", _("One server, one thread, several clients: {call}() tells the server which "
                      "socket has something to read, so nobody waits for anybody.").format(call=self.log.call))
        alice = self.connect("alice")
        alice.ask("hello")
        say("demo", _("bob connects while alice is still connected; the same thread serves both."))
        bob = self.connect("bob")
        bob.ask(_("你好, I am bob"))
        alice.ask(_("alice is still here"))

        if not self.long_message(alice):
            say("demo", _("a server that falls behind like this would spoil the rest of the story "
                          "(it can miss a client's EOF the same way), so the demo stops here."))
            alice.close()
            bob.close()
            return

        say("demo", _("carol will leave rudely, with a reset (RST) instead of a polite close (FIN)."))
        carol = self.connect("carol")
        carol.ask(_("bye soon"))
        say("client", _("carol resets: SO_LINGER {on, 0 s}, then close() sends RST"))
        closed = self.stats.closed
        carol.reset()
        if self.server_sees(lambda: self.stats.closed > closed, _("carol's reset")):
            say("demo", _("only carol was dropped; one client's error never stops the server."))

        self.half_close(bob)

        say("client", _("alice closes politely: close() sends FIN, the server's recv() returns b''"))
        closed = self.stats.closed
        alice.close()
        self.server_sees(lambda: self.stats.closed > closed, _("alice leaving"))
        say("demo", _("everyone has left: the demo stops the server."))

    def tell_notes_bug(self) -> None:
        say = self.say
        self.log.serving.wait(STEP_TIMEOUT)
        say("demo", _("This is the notes' poll server, bug included. Two clients connect; then one leaves."))
        alice = self.connect("alice")
        alice.ask("hello")
        bob = self.connect("bob")
        bob.ask(_("hi, I am bob"))
        say("client", _("alice closes politely: close() sends FIN, the server's recv() returns b''"))
        alice.close()
        if not wait_until(self.stop.is_set, STEP_TIMEOUT):
            say("demo", _("the server is still running {seconds} s later: the bug did not show.").format(
                seconds=STEP_TIMEOUT))
            bob.close()
            return
        message = b"anyone there?"
        say("client", _("bob sends '{text}'").format(text=preview(message)))
        try:
            bob.sock.sendall(message)
            answer = read_answer(bob.sock, message, STEP_TIMEOUT)
        except OSError:
            answer = None
        if answer is None or answer.closed:
            say("client", _("bob gets no answer: his connection was closed when the server died"))
        bob.close()
        say("demo", _("one client leaving took the server down for everybody. Run it without --notes-bug: "
                      "the fixed server drops alice only and goes on serving bob."))

    def long_message(self, alice: DemoClient) -> bool:
        """A message longer than one recv(): True if all of it came back, False if it got stuck."""
        say, size = self.say, len(LONG_MESSAGE)
        say("client", _("alice sends one message of {size} bytes, more than one recv({recv_size}) "
                        "takes").format(size=size, recv_size=RECV_SIZE))
        target = self.stats.bytes_in + size
        alice.sock.sendall(LONG_MESSAGE)
        if self.server_keeps_reading(target):
            answer = read_answer(alice.sock, LONG_MESSAGE, STEP_TIMEOUT)
            pieces = answer.data.count(REPLY_PREFIX)
            say("client", all_back_text("alice", len(echoed(answer.data)), pieces))
            say("demo", pieces_text(pieces))
            return True
        answer = read_answer(alice.sock, LONG_MESSAGE, ARRIVED)
        say("client", _("alice got only {got} of {size} bytes back, and nothing more").format(
            got=len(echoed(answer.data)), size=size))
        say("demo", _("stuck: the rest waits in the kernel's buffer, but edge-triggered epoll "
                      "reports a socket once per arrival of data, and this server read it only "
                      "once (--no-drain)."))
        answered = self.stats.bytes_out
        alice.sock.sendall(b"!")
        wait_until(lambda: self.stats.bytes_out > answered, STEP_TIMEOUT)
        nudged = read_answer(alice.sock, b"!", ARRIVED)
        say("client", _("alice sends '!' to nudge it and gets '{preview}'").format(preview=preview(nudged.data)))
        say("demo", _("the new byte made a new edge, but the server answered with OLD bytes: it is "
                      "now always behind. Reading until EAGAIN on every event (the default) avoids "
                      "this."))
        return False

    def server_keeps_reading(self, target: int) -> bool:
        """True once the server has read `target` bytes in all; False if it stops for STALL_WAIT s first."""
        last_seen, last_change = self.stats.bytes_in, time.monotonic()
        while self.stats.bytes_in < target:
            if self.stats.bytes_in != last_seen:
                last_seen, last_change = self.stats.bytes_in, time.monotonic()
            elif time.monotonic() - last_change > STALL_WAIT:
                return False
            time.sleep(0.005)  # polling a counter with a deadline, not ordering by sleep
        return True

    def half_close(self, bob: DemoClient) -> None:
        """shutdown(SHUT_WR) says "I will send no more" but leaves bob able to read."""
        self.say("client", _("bob sends 'last words', then half-closes: shutdown(SHUT_WR) sends "
                             "FIN but bob can still read"))
        closed = self.stats.closed
        bob.sock.sendall(b"last words")
        bob.sock.shutdown(socket.SHUT_WR)
        answer = read_answer(bob.sock, b"last words", STEP_TIMEOUT)
        self.say("client", _("bob still got his answer: '{preview}'").format(preview=preview(answer.data)))
        if self.server_sees(lambda: self.stats.closed > closed, _("bob's half-close")):
            end = bob.sock.recv(1)
            self.say("client", _("then bob's recv() returns {data!r}: the server closed its side too").format(data=end))
        bob.close()
