"""`learn chat join`: the pure parts, then the real client against a real server.

Every process test runs `python -m lessons chat serve --port 0` and clients as real
subprocesses in pipe mode (stdin a pipe), reading their output lines with deadlines:
a test waits for "you are in the room as bob" before the next step, never sleeps.
The interactive mode is driven through a pseudo-terminal, the way a person uses it.
"""

from __future__ import annotations

import contextlib
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
from chatserver import OutputPipe, ServerProcess
from hypothesis import given
from hypothesis import strategies as st
from lessonrun import default_sigint

from capstone import codec
from capstone.client import Target
from capstone.client.pacing import MAX_PARTS, MAX_SAY, SAY_BURST, SAY_RATE, Pacer, split_payload
from capstone.client.pipe import LineSplitter
from capstone.client.session import join_room
from capstone.client.texts import TEXTS, texts_in
from capstone.client.view import CONTINUATION, Ended, Shown, View, display_name
from capstone.codec import ErrorCode, Kind
from lessons.toolkit.common import UserError, wait_for
from lessons.toolkit.framing import Frame

LINE_TIMEOUT = 30.0  # seconds to wait for one expected line; generous for a busy 2-core machine
DOCS = Path(__file__).resolve().parent.parent / "docs"


def frame(kind: Kind, payload: bytes | str = b"") -> Frame:
    data = payload.encode() if isinstance(payload, str) else payload
    return Frame((kind,), data)


# ----- pure: what the user sees ---------------------------------------------------------------

def test_every_string_has_its_chinese_wording() -> None:
    english, chinese = texts_in("en"), texts_in("zh")
    assert [key for key in TEXTS if chinese[key] == english[key]] == []


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
    shutdown = view.frame(frame(Kind.ERROR, bytes([ErrorCode.SHUTDOWN]) + b"bye"))
    assert shutdown == Ended(texts_in("en")["shutdown"], notice=True)
    assert view.frame(frame(Kind.ERROR, bytes([ErrorCode.KICKED]) + b"out")) == Ended(texts_in("en")["kicked"], notice=True)
    timeout = view.frame(frame(Kind.ERROR, bytes([ErrorCode.TIMEOUT]) + b"no JOIN"))
    assert isinstance(timeout, Ended) and not timeout.notice
    rate = view.frame(frame(Kind.ERROR, bytes([ErrorCode.RATE_LIMITED]) + b"slow down"))
    assert rate == Shown("problem", ("the server refused that: slow down",))
    assert view.frame(frame(Kind.PONG, b"x")) is None


def outgoing(line: str, lang: str = "en"):
    return View(lang).outgoing(line)


def test_input_lines_become_frames() -> None:
    assert outgoing("hello").frames == (codec.encode_text(Kind.SAY, "hello"),)
    assert outgoing("/who").frames == (codec.encode(Kind.WHO),)
    assert outgoing(" /quit ").quit
    assert outgoing("//who").frames == (codec.encode_text(Kind.SAY, "/who"),)
    assert outgoing("/etc/passwd is a file").frames == (codec.encode_text(Kind.SAY, "/etc/passwd is a file"),)
    assert outgoing("/ is the root").frames == (codec.encode_text(Kind.SAY, "/ is the root"),)
    assert outgoing("   ") == outgoing("") and not outgoing("").frames and outgoing("").shown is None


def test_help_lists_the_commands_and_unknown_commands_stay_here() -> None:
    """Finding 8: `/help` was sent to everyone as a message; now it is answered locally."""
    shown = outgoing("/help").shown
    assert not outgoing("/help").frames and shown is not None
    text = "\n".join(shown.lines)
    for command in ("/who", "/quit", "/help", "//"):
        assert command in text
    for line in ("/nope", "/etc is a directory", "/WHO", "/kick bob"):
        refused = outgoing(line)
        assert refused.frames == () and not refused.quit, line
        assert refused.shown.style == "problem"
        assert line.split()[0] in refused.shown.lines[0] and "/help" in refused.shown.lines[0]
    assert outgoing("//nope").frames == (codec.encode_text(Kind.SAY, "/nope"),)


