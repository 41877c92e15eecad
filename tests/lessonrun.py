"""How the lesson tests start `python -m lessons run ...`: one command line, one environment."""

from __future__ import annotations

import os
import sys


def lesson_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lessons", "run", *args]


def child_env() -> dict[str, str]:
    """Plain, unbuffered output: no colour codes to parse around, lines as soon as printed."""
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "CLICOLOR_FORCE")}
    env.update(PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb")
    return env
