"""Long output on a terminal goes through a pager, as `git log` does; piped output stays plain.

`learn show` prints pages of 100 to 500 lines. On a terminal they go through the user's
pager (`$PAGER`, else `less`), with styles, and long lines wrapped rather than cut at the
terminal's edge. `less` gets `LESS=FRX` unless the user set `LESS`, as git sets it: quit at
once if everything fits on one screen (F), let the colours through (R), and leave the
text on the screen afterwards (X). Quitting the pager early is a normal way to finish.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator

DEFAULT_LESS_OPTIONS = "FRX"
COMMAND_NOT_FOUND = 127  # what the shell exits with when the pager's command does not exist


def pager_command() -> str | None:
    """`$PAGER` as the user set it, else `less` if installed; None means print directly."""
    chosen = os.environ.get("PAGER")
    if chosen is not None:
        return chosen.strip() or None  # PAGER= (empty) asks for no pager
    return "less" if shutil.which("less") else None


def run_pager(command: str, text: str) -> None:
    """Feed `text` to the pager and wait for the reader to quit it (Ctrl-C belongs to the pager).

    A pager that does not exist (the shell's exit status 127) does not swallow the text:
    it is printed directly instead.
    """
    if feed_pager(command, text) == COMMAND_NOT_FOUND:
        sys.stdout.write(text)
        sys.stdout.flush()


def feed_pager(command: str, text: str) -> int:
    env = dict(os.environ)
    env.setdefault("LESS", DEFAULT_LESS_OPTIONS)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as git does: less handles ^C itself
    try:
        process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
        try:
            assert process.stdin is not None
            process.stdin.write(text.encode("utf-8", errors="replace"))
            process.stdin.close()
        except BrokenPipeError:  # quit before reading it all: that is fine
            pass
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def paged(console: Any) -> Iterator[None]:
    """Everything `console` prints inside the block goes through the pager on a terminal."""
    command = pager_command() if console.is_terminal else None
    if command is None:
        yield
        return
    from rich.pager import Pager

    class CommandPager(Pager):
        def show(self, content: str) -> None:
            run_pager(command, content)

    with console.pager(pager=CommandPager(), styles=True):
        yield