# ----- long texts: split at character boundaries, paced like the server's default bucket ------------

def payloads(frames: tuple[bytes, ...]) -> list[bytes]:
    assert all(data[4] == Kind.SAY for data in frames)
    return [data[5:] for data in frames]


def test_a_long_text_is_split_into_say_frames_within_the_default_limit() -> None:
    """Finding 2: 5,000 pasted characters got the sender thrown out with TOO_LARGE."""
    words = " ".join(f"word{i}" for i in range(1200))  # about 10 KB
    shown = outgoing(words)
    parts = payloads(shown.frames)
    assert len(parts) == 3 and all(len(part) <= MAX_SAY == 4096 for part in parts)
    assert b"".join(parts).decode() == words  # cut after a space: nothing lost, no word cut
    assert all(part.endswith(b" ") for part in parts[:-1])
    assert shown.shown is not None and "3" in shown.shown.lines[0]


def test_splitting_never_cuts_a_character_and_prefers_line_breaks() -> None:
    text = "é" * 3000 + "\n" + "字" * 2000  # 6000 + 1 + 6000 bytes, no space anywhere
    parts = split_payload(text.encode(), 4096)
    assert [len(part) for part in parts][0] <= 4096
    decoded = [part.decode() for part in parts]  # raises if a character was cut
    assert decoded[0] == "é" * 2048 and decoded[1] == "é" * 952  # the newline is past the first 4096 bytes
    assert decoded[2].startswith("字") and "\n" not in "".join(decoded)
    assert "".join(decoded) == text.replace("\n", "")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400),
       st.integers(min_value=4, max_value=64))
def test_split_payload_keeps_every_piece_valid_and_in_order(text: str, limit: int) -> None:
    data = text.encode()
    parts = split_payload(data, limit)
    assert all(0 < len(part) <= limit for part in parts)
    joined = "".join(part.decode() for part in parts)  # every piece is whole UTF-8
    assert joined.replace("\n", "") == text.replace("\n", "")


def test_a_text_over_the_whole_bucket_is_refused_with_one_sentence() -> None:
    too_long = "x" * (MAX_SAY * MAX_PARTS + 1)
    refused = outgoing(too_long)
    assert refused.frames == () and refused.shown.style == "problem" and len(refused.shown.lines) == 1
    assert len(payloads(outgoing("x" * MAX_SAY * MAX_PARTS).frames)) == MAX_PARTS


def test_the_pacer_stays_below_the_default_token_bucket() -> None:
    assert SAY_RATE == 20 and SAY_BURST < 2 * SAY_RATE  # PROTOCOL.md: 20 per second, a bucket of 40
    pacer = Pacer(now=100.0)
    for _ in range(SAY_BURST):
        assert pacer.delay(100.0) == 0
        pacer.take(100.0)
    assert pacer.delay(100.0) == pytest.approx(1 / SAY_RATE)
    assert pacer.delay(100.0 + 1 / SAY_RATE) == pytest.approx(0)
    pacer.take(100.0 + 1 / SAY_RATE)
    assert pacer.delay(1000.0) == 0  # refilled, never above the bucket
    for _ in range(SAY_BURST):
        pacer.take(1000.0)
    assert pacer.delay(1000.0) > 0


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
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
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
        return (f"exit={self.process.poll()} stdout={self.stdout.text!r} stderr={self.stderr.text!r}"
                f"{signal_state(self.process.pid)}")


