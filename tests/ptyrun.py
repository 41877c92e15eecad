"""Run a command as the foreground process of a real pseudo-terminal, for what only a terminal shows."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from pathlib import Path

from lessonrun import child_env, default_sigint

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0


def run_in_a_terminal(args: list[str], columns: int = 80, rows: int = 24,
                      **env_changes: str) -> tuple[int, int]:
    """Start `python args...` with its stdin, stdout and stderr on a new terminal; (pid, master fd)."""
    env = dict(child_env(), COLUMNS=str(columns), LINES=str(rows), TERM="xterm")
    env.update(env_changes)
    pid, master = pty.fork()
    if pid == 0:  # the child: a new session, the terminal is its controlling terminal
        try:
            default_sigint()  # Ctrl-C typed at the terminal works even if this test run ignores SIGINT
            fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, *args], env)
        finally:
            os._exit(127)
    return pid, master


def read_until(fd: int, pattern: bytes, deadline: float) -> bytes:
    """Read the terminal until `pattern` shows up (or fail at the deadline)."""
    seen = b""
    while pattern not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} within the deadline; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def finish(pid: int, master: int, deadline: float = DEADLINE) -> tuple[bytes, int]:
    """Everything the command still writes, and its exit code."""
    until = time.monotonic() + deadline
    rest = b""
    while True:
        left = until - time.monotonic()
        assert left > 0, "the command did not end"
        ready, _, _ = select.select([master], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO once the child is gone and everything was read
            break
        if not chunk:
            break
        rest += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    return rest, os.waitstatus_to_exitcode(status)
