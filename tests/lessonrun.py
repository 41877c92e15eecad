"""How the tests start and clean up processes: `python -m lessons run ...` with one command
line and one environment, a lesson's whole session killed, an action run as another user."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import traceback
from typing import Callable

from lessons.toolkit import procfs
from lessons.toolkit.children import drop_privileges


def lesson_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lessons", "run", *args]


def child_env() -> dict[str, str]:
    """Plain, unbuffered output: no colour codes to parse around, lines as soon as printed."""
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "CLICOLOR_FORCE")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    return env


def default_sigint() -> None:
    """In a child before exec: Ctrl-C (SIGINT) acts as it does for a learner, even when this test
    run ignores it (a shell starts background jobs, `pytest &`, with SIGINT ignored, and an
    ignored signal stays ignored across fork and exec, so Python would never raise KeyboardInterrupt).

    Pass it as `preexec_fn=default_sigint`, or call it in a forked child before `os.execve`.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_session(process: subprocess.Popen) -> None:
    """Clean-up for a failed test: nothing of the lesson's session may outlive it."""
    for info in procfs.in_session(process.pid):
        try:
            os.kill(info.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.kill()
    process.wait(timeout=30)


def as_nobody(action: Callable[[], dict]) -> dict:
    """Run `action()` in a forked child turned into user 65534 (after all imports: that user
    cannot start this interpreter under root's 0700 home); its JSON answer, or its traceback."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            drop_privileges()
            try:
                answer = action()
            except BaseException:  # noqa: BLE001 - reported to the test
                answer = {"error": traceback.format_exc()}
            os.write(write_fd, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    try:
        while select.select([read_fd], [], [], 30)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    return json.loads(data or b"{}")