def signal_state(pid: int) -> str:
    """Where a client that ignores a signal is stuck: its signal masks and kernel wait channel."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""
    masks = [line.replace("\t", " ") for line in status if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt", "Threads"))]
    return f" {' '.join(masks)} wchan={wchan}"


@pytest.fixture
def server():
    with ServerProcess.start("--port", "0") as running:
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


@contextlib.contextmanager
def dan_watched_by_a_raw_member(clients, server):
    """dan joins through `learn chat join`; a raw member who joined first watches the frames."""
    watcher = server.connect("watcher")
    try:
        watcher.join("watcher")
        dan = clients("--name", "dan")
        dan.expect("you are in the room as dan")
        watcher.expect(Kind.JOINED, "dan")
        yield dan, watcher
    finally:
        watcher.close()


def error_sentence(client: Client) -> str:
    """stderr must be exactly one line, the CLI's 'error: ...' (or '错误：...') sentence, and no traceback."""
    text = client.stderr.text
    assert "Traceback" not in text
    lines = text.strip().split("\n")
    assert len(lines) == 1, text
    assert lines[0].startswith(("error: ", "错误："))
    return lines[0]


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


def notice_sentence(client: Client) -> str:
    """Finding 13: a kick or a shutdown is a notice: one plain sentence, not `error:`."""
    text = client.stderr.text
    assert "Traceback" not in text and "error" not in text, text
    lines = text.strip().split("\n")
    assert len(lines) == 1, text
    return lines[0]


def test_the_server_stopping_ends_the_client_with_a_notice_and_exit_1(clients, server) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    server.signal(signal.SIGTERM)
    assert bob.wait_exit() == 1
    assert notice_sentence(bob) == texts_in("en")["shutdown"] == "the server is stopping, so the chat is over."
    assert server.wait_exit(30) == 0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_kicked_member_gets_a_notice_and_exit_1(clients, server, lang: str) -> None:
    bob = clients("--name", "bob", "--lang", lang)
    bob.expect(texts_in(lang)["welcome"].format(name="bob"))
    admin = server.admin()
    try:
        admin.send_frame(Kind.KICK, "bob")
        admin.expect(Kind.OK)
    finally:
        admin.close()
    assert bob.wait_exit() == 1
    assert notice_sentence(bob) == texts_in(lang)["kicked"]


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


def test_chat_over_a_unix_socket(tmp_path) -> None:
    path = str(tmp_path / "chat.sock")
    with ServerProcess.start("--unix", path) as running:
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


def server_log_has(server, text: str, timeout: float = LINE_TIMEOUT) -> None:
    """Wait until the server's log shows `text` (e.g. "dave left": a LEAVE, not a bare close)."""
    try:
        wait_for(lambda: text in server.stdout.text, timeout)
    except TimeoutError:
        raise AssertionError(f"the server never logged {text!r}: {server.stdout.text[-2000:]!r}") from None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_pipe_mode_ctrl_c_leaves_with_one_line_and_exit_0(clients, server, signum: int) -> None:
    """Finding 1 (pipe mode): SIGINT (and SIGTERM) sends LEAVE and says so in one line."""
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    erin = clients("--name", "erin")
    erin.expect("you are in the room as erin")
    bob.expect("erin entered the room")
    erin.process.send_signal(signum)
    assert erin.wait_exit() == 0, erin.diagnostics()
    assert erin.stderr.text.strip() == texts_in("en")["goodbye"], erin.diagnostics()
    bob.expect("erin left the room")
    server_log_has(server, "erin left")


def test_slash_commands_in_pipe_mode(clients) -> None:
    """Finding 8: /help answers locally, an unknown /x is refused here, // sends a slash."""
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    carol = clients("--name", "carol")
    carol.expect("you are in the room as carol")
    bob.expect("carol entered the room")
    carol.send("/help", "/nope", "//nope", "done")
    bob.expect("carol: done")
    carol.end_input()
    assert carol.wait_exit() == 0
    assert "/who" in carol.stdout.text and "/quit" in carol.stdout.text
    assert "/nope" in carol.stderr.text and "/help" in carol.stderr.text
    assert len(carol.stderr.text.strip().split("\n")) == 1, carol.diagnostics()
    assert [line for line in bob.lines() if line.startswith("carol:")] == ["carol: /nope", "carol: done"]


