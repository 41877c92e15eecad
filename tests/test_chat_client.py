"""`learn chat join`: the pure parts, then the real client against a real server.

Every process test runs `python -m lessons chat serve --port 0` and clients as real
subprocesses in pipe mode (stdin a pipe), reading their output lines with deadlines:
a test waits for "you are in the room as bob" before the next step, never sleeps.
The interactive mode is driven through a pseudo-terminal, the way a person uses it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chatserver import ChatServer, OutputPipe

from capstone import codec
from capstone.client import (
    CONTINUATION, TEXTS, Ended, LineSplitter, Shown, Target, View, display_name, frame_for_line, join_room,
)
from capstone.codec import ErrorCode, Kind
from lessons.common import UserError
from lessons.framing import Frame

LINE_TIMEOUT = 30.0  # seconds to wait for one expected line; generous for a busy 2-core machine
DOCS = Path(__file__).resolve().parent.parent / "docs"


def frame(kind: Kind, payload: bytes | str = b"") -> Frame:
    data = payload.encode() if isinstance(payload, str) else payload
    return Frame((kind,), data)


# ----- pure: what the user sees ---------------------------------------------------------------

def test_both_languages_have_every_string() -> None:
    assert TEXTS["en"].keys() == TEXTS["zh"].keys()


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", ["alice entered the room", "alice: hi", "alice left the room", "[admin] hello"]),
    ("zh", ["alice 进入了聊天室", "alice 说: hi", "alice 退出了聊天室", "管理员: hello"]),
])
def test_events_in_each_language(lang: str, expected: list[str]) -> None:
    view = View(lang)
    frames = [frame(Kind.JOINED, "alice"), Frame((Kind.MESSAGE,), codec.encode_message("alice", "hi")[5:]),
              frame(Kind.LEFT, "alice"), frame(Kind.ANNOUNCE, "hello")]
    assert [view.frame(item).lines[0] for item in frames] == expected


def test_names_that_could_pass_for_something_else_are_quoted() -> None:
    assert display_name("alice") == "alice"
    assert display_name("李雷") == "李雷"
    assert display_name("Li Lei") == "Li Lei"
    assert display_name("[/]") == '"[/]"'
    assert display_name("[admin] x") == '"[admin] x"'
    assert display_name("bob: hi") == '"bob: hi"'
    assert display_name('say "x"') == '"say \\"x\\""'
    assert display_name("evil\x1b[2J") == '"evil\\x1b[2J"'
    assert display_name("  | x") == '"  | x"'


def test_a_multi_line_message_cannot_pass_for_other_lines() -> None:
    shown = View().frame(Frame((Kind.MESSAGE,), codec.encode_message("[/]", "one\nbob: fake\r\x1b[2J\ttab")[5:]))
    assert shown == Shown("message", ('"[/]": one', CONTINUATION + "bob: fake\\x0d\\x1b[2J    tab"))


def test_a_hostile_server_cannot_reach_the_terminal() -> None:
    """Our server refuses control characters in names and SAY, but a client trusts nobody."""
    view = View()
    for item in (frame(Kind.JOINED, "x\x1b]0;owned\x07"), frame(Kind.ANNOUNCE, "\x9b31m\u202eabc"),
                 frame(Kind.MEMBERS, "a\x1bb\nc"), frame(Kind.ERROR, b"\x07\x1b[5m")):
        shown = view.frame(item)
        assert isinstance(shown, Shown)
        for line in shown.lines:
            assert not any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 or char == "\u202e" for char in line), line


def test_errors_that_end_the_chat() -> None:
    view = View()
    assert view.frame(frame(Kind.ERROR, bytes([ErrorCode.SHUTDOWN]) + b"bye")) == Ended(TEXTS["en"]["shutdown"])
    assert view.frame(frame(Kind.ERROR, bytes([ErrorCode.KICKED]) + b"out")) == Ended(TEXTS["en"]["kicked"])
    rate = view.frame(frame(Kind.ERROR, bytes([ErrorCode.RATE_LIMITED]) + b"slow down"))
    assert rate == Shown("problem", ("the server refused that: slow down",))
    assert view.frame(frame(Kind.PONG, b"x")) is None


def test_input_lines_become_frames() -> None:
    assert frame_for_line("hello") == codec.encode_text(Kind.SAY, "hello")
    assert frame_for_line("/who") == codec.encode(Kind.WHO)
    assert frame_for_line(" /quit ") == "/quit"
    assert frame_for_line("//who") == codec.encode_text(Kind.SAY, "/who")
    assert frame_for_line("/etc is a directory") == codec.encode_text(Kind.SAY, "/etc is a directory")
    assert frame_for_line("   ") is None


def test_line_splitter_handles_pieces_crlf_and_bad_utf8() -> None:
    lines = LineSplitter()
    assert lines.feed(b"he") == []
    assert lines.feed(b"llo\r\nw\xff") == ["hello"]
    assert lines.feed("é\nlast".encode()) == ["w\ufffdé"]
    assert lines.finish() == ["last"]
    assert lines.finish() == []


# ----- joining: reconnect when the join timeout ran out while the user was typing ---------------

@pytest.mark.timeout(30)
def test_join_reconnects_once_when_the_server_timed_the_connection_out() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    seen: list[bytes] = []

    def fake_server() -> None:
        for reply in (codec.encode_error(ErrorCode.TIMEOUT, "no JOIN within 10 seconds"),
                      codec.encode_text(Kind.WELCOME, "zoe")):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(20)
                seen.append(conn.recv(100))
                conn.sendall(reply)
                if reply[4] == Kind.WELCOME:
                    conn.recv(100)  # hold the connection until the client closes it

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()

    def never_asked(problem: str | None) -> str | None:
        raise AssertionError(f"asked for a name again: {problem}")

    try:
        link, welcome = join_room(Target(port=listener.getsockname()[1]), View(), "zoe", never_asked)
        link.close()
        thread.join(20)
    finally:
        listener.close()
    assert welcome.lines == ("you are in the room as zoe",)
    assert seen == [codec.encode_text(Kind.JOIN, "zoe")] * 2


@pytest.mark.timeout(30)
def test_a_name_refused_in_pipe_mode_is_one_sentence() -> None:
    """ask_name of pipe mode raises UserError with the server's reason."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def fake_server() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            conn.recv(100)
            conn.sendall(codec.encode_error(ErrorCode.NAME_INVALID, "the name 'admin' is reserved"))
            conn.recv(100)

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()

    def refuse(problem: str | None) -> str | None:
        raise UserError(problem or "no name")

    try:
        with pytest.raises(UserError, match=r"^cannot join: the name 'admin' is reserved\.$"):
            join_room(Target(port=listener.getsockname()[1]), View(), "admin", refuse)
        thread.join(20)
    finally:
        listener.close()


