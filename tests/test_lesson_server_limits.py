"""The lesson servers at their descriptor limit (EMFILE): no spinning, no stranded backlog.

Issue 9 finding 7. Each server runs as a real process with a small RLIMIT_NOFILE set in
the child before it starts Python, so a few dozen clients are enough to exhaust it.
CPU time is read from /proc/PID/stat; every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lessonrun import child_env, lesson_command

try:
    import resource
except ImportError:  # Windows
    resource = None

REPO = Path(__file__).resolve().parent.parent
PREFIX = "收到了: ".encode()
FD_LIMIT = 32
CLIENTS = 40  # more than the limit lets the server accept
HAS_EPOLL = hasattr(select, "epoll")
needs_epoll = pytest.mark.skipif(not HAS_EPOLL, reason="epoll is Linux-only")
pytestmark = pytest.mark.skipif(resource is None or not Path("/proc/self/stat").exists(),
                                reason="needs setrlimit and /proc")

SERVERS = [
    pytest.param(("poll-server",), id="poll"),
    pytest.param(("epoll-server",), id="epoll", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge"), id="epoll-edge", marks=needs_epoll),
    pytest.param(("select-server",), id="select"),
    pytest.param(("selectors-server",), id="selectors"),
]


def small_fd_limit() -> None:
    """Runs in the child between fork and exec: the server starts with FD_LIMIT descriptors."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))


class LimitedServer:
    def __init__(self, args: tuple[str, ...]) -> None:
        self.process = subprocess.Popen(
            lesson_command(*args, "--port", "0"), cwd=REPO, env=child_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
            preexec_fn=small_fd_limit,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()
        found = self.wait_for(r"^listening on \S+:(\d+)$", 20)
        self.address = ("127.0.0.1", int(found.group(1)))

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.02)  # polling collected output, with a deadline
        pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-30:]))

    def cpu_seconds(self) -> float:
        """utime + stime of the server process, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)


@pytest.fixture
def limited():
    servers: list[LimitedServer] = []

    def start(args: tuple[str, ...]) -> LimitedServer:
        server = LimitedServer(args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def answered(sock: socket.socket, message: bytes, timeout: float, already_sent: bool = False) -> bool:
    """Send `message` (unless it was sent before) and wait (up to `timeout`) for its whole answer."""
    sock.settimeout(timeout)
    try:
        if not already_sent:
            sock.sendall(message)
        want, data = len(PREFIX) + len(message), b""
        while len(data) < want:
            chunk = sock.recv(want - len(data))
            if not chunk:
                return False
            data += chunk
        return data == PREFIX + message
    except OSError:
        return False


def fill_up(server: LimitedServer) -> tuple[list[socket.socket], list[socket.socket]]:
    """Connect CLIENTS clients; return (served, waiting): those the server accepted and the rest.

    The first waiting client has sent "hi" already and is still owed its answer.
    """
    clients = [socket.create_connection(server.address, timeout=10) for _ in range(CLIENTS)]
    server.wait_for(r"accept\(\) failed.*(Too many open files|too many open files)", 20)
    served, waiting = [], []
    for sock in clients:
        (served if answered(sock, b"hi", 0.5 if served else 5) else waiting).append(sock)
        if waiting and len(waiting) + len(served) < CLIENTS:
            waiting.extend(clients[len(served) + len(waiting):])
            break
    assert served and waiting, f"expected some clients served and some waiting: {len(served)}, {len(waiting)}"
    return served, waiting


@pytest.mark.parametrize("args", SERVERS)
def test_at_the_descriptor_limit_the_server_rests_and_says_so_once_a_second(limited, args):
    server = limited(args)
    served, waiting = fill_up(server)
    before_lines, before_cpu, started = len(server.lines), server.cpu_seconds(), time.monotonic()
    # The measuring window: 1.5 s in which the first waiting client gets no answer (there is
    # no descriptor for it), and the server, with nothing it can do, should rest.
    nothing, _, _ = select.select([waiting[0]], [], [], 1.5)
    window = time.monotonic() - started
    cpu = server.cpu_seconds() - before_cpu
    failures = [line for line in server.lines[before_lines:] if "accept()" in line]
    assert not nothing, "a client past the limit cannot be served"
    assert answered(served[0], b"still here", 5), "a served client is still answered at EMFILE"
    for sock in served + waiting:
        sock.close()
    assert cpu < 0.35 * window, f"the server used {cpu:.2f} s of CPU in {window:.1f} s at EMFILE"
    assert len(failures) <= 3, f"{len(failures)} accept() lines in {window:.1f} s: {failures[:3]}"


@pytest.mark.parametrize("args", SERVERS)
def test_clients_waiting_at_the_limit_are_served_once_others_leave(limited, args):
    """The notes' edge-triggered trap: the listener's one edge came while accept() failed."""
    server = limited(args)
    served, waiting = fill_up(server)
    for sock in served:
        sock.close()  # descriptors free up; nobody new connects
    try:
        late = [answered(waiting[0], b"hi", 5, already_sent=True)]
        late += [answered(sock, b"my turn", 5) for sock in waiting[1:]]
        assert all(late), f"{late.count(False)} of {len(waiting)} waiting clients were never served"
    finally:
        for sock in waiting:
            sock.close()