def test_a_long_paste_is_split_and_the_sender_stays(clients, server) -> None:
    """Finding 2: 5,000 characters, then 100 KB, reach the others whole; the sender stays in."""
    with dan_watched_by_a_raw_member(clients, server) as (dan, watcher):
        five_k = "x" * 5000
        hundred_k = " ".join(f"w{i:05d}" for i in range(100_000 // 7))
        dan.send(five_k, hundred_k, "still here")
        texts = []
        while not texts or texts[-1] != "still here":
            name, text = watcher.expect(Kind.MESSAGE).message()
            assert name == "dan"
            texts.append(text)
        assert "".join(texts[:2]) == five_k and len(texts[0].encode()) <= 4096
        assert "".join(texts[2:-1]) == hundred_k and len(texts) == 2 + 25 + 1
        dan.end_input()
        assert dan.wait_exit() == 0, dan.diagnostics()
        assert "over the limit" not in dan.stderr.text and "refused" not in dan.stderr.text


def test_more_lines_than_the_rate_limit_are_paced_not_dropped(clients, server) -> None:
    """Finding 2: 60 lines at once (more than the server's bucket of 40) all arrive, none RATE_LIMITED."""
    with dan_watched_by_a_raw_member(clients, server) as (dan, watcher):
        dan.send(*(f"line {i}" for i in range(60)))
        dan.end_input()
        received: list[str] = []
        while len(received) < 60:
            frame = watcher.recv_frame()
            assert frame.kind == Kind.MESSAGE, f"{frame!r} after {len(received)} messages; {dan.diagnostics()}"
            received.append(frame.message()[1])
        assert received == [f"line {i}" for i in range(60)]
        assert dan.wait_exit() == 0
        assert dan.stderr.text == "", dan.diagnostics()


def test_a_text_too_long_to_send_is_refused_in_one_sentence_and_the_chat_goes_on(clients, server) -> None:
    with dan_watched_by_a_raw_member(clients, server) as (dan, watcher):
        dan.send("y" * 200_000, "after")
        watcher.expect(Kind.MESSAGE, codec.encode_message("dan", "after")[5:])
        dan.end_input()
        assert dan.wait_exit() == 0
        assert len(dan.stderr.text.strip().split("\n")) == 1 and "200000 bytes" in dan.stderr.text, dan.diagnostics()


# ----- pointed at something that is not a chat server ---------------------------------------------

def not_a_chat_server(banner: bytes, answer: bytes, echo: bool = False) -> tuple[socket.socket, threading.Thread]:
    """A real TCP listener that greets with `banner`, answers the JOIN with `answer` (or echoes it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(30)
            conn.sendall(banner)
            try:
                data = conn.recv(100)
                conn.sendall(data if echo else answer)
                conn.recv(100)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(("banner", "answer", "echo", "shown"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n", b"Invalid SSH identification string.\r\n", False, "SSH-2.0-OpenSSH_9.6"),
    (b"", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", False, "HTTP/1.1 400 Bad Request"),
    (b"", b"", True, "\\x00\\x00\\x00\\x03\\x01bob"),
], ids=["ssh", "http", "echo"])
def test_a_server_that_is_not_a_chat_is_named_as_such(banner: bytes, answer: bytes, echo: bool, shown: str) -> None:
    """Finding 12: not "the server sent a frame of 3868505829 bytes"."""
    listener, thread = not_a_chat_server(banner, answer, echo)
    port = listener.getsockname()[1]
    client = Client(["--port", str(port)], "--name", "bob")
    try:
        assert client.wait_exit() == 2, client.diagnostics()
        sentence = error_sentence(client)
        expected = f"error: 127.0.0.1:{port} does not look like a learn chat server (it answered "
        assert sentence.startswith(expected), sentence
        assert shown in sentence and "bytes" not in sentence
    finally:
        client.stop()
        listener.close()
        thread.join(10)


# ----- every string of the zh client is Chinese -----------------------------------------------------

ENGLISH_RUN = re.compile(r"[A-Za-z]+(?:[ ,.;:'!?-]+[A-Za-z]+){2,}")
NAME = "bob"
WHERE = "127.0.0.1:8888"


def english_runs(text: str) -> list[str]:
    """Runs of 3+ ASCII words, once names and addresses are taken out."""
    return ENGLISH_RUN.findall(text.replace(NAME, " ").replace(WHERE, " "))


ENGLISH_REASONS = {
    ErrorCode.NAME_TAKEN: "the name bob is taken", ErrorCode.NAME_INVALID: "the name 'bob' is reserved",
    ErrorCode.NOT_JOINED: "join the room first", ErrorCode.ALREADY_JOINED: "you are already in the room",
    ErrorCode.TOO_LARGE: "a frame of 5000 bytes is over the limit of 4096",
    ErrorCode.BAD_FRAME: "a message cannot contain the control character U+001B",
    ErrorCode.RATE_LIMITED: "too many messages, slow down", ErrorCode.SHUTDOWN: "the server is stopping",
    ErrorCode.TIMEOUT: "no JOIN within 10 seconds", ErrorCode.KICKED: "the administrator removed you",
    ErrorCode.NO_SUCH_MEMBER: "nobody is called bob",
}


def test_zh_shows_no_english_for_any_error_code_or_client_message() -> None:
    """Finding 7: "无法加入: the name alice is taken。" mixed the server's English in."""
    view = View("zh")
    shown: list[str] = []
    for code in list(ErrorCode) + [99]:
        payload = codec.encode_error(code, ENGLISH_REASONS.get(code, "something new went wrong"))[5:]
        outcome = view.frame(Frame((Kind.ERROR,), payload))
        shown += outcome.lines if isinstance(outcome, Shown) else [outcome.sentence]
        refusal = view.join_refusal(payload, NAME)
        if refusal is not None:
            shown += refusal.lines if isinstance(refusal, Shown) else [refusal.sentence]
    for err in (ConnectionResetError(104, "Connection reset by peer"), BrokenPipeError(32, "Broken pipe"),
                TimeoutError(110, "Connection timed out"), OSError(5, "Input/output error"), OSError("odd")):
        shown.append(view.lost(err).sentence)
        shown.append(view.unreachable(WHERE, err))
    for line in ("/help", "/nope", "x" * 5000, "x" * (MAX_SAY * MAX_PARTS + 1)):
        result = view.outgoing(line)
        shown += result.shown.lines
    shown += [view.closed().sentence, view.not_chat(WHERE, b"SSH-2.0-OpenSSH\r\n"), view.goodbye(),
              view.texts["no_server"].format(where=WHERE), view.texts["hint"], view.texts["name_needed"]]
    for text in shown:
        assert not english_runs(text), text
    for key, template in ((key, texts_in("zh")[key]) for key in TEXTS):
        assert not english_runs(template.replace("{name}", NAME).replace("{where}", WHERE)), key


def test_zh_join_refusal_from_a_real_server_is_all_chinese(clients) -> None:
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    second = clients("--name", "BOB", "--lang", "zh")
    assert second.wait_exit() == 2
    sentence = error_sentence(second)
    assert sentence.startswith("错误：") and "BOB" in sentence and not english_runs(sentence.replace("BOB", " ")), sentence


# ----- interactive mode, through a pseudo-terminal ------------------------------------------------

class Terminal:
    """`learn chat join` on a pty; a thread drains it so the client never blocks on output."""

    def __init__(self, *options: str) -> None:
        master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="200", LINES="50")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lessons", "chat", "join", *options],
            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, preexec_fn=default_sigint)
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


