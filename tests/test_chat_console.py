"""The server's own terminal (capstone/console.py): commands for the administrator.

Pure first (a line in, an action out; an action against a Room, effects out), then a real
`learn chat serve` whose standard input is a pseudo-terminal, typed on like a person does.
"""

from __future__ import annotations

import os
import pty
import subprocess
import threading

import pytest
from chatserver import ServerProcess, OutputPipe, serve_command

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.console import Announce, Help, Kick, ServerConsole, Unknown, Who, parse_line
from capstone.room import Broadcast, Close, Log, Room, Send
from lessons.toolkit.common import wait_for

LOG_TIMEOUT = 30.0


# ----- pure: a line in, an action out ------------------------------------------------------------

def test_lines_become_actions() -> None:
    assert parse_line("pizza in the kitchen") == Announce("pizza in the kitchen")
    assert parse_line("  spaced  ") == Announce("spaced")
    assert parse_line("/who") == Who()
    assert parse_line("/help") == Help()
    assert parse_line("/kick bob") == Kick("bob")
    assert parse_line("/kick  Li Lei ") == Kick("Li Lei")
    assert parse_line("/kick") == Unknown("/kick")  # a kick needs a name: answered with the usage
    assert parse_line("/nope") == Unknown("/nope")
    assert parse_line("//who") == Announce("/who")
    assert parse_line("/etc/hosts was edited") == Announce("/etc/hosts was edited")
    assert parse_line("   ") is None


def joined_room(*names: str) -> Room:
    room = Room()
    for conn, name in enumerate(names, start=10):
        room.connect(conn, 0.0)
        room.receive(conn, Kind.JOIN, name.encode(), 0.0)
    return room


def log_lines(effects: list) -> list[str]:
    return [effect.text for effect in effects if isinstance(effect, Log)]


def test_who_help_and_unknown_are_answered_in_the_log_only() -> None:
    """Finding 8: "/who" typed on the console was announced to everyone."""
    console = ServerConsole()
    room = joined_room("bob", "carol")
    who = console.perform(Who(), room)
    assert who == [Log("admin", "2 members: bob, carol")]
    assert console.perform(Who(), Room()) == [Log("admin", "the room is empty")]
    assert console.perform(Who(), joined_room("bob")) == [Log("admin", "1 member: bob")]
    help_lines = log_lines(console.perform(Help(), room))
    assert all(not isinstance(effect, Broadcast) for effect in console.perform(Help(), room))
    for command in ("/who", "/kick NAME", "/help", "//"):
        assert any(command in line for line in help_lines), command
    refused = console.perform(Unknown("/nope"), room)
    assert len(refused) == 1 and "/nope" in refused[0].text and "/help" in refused[0].text


def test_kick_removes_the_member_or_says_nobody_is_called_that() -> None:
    console = ServerConsole()
    room = joined_room("bob", "carol")
    effects = console.perform(Kick("BOB"), room)
    assert Send(10, codec.encode_error(ErrorCode.KICKED, "the administrator removed you")) in effects
    assert Close(10) in effects and Broadcast(codec.encode_text(Kind.LEFT, "bob")) in effects
    assert room.member_names() == ["carol"]
    assert console.perform(Kick("dave"), room) == [Log("admin", "nobody in the room is called dave")]


def test_an_announcement_goes_to_every_member() -> None:
    effects = ServerConsole().perform(Announce("hello"), joined_room("bob"))
    assert Broadcast(codec.encode_text(Kind.ANNOUNCE, "hello")) in effects


def test_bytes_are_split_into_lines_and_the_end_is_said_once() -> None:
    """Finding 11: Ctrl-D switched announcements off without a word."""
    console = ServerConsole()
    room = joined_room("bob")
    assert console.feed(b"hel", room) == []
    (effects,) = console.feed(b"lo\n", room)
    assert Broadcast(codec.encode_text(Kind.ANNOUNCE, "hello")) in effects
    *rest, closing = console.feed(b"partial", room) + console.feed(b"", room)
    assert rest and Broadcast(codec.encode_text(Kind.ANNOUNCE, "partial")) in rest[0]
    (line,) = log_lines(closing)
    assert "Ctrl-D" in line and "learn chat admin" in line


# ----- a real server, its console a pseudo-terminal ---------------------------------------------

class ConsoleServer(ServerProcess):
    """`learn chat serve --port 0` whose stdin is a terminal we type on."""

    def __init__(self, engine: str) -> None:  # noqa: D107 - same fields as ServerProcess, stdin a pty
        self.options = ["--port", "0", "--engine", engine]
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(serve_command(*self.options), stdin=slave, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
        os.close(slave)
        self.stdout = OutputPipe(self.process.stdout)
        self.stderr = OutputPipe(self.process.stderr)
        self.address, self.unix_path, self.admin_path = None, None, ""
        self.echo = threading.Thread(target=self._drain_echo, daemon=True)  # the pty echoes what we type
        self.echo.start()

    def _drain_echo(self) -> None:
        while True:
            try:
                if not os.read(self.master, 4096):
                    return
            except OSError:
                return

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_log(self, text: str) -> str:
        try:
            wait_for(lambda: text in self.stdout.text, LOG_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no log line with {text!r}; {self.diagnostics()}") from None
        return next(line for line in self.stdout.text.split("\n") if text in line)

    def stop(self) -> None:
        super().stop()
        os.close(self.master)


@pytest.fixture(params=["epoll", "fork"])
def console_server(request):
    server = ConsoleServer(request.param)
    try:
        server._read_banner()
        yield server
    finally:
        server.stop()


def test_the_console_answers_commands_and_announces_other_lines(console_server) -> None:
    server = console_server
    server.wait_log("/help lists the console's commands")
    bob = server.connect("bob")
    carol = server.connect("carol")
    try:
        bob.join("bob")
        carol.join("carol")
        bob.expect(Kind.JOINED, "carol")
        server.type("/who\n")
        server.wait_log("2 members: bob, carol")
        server.type("/help\n")
        server.wait_log("/kick NAME")
        server.type("/nope\n")
        server.wait_log("there is no console command /nope")
        server.type("/kick dave\n")
        server.wait_log("nobody in the room is called dave")
        server.type("/kick\n")
        server.wait_log("/kick needs the member's name")
        server.type("//who is hungry?\n")
        for member in (bob, carol):  # the first broadcast: none of the commands went out
            member.expect(Kind.ANNOUNCE, "/who is hungry?")
        server.type("/kick carol\n")
        carol.expect_error(ErrorCode.KICKED)
        bob.expect(Kind.LEFT, "carol")
        server.type("pizza in the kitchen\n")
        bob.expect(Kind.ANNOUNCE, "pizza in the kitchen")
        server.type("\x04")  # Ctrl-D
        server.wait_log("Ctrl-D")
        bob.assert_quiet()
    finally:
        bob.close()
        carol.close()
