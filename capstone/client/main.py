"""The entry point: interactive in a terminal, pipe mode otherwise; what each ending exits with."""

from __future__ import annotations

import signal
import sys

from capstone.client.interactive import run_interactive
from capstone.client.link import Target
from capstone.client.pipe import run_pipe
from capstone.client.session import Notice, say_on_fresh_line
from capstone.client.view import View


def stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM: leave the room the way Ctrl-C does (LEAVE, one line, exit 0)."""
    raise KeyboardInterrupt


def run_client(target: Target, name: str | None = None, lang: str | None = None, linger: float = 0.0) -> int:
    """`learn chat join`: interactive in a terminal, pipe mode otherwise.

    Exit 0 when you leave, Ctrl-C included; 1 with a plain notice when you were kicked
    or the server stopped; errors go to the CLI as UserError (2) or RunFailure (1).
    """
    view = View(lang)
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return run_interactive(target, view, name)
        return run_pipe(target, view, name, linger)
    except KeyboardInterrupt:  # while connecting or joining: nobody is in the room yet
        say_on_fresh_line(view.texts["interrupted"], after_echoed_ctrl_c=True)
        return 0
    except Notice as notice:
        say_on_fresh_line(str(notice))
        return 1