@contextlib.contextmanager
def dave_at_the_prompt_seen_by_bob(clients, server):
    """bob chats in pipe mode; dave joins on a terminal, and his prompt is up: (bob, dave, offset)."""
    bob = clients("--name", "bob")
    bob.expect("you are in the room as bob")
    dave = Terminal("--port", str(server.port), "--name", "dave")
    try:
        at = dave.expect("/quit or Ctrl-D leaves")
        dave.wait_prompt(at)
        bob.expect("dave entered the room")
        yield bob, dave, at
    finally:
        dave.stop()


def test_interactive_ctrl_d_leaves_cleanly(clients, server) -> None:
    with dave_at_the_prompt_seen_by_bob(clients, server) as (bob, dave, at):
        dave.type("\x04")
        dave.expect("you left the room", at)
        assert dave.wait_exit() == 0
        bob.expect("dave left the room")


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.mark.parametrize("how", ["key", "SIGINT", "SIGTERM"])
def test_interactive_ctrl_c_leaves_with_one_line_and_no_traceback(clients, server, how: str) -> None:
    """Finding 1: Ctrl-C printed "Task exception was never retrieved" and a 35-line traceback."""
    with dave_at_the_prompt_seen_by_bob(clients, server) as (bob, dave, at):
        if how == "key":
            dave.type("\x03")
        else:
            os.killpg(dave.process.pid, getattr(signal, how))
        assert dave.wait_exit() == 0
        dave.thread.join(LINE_TIMEOUT)
        after = ANSI.sub(b"", bytes(dave.output[at:])).decode(errors="replace")
        assert "Traceback" not in after and "Task exception" not in after, after
        lines = [re.sub(r"[\x00-\x1f]", "", line).strip() for line in after.replace("\r", "\n").split("\n")]
        visible = [line for line in lines if line]
        assert visible[-1] == "you left the room", visible
        assert all(set(line) == {">"} for line in visible[:-1]), visible  # only the prompt, redrawn
        assert b"\x1b[?2004l" in dave.output[at:]  # the prompt ended properly: bracketed paste off again
        bob.expect("dave left the room")
        server_log_has(server, "dave left")  # a LEAVE, not only a closed connection


