"""The four echo servers (poll, epoll, select, selectors) as a learner runs them.

Every server runs as a real `python -m lessons run ...` process on port 0; the test
reads its `listening on HOST:PORT` line, talks to it over loopback, stops it with a
real SIGINT and checks the exit code and the summary. Nothing waits by sleeping:
each wait is for a line, an answer or a closed socket, with a deadline.
"""

from __future__ import annotations

import io
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, TextIO

import pytest
from lessonrun import child_env, default_sigint, lesson_command

try:
    import resource
except ImportError:  # Windows
    resource = None

from lessons import poll_server, select_server
from lessons.toolkit.common import UserError
from lessons.toolkit.narrate import Narrator

REPO = Path(__file__).resolve().parent.parent
PREFIX = "收到了: ".encode()
DEADLINE = 20.0  # generous: a busy 2-core machine starts Python slowly
IO_TIMEOUT = 10.0
HAS_EPOLL = hasattr(select, "epoll")
needs_epoll = pytest.mark.skipif(not HAS_EPOLL, reason="epoll is Linux-only")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to uid 65534 needs root")

# (arguments after `learn run`, a regex every --trace run must print, a regex for a reset seen by the kernel)
VARIANTS = [
    pytest.param(("poll-server",), r"poll\(\) -> \[\(\d+, POLLIN\)", r"POLLIN\|POLLERR\|POLLHUP", id="poll"),
    pytest.param(("epoll-server",), r"epoll\.poll\(\) -> \[\(\d+, EPOLLIN\)", r"EPOLLIN\|EPOLLERR\|EPOLLHUP",
                 id="epoll", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge"), r"epoll\.poll\(\) -> \[\(\d+, EPOLLIN\)", r"EPOLLIN\|EPOLLERR\|EPOLLHUP",
                 id="epoll-edge", marks=needs_epoll),
    pytest.param(("select-server",), r"select\(\[\d+(, \d+)*\], \[\], \[\]\) -> \(\[\d+", None, id="select"),
    pytest.param(("selectors-server",), r"Selector\.select\(\) -> \[\(\d+, EVENT_READ\)", None, id="selectors"),
]
SERVER_IDS = ["poll-server", "epoll-server", "select-server", "selectors-server"]




class RunningServer:
    """A server process whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", preexec_fn=default_sigint,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        self.readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        found = self.wait_for_line(r"^listening on (\S+):(\d+)$")
        self.address = ("127.0.0.1", int(found.group(2)))

    def _collect(self, stream: io.TextIOBase, lines: list[str]) -> None:
        for line in stream:
            with self.changed:
                lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = DEADLINE) -> re.Match:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.out:
                    if match := re.search(pattern, line):
                        return match
                if self.process.poll() is not None and not any(r.is_alive() for r in self.readers):
                    pytest.fail(f"server exited early:\n{self.output()}\n{self.errors()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{self.output()}")
                self.changed.wait(0.1)

    def interrupt(self) -> int:
        """Ctrl-C, as a learner would stop it; returns the exit code once all output is read."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(DEADLINE)
        for reader in self.readers:
            reader.join(DEADLINE)
        return code

    def output(self) -> str:
        with self.changed:
            return "\n".join(self.out)

    def errors(self) -> str:
        with self.changed:
            return "\n".join(self.err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(DEADLINE)


@pytest.fixture
def start_server():
    started: list[RunningServer] = []

    def start(*args: str, command: list[str] | None = None) -> RunningServer:
        server = RunningServer(command or lesson_command(*args, "--port", "0"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def connect(address: tuple) -> socket.socket:
    return socket.create_connection(address, timeout=IO_TIMEOUT)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def ask(sock: socket.socket, message: bytes) -> bytes:
    """A short message comes back as one answer: the prefix, then the message."""
    sock.sendall(message)
    return read_exactly(sock, len(PREFIX) + len(message))


def read_echo_of(sock: socket.socket, message: bytes) -> bytes:
    """Read answers until all of `message` came back (a long one is answered in pieces)."""
    received = b""
    while received.replace(PREFIX, b"") != message:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed after {len(received)} bytes"
        received += chunk
    return received


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER {on, 0}: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize(("args", "trace_line", "reset_mask"), VARIANTS)
def test_twenty_concurrent_clients_each_get_their_answer(start_server, args, trace_line, reset_mask):
    server = start_server(*args)
    clients = [connect(server.address) for _ in range(20)]
    messages = [f"client {number}: 你好 {'.' * number}".encode() for number in range(20)]
    for sock, message in zip(clients, messages):
        sock.sendall(message)
    answers = [read_exactly(sock, len(PREFIX) + len(message)) for sock, message in zip(clients, messages)]
    assert answers == [PREFIX + message for message in messages]

    long_message = bytes(range(97, 123)) * 200  # 5200 bytes: several recv(1024) on the server
    clients[0].sendall(long_message)
    long_answer = read_echo_of(clients[0], long_message)
    assert long_answer.count(PREFIX) >= 2, "a 5200-byte message cannot fit one recv(1024)"
    for sock in clients:
        sock.close()

    assert server.interrupt() == 0
    bytes_in = sum(map(len, messages)) + len(long_message)
    bytes_out = sum(map(len, answers)) + len(long_answer)
    assert f"stopped (Ctrl-C): served 20 clients, {bytes_in} bytes in, {bytes_out} bytes out" in server.output()
    assert "Traceback" not in server.errors()


@pytest.mark.parametrize(("args", "trace_line", "reset_mask"), VARIANTS)
def test_resets_half_closes_and_garbage_never_stop_the_server(start_server, args, trace_line, reset_mask):
    server = start_server(*args, "--trace")
    steady = connect(server.address)
    assert ask(steady, b"before") == PREFIX + b"before"

    for number in range(6):  # reset right after connecting, or in the middle of a message
        rude = connect(server.address)
        if number % 2:
            rude.sendall(b"half a thou")
        reset(rude)
    garbage = connect(server.address)
    junk = b"\x1b[2J\x1b]0;owned\x07" + bytes(range(256))  # terminal escapes, NUL, invalid UTF-8...
    assert ask(garbage, junk) == PREFIX + junk
    half = connect(server.address)
    half.sendall(b"last words")
    half.shutdown(socket.SHUT_WR)  # "no more from me", but it can still read
    assert read_exactly(half, len(PREFIX) + 10) == PREFIX + b"last words"
    assert half.recv(1) == b"", "after our FIN the server closes its side"

    assert ask(steady, b"after") == PREFIX + b"after"
    with connect(server.address) as fresh:
        assert ask(fresh, b"new") == PREFIX + b"new"
    server.wait_for_line(r"reset by peer")
    if reset_mask:
        server.wait_for_line(reset_mask)  # the reset as the kernel reported it
    for sock in (steady, garbage, half):
        sock.close()

    assert server.interrupt() == 0
    out = server.output()
    assert re.search(trace_line, out)
    if args[0] != "select-server":  # select has no register: the whole list goes in on every call
        assert re.search(r"trace +register fd \d+ E?(POLLIN|EVENT_READ).* \(the listening socket\)", out)
        assert re.search(r"trace +unregister fd \d+$", out, re.MULTILINE)
    assert re.search(r"send +fd \d+: \d+ bytes", out)
    assert "\x1b" not in out and "\\x1b" in out, "a peer's escape codes are printed as text"
    assert "served 10 clients" in out
    assert "Traceback" not in server.errors()


DEMOS = [
    pytest.param(("poll-server",), id="poll"),
    pytest.param(("epoll-server",), id="epoll", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge"), id="epoll-edge", marks=needs_epoll),
    pytest.param(("select-server",), id="select"),
    pytest.param(("selectors-server",), id="selectors"),
]


@pytest.mark.parametrize("args", DEMOS)
def test_demo_runs_by_itself_and_tells_what_happens(args):
    result = subprocess.run(lesson_command(*args, "--demo", "--port", "0"), cwd=REPO, env=child_env(),
                            capture_output=True, text=True, encoding="utf-8", timeout=DEADLINE * 2)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for event in ("listening on 127.0.0.1:", "alice got '收到了: hello'", "connected",
                  "alice got all 3000 bytes back", "carol resets", "Connection reset by peer",
                  "only carol was dropped", "bob still got his answer: '收到了: last words'",
                  "recv returned b''", "stopped (the demo is over): served 3 clients"):
        assert event in out, f"{event!r} missing from:\n{out}"
    assert "Traceback" not in result.stderr


@needs_epoll
def test_demo_shows_the_edge_triggered_stall():
    result = subprocess.run(lesson_command("epoll-server", "--edge", "--no-drain", "--demo", "--port", "0"),
                            cwd=REPO, env=child_env(), capture_output=True, text=True, encoding="utf-8",
                            timeout=DEADLINE * 2)
    assert result.returncode == 0, result.stderr
    assert "alice got only 1024 of 3000 bytes back" in result.stdout
    assert "stuck:" in result.stdout and "OLD bytes" in result.stdout


@needs_epoll
def test_edge_triggered_without_draining_stalls(start_server):
    """One report per arrival: the bytes the server did not read wait until the next arrival."""
    server = start_server("epoll-server", "--edge", "--no-drain")
    with connect(server.address) as sock:
        sock.sendall(b"a" * 3000)
        assert read_exactly(sock, len(PREFIX) + 1024) == PREFIX + b"a" * 1024
        readable, _, _ = select.select([sock], [], [], 1.0)
        assert not readable, "1976 bytes wait in the server's buffer, yet nothing more comes back"
        sock.sendall(b"!")  # a new arrival, a new edge: the server reads the OLD bytes next
        assert read_exactly(sock, len(PREFIX) + 1024) == PREFIX + b"a" * 1024
    assert server.interrupt() == 0


@needs_epoll
@pytest.mark.timeout(30)
def test_epoll_missing_is_one_sentence(monkeypatch):
    monkeypatch.delattr(select, "epoll")
    result = run_in_process("epoll-server", "--port", "0")
    assert result.exit_code == 2
    assert "epoll exists only on Linux" in result.output and "poll-server" in result.output
    assert "Traceback" not in result.output


def run_in_process(*args: str):
    """`learn run ARGS` inside this process, for options that fail before anything listens."""
    from typer.testing import CliRunner

    from lessons.cli import app

    return CliRunner().invoke(app, ["run", *args])


@pytest.mark.timeout(30)
def test_no_drain_without_edge_is_refused():
    result = run_in_process("epoll-server", "--no-drain", "--port", "0")
    assert result.exit_code == 2
    assert "add --edge" in result.output and "Traceback" not in result.output


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lesson", SERVER_IDS)
def test_port_in_use_is_one_sentence(lesson):
    if lesson == "epoll-server" and not HAS_EPOLL:
        pytest.skip("epoll is Linux-only")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_in_process(lesson, "--port", str(port))
    assert result.exit_code == 2
    assert f"error: port {port} on 127.0.0.1 is already in use" in result.output
    assert "Traceback" not in result.output and "listening on" not in result.output


def fill_low_descriptors_then(*args: str) -> list[str]:
    """Run the lesson with descriptors 16..1039 taken, so its 13th client or so gets fd >= 1040."""
    prelude = ("import os, sys; fd = os.open(os.devnull, os.O_RDONLY); "
               "[os.dup2(fd, n) for n in range(16, 1040)]; "
               "os.execv(sys.executable, sys.argv[1:])")
    return [sys.executable, "-c", prelude, *lesson_command(*args, "--port", "0")]


def answered(sock: socket.socket) -> bool:
    try:
        return ask(sock, b"hi") == PREFIX + b"hi"
    except OSError:
        return False


@pytest.mark.parametrize(("lesson", "all_served"), [("select-server", False), ("poll-server", True)])
def test_descriptors_above_1024(start_server, lesson, all_served):
    """select() cannot watch fd >= 1024: the select server refuses such clients and lives on."""
    if resource is None or resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1100:
        pytest.skip("needs a soft limit of at least 1100 open files")
    server = start_server(command=fill_low_descriptors_then(lesson))
    clients = [connect(server.address) for _ in range(20)]
    served = [answered(sock) for sock in clients]
    server.wait_for_line(r"\(fd 10[4-9]\d\) connected")  # the test is about such clients
    if all_served:
        assert all(served)
    else:
        assert any(served) and not all(served)
        server.wait_for_line(r"refused: fd \d+ is beyond select\(\)'s limit of 1024")
    assert answered(clients[0]), "the first client is still served"
    for sock in clients:
        sock.close()
    assert server.interrupt() == 0
    refused = re.search(r"refused (\d+)", server.output().splitlines()[-1])
    assert (refused is None) == all_served
    assert "Traceback" not in server.errors()


def test_fd_limit_demo_shows_select_failing_where_poll_goes_on():
    result = subprocess.run(lesson_command("select-server", "--fd-limit-demo"), cwd=REPO, env=child_env(),
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert re.search(r"select\(\[fd 10\d\d\]\) raised ValueError: filedescriptor out of range in select\(\)",
                     result.stdout)
    assert re.search(r"poll\(\) -> fd 10\d\d POLLIN", result.stdout)


def run_as_nobody(action: Callable[[TextIO], None], limits: tuple[int, int] | None = None) -> tuple[int, str]:
    """Run `action(out)` in a forked child as uid/gid 65534, optionally with `limits` on open files.

    Everything is imported before the fork: the unprivileged child cannot read /root.
    Exit code 0 if `action` returns, 2 with "error: ..." written if it raises UserError.
    """
    Narrator(io.StringIO())("demo", "warm up rich's imports before dropping privileges")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            if limits:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            with os.fdopen(write_end, "w", encoding="utf-8") as out:
                try:
                    action(out)
                    code = 0
                except UserError as err:
                    out.write(f"error: {err}\n")
                    code = 2
        finally:
            os._exit(code)
    os.close(write_end)
    output = b""
    try:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], deadline - time.monotonic())
            chunk = os.read(read_end, 65536) if ready else b""
            if not chunk:
                break
            output += chunk
    finally:
        os.close(read_end)
        status = reap(pid, DEADLINE)
    return os.waitstatus_to_exitcode(status), output.decode()


def reap(pid: int, timeout: float) -> int:
    """Wait for the child to exit (killing it after `timeout`); returns its wait status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)  # polling for an exit, with a deadline: not an ordering sleep
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def fd_limit_demo(out: TextIO) -> None:
    select_server.show_fd_limit(Narrator(out))


@needs_root
def test_fd_limit_demo_unprivileged_raises_its_own_soft_limit():
    code, out = run_as_nobody(fd_limit_demo, limits=(256, 4096))
    assert code == 0, out
    assert "filedescriptor out of range in select()" in out and "POLLIN" in out


@needs_root
def test_fd_limit_demo_unprivileged_with_a_low_hard_limit_is_one_sentence():
    code, out = run_as_nobody(fd_limit_demo, limits=(256, 512))
    assert code == 2
    assert out.strip() == "error: this demo needs 1088 open files but the hard limit is 512; " \
                          "raise it (as root: ulimit -Hn 1088) and try again."


def privileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


@needs_root
@pytest.mark.skipif(privileged_port_start() <= 80, reason="this kernel lets anyone bind port 80")
def test_a_privileged_port_as_an_ordinary_user_is_one_sentence():
    code, out = run_as_nobody(lambda out: poll_server.main(host="127.0.0.1", port=80))
    assert code == 2
    assert out.strip() == ("error: not allowed to listen on port 80; ports below 1024 need privileges, "
                           "pick a higher one with --port.")
