"""Run `python -m lessons chat serve` as a real subprocess for the conformance suite.

Readiness comes from the server's own words: we wait (with a deadline) for the lines
"listening on ..." and "admin socket ..." it prints before anything else, never sleep.
Both output pipes are drained by threads so a chatty server can never block on a full
pipe, and the text is kept for failure messages.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from chatwire import WireClient, admin_list

ENGINES = ("epoll", "poll", "select", "selectors", "fork")
START_TIMEOUT = 30.0  # seconds for a cold Python start on a busy 2-core machine
STOP_TIMEOUT = 10.0


class OutputPipe:
    """Collects one pipe of the child in a thread; lets a test wait for a line."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.data = bytearray()
        self.ended = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        fd = self.stream.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self.changed:
                if not chunk:
                    self.ended = True
                    self.changed.notify_all()
                    return
                self.data += chunk
                self.changed.notify_all()

    @property
    def text(self) -> str:
        with self.changed:
            return self.data.decode("utf-8", errors="replace")

    def lines(self, count: int, timeout: float) -> list[str] | None:
        """The first `count` complete lines, or None if the pipe ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.data.count(b"\n") < count:
                remaining = deadline - time.monotonic()
                if self.ended or remaining <= 0:
                    return None
                self.changed.wait(remaining)
            return self.data.decode("utf-8", errors="replace").split("\n")[:count]

    def wait_ended(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
            return True


def serve_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "lessons", "chat", "serve", *options]


class ServerProcess:
    """One running chat server process and the addresses it announced."""

    def __init__(self, options: list[str], env: dict[str, str] | None = None, preexec_fn=None) -> None:  # noqa: ANN001
        self.options = options
        self.process = subprocess.Popen(
            serve_command(*options),
            stdin=subprocess.DEVNULL,  # not a terminal: no console administrator
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=preexec_fn,  # e.g. a lower open-file limit for the EMFILE test
        )
        self.stdout = OutputPipe(self.process.stdout)
        self.stderr = OutputPipe(self.process.stderr)
        self.address: tuple[str, int] | None = None
        self.unix_path: str | None = None
        self.admin_path: str = ""

    @classmethod
    def start(cls, *options: str, env: dict[str, str] | None = None, preexec_fn=None) -> ServerProcess:  # noqa: ANN001
        server = cls(list(options), env, preexec_fn)
        try:
            server._read_banner()
        except BaseException:
            server.stop()
            raise
        return server

    def _read_banner(self) -> None:
        lines = self.stdout.lines(2, START_TIMEOUT)
        if lines is None:
            raise AssertionError(f"the server did not announce itself: {self.diagnostics()}")
        listening, admin = lines
        match = re.fullmatch(r"listening on (\S+):(\d+)", listening)
        if match:
            self.address = (match.group(1), int(match.group(2)))
        else:
            assert listening.startswith("listening on /"), f"first line was {listening!r}"
            self.unix_path = listening.removeprefix("listening on ")
        assert admin.startswith("admin socket /"), f"second line was {admin!r}"
        self.admin_path = admin.removeprefix("admin socket ")

    @property
    def port(self) -> int:
        assert self.address is not None
        return self.address[1]

    def connect(self, label: str = "client", rcvbuf: int | None = None) -> WireClient:
        if self.unix_path is not None:
            return WireClient.unix(self.unix_path, label)
        assert self.address is not None
        return WireClient.tcp(self.address, label, rcvbuf)

    def admin(self, label: str = "admin") -> WireClient:
        return WireClient.unix(self.admin_path, label)

    def members(self) -> list[str]:
        admin = self.admin("admin-list")
        try:
            return admin_list(admin)
        finally:
            admin.close()

    def wait_room_empty(self, timeout: float = 15.0) -> None:
        """Wait until the server has noticed every departure, so no stray LEFT leaks on."""
        deadline = time.monotonic() + timeout
        while True:
            names = self.members()
            if not names:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"members still in the room after {timeout} s: {names}")
            time.sleep(0.02)  # polling interval of a deadline loop

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaps the child."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if self.wait_exit(STOP_TIMEOUT) is None:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self.stdout.wait_ended(STOP_TIMEOUT)
        self.stderr.wait_ended(STOP_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()

    def diagnostics(self) -> str:
        return (
            f"exit={self.process.poll()} command={serve_command(*self.options)}\n"
            f"--- stdout ---\n{self.stdout.text[-3000:]}\n--- stderr ---\n{self.stderr.text[-3000:]}"
        )

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_failing_server(*options: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Start a server that should refuse to start; returns its completed process."""
    return subprocess.run(
        serve_command(*options), stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout
    )


def run_admin_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lessons", "chat", "admin", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def world_readable_dir(prefix: str) -> Path:
    """A fresh directory that other uids may traverse (mode 0755), under /tmp.

    Needed to test the admin socket's own 0600 mode: pytest's tmp_path lives below a
    0700 directory, which would stop an unprivileged peer before the socket file does.
    """
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path