def test_ctrl_c_while_waiting_for_the_close_stops_the_waiting() -> None:
    """After /quit the client waits for the server to close; a SIGINT there (no prompt up to
    turn it into a key) escapes the event loop: still no traceback, and no 15 s wait."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    received: list[bytes] = []

    def server_that_never_closes() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            conn.recv(100)
            conn.sendall(codec.encode_text(Kind.WELCOME, "dave"))
            while data := conn.recv(100):
                received.append(data)

    thread = threading.Thread(target=server_that_never_closes, daemon=True)
    thread.start()
    dave = Terminal("--port", str(listener.getsockname()[1]), "--name", "dave")
    try:
        at = dave.expect("/quit or Ctrl-D leaves")
        dave.wait_prompt(at)
        dave.type("/quit\r")
        wait_for(lambda: received, LINE_TIMEOUT)  # the LEAVE arrived: the client now waits
        started = time.monotonic()
        os.killpg(dave.process.pid, signal.SIGINT)
        assert dave.wait_exit() == 0
        assert time.monotonic() - started < 10  # ANSWER_TIMEOUT is 15 s
        dave.thread.join(LINE_TIMEOUT)
        after = ANSI.sub(b"", bytes(dave.output[at:])).decode(errors="replace")
        assert "Traceback" not in after and "Task exception" not in after, after
        assert after.count("you left the room") == 1, after
        thread.join(LINE_TIMEOUT)
        assert b"".join(received).startswith(codec.encode(Kind.LEAVE))
    finally:
        dave.stop()
        listener.close()


def test_interactive_paste_of_5000_characters_is_split(clients, server) -> None:
    watcher = server.connect("watcher")
    carol = Terminal("--port", str(server.port), "--name", "carol")
    try:
        watcher.join("watcher")
        at = carol.expect("/quit or Ctrl-D leaves")
        carol.wait_prompt(at)
        watcher.expect(Kind.JOINED, "carol")
        pasted = "p" * 5000
        carol.type("\x1b[200~" + pasted + "\x1b[201~\r")
        first = watcher.expect(Kind.MESSAGE).message()[1]
        second = watcher.expect(Kind.MESSAGE).message()[1]
        assert first + second == pasted
        carol.type("/quit\r")
        assert carol.wait_exit() == 0
    finally:
        carol.stop()
        watcher.close()


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