# ----- real processes: a server and pipe-mode clients ---------------------------------------------

class Client:
    """One `python -m lessons chat join` in pipe mode; its output read with deadlines."""

    def __init__(self, target: list[str], *options: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lessons", "chat", "join", *target, *options],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = OutputPipe(self.process.stdout)
        self.stderr = OutputPipe(self.process.stderr)

    def send(self, *lines: str) -> None:
        self.process.stdin.write("".join(line + "\n" for line in lines).encode())
        self.process.stdin.flush()

    def end_input(self) -> None:
        self.process.stdin.close()

    def lines(self) -> list[str]:
        return self.stdout.text.split("\n")[:-1]

    def expect(self, wanted: str, timeout: float = LINE_TIMEOUT) -> None:
        """Wait until `wanted` is one of the lines printed so far."""
        deadline = time.monotonic() + timeout
        with self.stdout.changed:
            while wanted not in self.stdout.data.decode(errors="replace").split("\n")[:-1]:
                remaining = deadline - time.monotonic()
                if self.stdout.ended or remaining <= 0:
                    raise AssertionError(f"no line {wanted!r}; {self.diagnostics()}")
                self.stdout.changed.wait(remaining)

    def wait_exit(self, timeout: float = LINE_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"client still running after {timeout} s; {self.diagnostics()}") from None
        self.stdout.wait_ended(timeout)
        self.stderr.wait_ended(timeout)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()

    def diagnostics(self) -> str:
        return f"exit={self.process.poll()} stdout={self.stdout.text!r} stderr={self.stderr.text!r}"


@pytest.fixture
def server():
    with ChatServer.start("--port", "0") as running:
        yield running


@pytest.fixture
def clients(server):
    """Start clients of `server`: clients("--name", "bob"); all killed at the end."""
    started: list[Client] = []

    def start(*options: str) -> Client:
        client = Client(["--port", str(server.port)], *options)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


def error_sentence(client: Client) -> str:
    """stderr must be exactly one line, the CLI's 'error: ...' sentence, and no traceback."""
    text = client.stderr.text
    assert "Traceback" not in text
    lines = text.strip().split("\n")
    assert len(lines) == 1, text
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.timeout(90)
def test_two_clients_chat_and_see_each_other_enter_and_leave(clients) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    alice = clients("--name", "alice")
    alice.expect("you are in the room as alice")
    bob.expect("alice entered the room")
    alice.send("hello")
    bob.expect("alice: hello")
    bob.send("hi alice")
    alice.expect("bob: hi alice")
    alice.end_input()
    assert alice.wait_exit() == 0, alice.diagnostics()
    bob.expect("alice left the room")
    bob.send("/who")
    bob.expect("in the room: bob")
    bob.end_input()
    assert bob.wait_exit() == 0, bob.diagnostics()
    assert alice.lines() == ["you are in the room as alice", "bob: hi alice"]
    assert bob.lines() == ["you are in the room as bob", "alice entered the room", "alice: hello",
                           "alice left the room", "in the room: bob"]
    assert bob.stderr.text == alice.stderr.text == ""


@pytest.mark.timeout(90)
def test_chinese_wording(clients, server) -> None:
    bob = clients("--name", "bob", "--lang", "zh")
    bob.expect("你以 bob 的身份进入了聊天室")
    alice = clients("--name", "alice", "--lang", "zh")
    alice.expect("你以 alice 的身份进入了聊天室")
    bob.expect("alice 进入了聊天室")
    alice.send("你好")
    bob.expect("alice 说: 你好")
    admin = server.admin()
    try:
        admin.send_frame(Kind.ADMIN_SAY, "大家好")
        admin.expect(Kind.OK)
    finally:
        admin.close()
    bob.expect("管理员: 大家好")
    alice.expect("管理员: 大家好")
    alice.end_input()
    assert alice.wait_exit() == 0
    bob.expect("alice 退出了聊天室")


@pytest.mark.timeout(90)
def test_a_taken_or_reserved_name_in_pipe_mode_is_exit_2_with_the_reason(clients) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    second = clients("--name", "BOB")
    assert second.wait_exit() == 2
    assert re.fullmatch(r"error: cannot join: the name BOB is taken\.", error_sentence(second))
    reserved = clients("--name", "admin")
    assert reserved.wait_exit() == 2
    assert "reserved" in error_sentence(reserved)
    nameless = clients()
    assert nameless.wait_exit() == 2
    assert "--name" in error_sentence(nameless)
    assert second.lines() == reserved.lines() == nameless.lines() == []


@pytest.mark.timeout(90)
def test_untrusted_names_and_text_are_shown_safely(clients, server) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    sneaky = server.connect("sneaky")
    admin = server.admin()
    try:
        assert sneaky.join("[/]") == "[/]"
        bob.expect('"[/]" entered the room')
        sneaky.send_frame(Kind.SAY, "one\nbob: I did not say this\n\ttabbed")
        bob.expect('"[/]": one')
        admin.send_frame(Kind.ADMIN_SAY, "\x1b[2J\x1b]0;owned\x07red\r\nsecond line")
        admin.expect(Kind.OK)
        bob.expect("[admin] \\x1b[2J\\x1b]0;owned\\x07red\\x0d")
        sneaky.send_frame(Kind.LEAVE)
        bob.expect('"[/]" left the room')
    finally:
        sneaky.close()
        admin.close()
    bob.end_input()
    assert bob.wait_exit() == 0
    assert bob.lines() == [
        "you are in the room as bob",
        '"[/]" entered the room',
        '"[/]": one',
        CONTINUATION + "bob: I did not say this",
        CONTINUATION + "    tabbed",
        "[admin] \\x1b[2J\\x1b]0;owned\\x07red\\x0d",
        CONTINUATION + "second line",
        '"[/]" left the room',
    ]
    assert "\x1b" not in bob.stdout.text


@pytest.mark.timeout(90)
def test_the_server_stopping_ends_the_client_with_exit_1(clients, server) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    server.signal(signal.SIGTERM)
    assert bob.wait_exit() == 1
    assert error_sentence(bob) == "error: " + TEXTS["en"]["shutdown"]
    assert server.wait_exit(30) == 0


@pytest.mark.timeout(90)
def test_wait_keeps_a_scripted_client_listening_after_its_input_ends(clients) -> None:
    bob = clients("--name", "bob", "--wait", "60")
    bob.end_input()
    bob.expect("you are in the room as bob")
    alice = clients("--name", "alice")
    alice.send("still there?", "/quit")  # /quit: alice leaves while her stdin is still open
    assert alice.wait_exit() == 0
    bob.expect("alice: still there?")
    bob.expect("alice left the room")
    bob.stop()


@pytest.mark.timeout(60)
def test_no_server_is_exit_2(tmp_path) -> None:
    unused = socket.socket()
    unused.bind(("127.0.0.1", 0))  # bound but not listening: connecting is refused
    try:
        port = str(unused.getsockname()[1])
        refused = Client(["--port", port], "--name", "bob")
        missing = Client(["--unix", str(tmp_path / "nothing.sock")], "--name", "bob")
        try:
            assert refused.wait_exit() == 2
            assert error_sentence(refused) == f"error: no chat server is listening on 127.0.0.1:{port}."
            assert missing.wait_exit() == 2
            assert "no chat server is listening on" in error_sentence(missing)
        finally:
            refused.stop()
            missing.stop()
    finally:
        unused.close()


@pytest.mark.timeout(90)
def test_chat_over_a_unix_socket(tmp_path) -> None:
    path = str(tmp_path / "chat.sock")
    with ChatServer.start("--unix", path) as running:
        assert running.unix_path == path
        bob = Client(["--unix", path], "--name", "bob")
        try:
            bob.expect("you are in the room as bob")
            alice = running.connect("alice")
            alice.join("alice")
            bob.expect("alice entered the room")
            alice.send_frame(Kind.SAY, "over a socket file")
            bob.expect("alice: over a socket file")
            alice.close()
            bob.end_input()
            assert bob.wait_exit() == 0
        finally:
            bob.stop()


# ----- interactive mode, through a pseudo-terminal ------------------------------------------------

class Terminal:
    """`learn chat join` on a pty; a thread drains it so the client never blocks on output."""

    def __init__(self, *options: str) -> None:
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="200", LINES="50")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lessons", "chat", "join", *options],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed its side
                chunk = b""
            with self.changed:
                if not chunk:
                    self.changed.notify_all()
                    return
                self.output += chunk
                self.changed.notify_all()

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def expect(self, wanted: str, after: int = 0, timeout: float = LINE_TIMEOUT) -> int:
        """Wait until `wanted` appears after offset `after`; returns the offset past it."""
        needle = wanted.encode()
        deadline = time.monotonic() + timeout
        with self.changed:
            while (found := self.output.find(needle, after)) < 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.thread.is_alive():
                    raise AssertionError(f"{wanted!r} never shown; screen: {bytes(self.output[-2000:])!r}")
                self.changed.wait(remaining)
            return found + len(needle)

    def wait_prompt(self, after: int) -> None:
        """The prompt is up (bracketed paste on): keys now go to it, in raw mode."""
        self.expect("\x1b[?2004h", after)

    def wait_exit(self, timeout: float = LINE_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running; screen: {bytes(self.output[-2000:])!r}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self.thread.join(10)
        os.close(self.master)


@pytest.mark.timeout(120)
def test_interactive_client_retries_a_taken_name_and_chats(clients, server) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    carol = Terminal("--port", str(server.port))
    try:
        at = carol.expect("your name:")
        carol.type("BOB\r")
        at = carol.expect("cannot join: the name BOB is taken.", at)
        at = carol.expect("your name:", at)
        carol.type("carol\r")
        at = carol.expect("you are in the room as carol", at)
        bob.expect("carol entered the room")
        bob.send("hi carol")
        at = carol.expect("bob: hi carol", at)
        carol.type("hello bob\r")
        bob.expect("carol: hello bob")
        carol.type("/who\r")
        at = carol.expect("in the room: bob, carol", at)
        carol.type("/quit\r")
        carol.expect("you left the room", at)
        assert carol.wait_exit() == 0
        bob.expect("carol left the room")
    finally:
        carol.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("key", ["\x04", "\x03"], ids=["ctrl-d", "ctrl-c"])
def test_interactive_ctrl_d_and_ctrl_c_leave_cleanly(clients, server, key: str) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    dave = Terminal("--port", str(server.port), "--name", "dave")
    try:
        at = dave.expect("/quit or Ctrl-D leaves")
        dave.wait_prompt(at)
        bob.expect("dave entered the room")
        dave.type(key)
        dave.expect("you left the room", at)
        assert dave.wait_exit() == 0
        bob.expect("dave left the room")
    finally:
        dave.stop()


# ----- docs/protocol.md: every hex example decodes to what the page says ----------------------------

EXAMPLE = re.compile(r"^(C->S|S->C|A->S|S->A) +(\S.*)\n((?: +[0-9a-f]{2}(?: +[0-9a-f]{2})*\n)+)", re.MULTILINE)
CLIENT_SENDS = {"C->S": codec.CHAT_KINDS, "A->S": codec.ADMIN_KINDS}


def page_examples() -> list[tuple[str, str, bytes]]:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    return [(match[1], match[2].strip(), bytes.fromhex(match[3].replace("\n", " ")))
            for match in EXAMPLE.finditer(text)]


def parse_description(description: str) -> tuple[Kind, ErrorCode | None, list[str]]:
    """'ERROR NAME_TAKEN "the name x is taken"' -> (Kind.ERROR, NAME_TAKEN, ["the name x is taken"])."""
    name, _, rest = description.partition(" ")
    kind, code = Kind[name], None
    if kind == Kind.ERROR:
        code_name, _, rest = rest.partition(" ")
        code = ErrorCode[code_name]
    return kind, code, json_strings(rest.strip())


def json_strings(text: str) -> list[str]:
    """The JSON string literals in `text`, one after another: '"a" "b"' -> ['a', 'b']."""
    decoder, strings, position = json.JSONDecoder(), [], 0
    while position < len(text):
        value, position = decoder.raw_decode(text, position)
        assert isinstance(value, str), text
        strings.append(value)
        while position < len(text) and text[position] == " ":
            position += 1
    return strings


def expected_payload(kind: Kind, code: ErrorCode | None, strings: list[str]) -> bytes:
    if kind == Kind.ERROR:
        return codec.encode_error(code, *strings)[5:]
    if kind == Kind.MESSAGE:
        return codec.encode_message(*strings)[5:]
    if kind == Kind.MEMBERS:
        return codec.encode_members(strings)[5:]
    return "".join(strings).encode()


def test_the_protocol_page_has_an_example_of_every_frame() -> None:
    examples = page_examples()
    kinds = {parse_description(description)[0] for _, description, _ in examples}
    assert kinds == set(Kind)
    codes = {parse_description(description)[1] for _, description, _ in examples} - {None}
    assert {ErrorCode.NAME_TAKEN, ErrorCode.BAD_FRAME, ErrorCode.SHUTDOWN, ErrorCode.KICKED,
            ErrorCode.NO_SUCH_MEMBER} <= codes


@pytest.mark.parametrize(("direction", "description", "data"), page_examples(),
                         ids=[f"{d} {text[:40]}" for d, text, _ in page_examples()])
def test_every_hex_example_on_the_protocol_page_decodes_as_the_page_says(direction, description, data) -> None:
    kind, code, strings = parse_description(description)
    decoder = codec.new_decoder(1 << 20)
    decoder.feed(data)
    frames = list(decoder)
    assert len(frames) == 1 and decoder.pending == 0, "one example must be exactly one frame"
    ((got_kind,), payload) = frames[0]
    assert got_kind == kind
    assert payload == expected_payload(kind, code, strings)
    if direction in CLIENT_SENDS:
        assert kind in CLIENT_SENDS[direction]
    else:
        assert kind not in codec.CHAT_KINDS | codec.ADMIN_KINDS
    if kind == Kind.ERROR:
        assert codec.decode_error(payload) == (code, strings[0])
    if kind == Kind.MESSAGE:
        assert codec.decode_message(payload) == tuple(strings)


@pytest.mark.timeout(90)
def test_the_minimal_client_on_the_protocol_page_works(server, tmp_path) -> None:
    """The page's copyable client, run as written: it joins, says a line, and leaves."""
    page = (DOCS / "protocol.md").read_text(encoding="utf-8")
    code = re.search(r"## A client.*?```python\n(.*?)```", page, re.DOTALL)[1]
    assert len(code.splitlines()) <= 45
    script = tmp_path / "mini_chat.py"
    script.write_text(code, encoding="utf-8")
    bob = server.connect("bob")
    try:
        bob.join("bob")
        result = subprocess.run([sys.executable, str(script), "alice", str(server.port)],
                                input="hello from the page\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        bob.expect(Kind.JOINED, "alice")
        bob.expect(Kind.MESSAGE, codec.encode_message("alice", "hello from the page")[5:])
        bob.expect(Kind.LEFT, "alice")
    finally:
        bob.close()
