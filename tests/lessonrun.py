"""How the lesson tests start `python -m lessons run ...`: one command line, one environment."""

from __future__ import annotations

import os
import signal
import sys


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
