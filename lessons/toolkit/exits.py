"""How every `learn` command ends: its exit code, its error sentence, Ctrl-C, a closed output.

The rules are written down once, in docs/style.md; the root command (`lessons.cli`)
applies them to every command, so a lesson only raises `UserError` or `RunFailure`:
- 0 done, 1 failed at run time, 2 a mistake the user can fix, 130 interrupted by Ctrl-C;
- an error is one plain sentence on stderr: `error: ...` ending with a full stop;
- Ctrl-C is one calm line on a fresh line, never a traceback;
- a closed stdout (`| head -1`, a pager quit early) ends the command quietly, exit 0.

Imports stay light: the root command loads this module on every start.
"""

from __future__ import annotations

import os
import re
import select
import sys
import threading
from typing import Any, Callable

from lessons.toolkit.i18n import _

DONE = 0
FAILED = 1
USAGE = 2
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
CHINESE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")  # CJK ideographs and full-width punctuation

# poll() does not exist on Windows; there a closed output shows up only as a failed write
CAN_POLL = hasattr(select, "poll")
_CLOSING_EVENTS = (select.POLLERR | select.POLLHUP | select.POLLNVAL) if CAN_POLL else 0


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(fd)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def reader_gone(fd: int) -> bool:
    """True when nobody will ever read what is written to `fd` (a pipe whose reader exited)."""
    if not CAN_POLL:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        return any(events & _CLOSING_EVENTS for _, events in poller.poll(0))
    except OSError:
        return True


class OutputWatch:
    """Tells, at the end of a command, whether its stdout was closed under it.

    Either the pipe's reader is gone now, or something (rich does this on EPIPE) has
    already pointed stdout at /dev/null: then the descriptor is another file than at start.
    """

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.at_start = _identity(fd)

    def closed(self) -> bool:
        return reader_gone(self.fd) or _identity(self.fd) != self.at_start


def silence_closed_output() -> None:
    """Point a closed stdout (and stderr, if closed too) at /dev/null.

    As the Python docs advise for SIGPIPE: otherwise the interpreter's last flush of
    the buffered text fails again and prints "Exception ignored ... BrokenPipeError".
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            if reader_gone(fd):
                os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def quiet_broken_pipes_in_threads(output: OutputWatch) -> Callable[[], None]:
    """A thread that dies of EPIPE on a closed stdout says nothing; returns the undo."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if issubclass(args.exc_type, BrokenPipeError) and output.closed():
            return
        previous(args)

    threading.excepthook = hook

    def undo() -> None:
        threading.excepthook = previous

    return undo


def interrupt_when_output_closes(fd: int = 1) -> None:
    """For a command that waits (a receiver in accept()): stop as Ctrl-C would once stdout's reader leaves.

    Waiting, it writes nothing, so no write ever meets EPIPE and `learn run struct-recv |
    head -1` would wait forever. A thread sleeps in poll() on the pipe, which reports
    POLLERR the moment the reader is gone, and sends SIGINT to the main thread: the
    command cleans up as for Ctrl-C, and the root command ends it quietly with exit 0.
    Only for pipes (a terminal or a file has no reader to lose), and only while SIGINT
    is handled by Python (a shell starts background jobs with SIGINT ignored).
    """
    import signal
    import stat

    try:
        if not (CAN_POLL and hasattr(signal, "pthread_kill") and stat.S_ISFIFO(os.fstat(fd).st_mode)):
            return
    except OSError:
        return
    main_thread = threading.main_thread().ident

    def wait_for_the_reader_to_leave() -> None:
        try:
            poller = select.poll()
            poller.register(fd, 0)  # no events asked for: POLLERR and POLLHUP always come
            while not any(events & _CLOSING_EVENTS for _, events in poller.poll()):
                pass
            if callable(signal.getsignal(signal.SIGINT)) and main_thread is not None:
                signal.pthread_kill(main_thread, signal.SIGINT)
        except Exception:  # noqa: BLE001 - the process is ending under us (main thread gone, fd closed)
            return

    threading.Thread(target=wait_for_the_reader_to_leave, name="output-watch", daemon=True).start()


def start_fresh_line() -> None:
    """After Ctrl-C the terminal has echoed `^C` where the cursor was: go to a new line first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream.isatty():
                stream.write("\n")
                stream.flush()
                return
        except (OSError, ValueError):
            continue


def as_sentence(text: str) -> str:
    """A message as the style wants it: no capital after `error: ` (unless a name), a full stop
    (a Chinese one, 。, after Chinese text)."""
    text = text.strip()
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        text = text[0].lower() + text[1:]
    if not text.endswith((".", "?", "!", "。", "？", "！")):
        text += "。" if CHINESE.search(text) else "."
    return text


def print_error(message: str) -> None:
    """One plain sentence on stderr: `error: ...`; red when stderr is a colour terminal."""
    from rich.console import Console
    from rich.markup import escape

    label = _("error:")
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]{label}[/] {escape(as_sentence(message))}")


def print_notice(message: str) -> None:
    """A plain line on stderr that is not an error (what Ctrl-C stopped, for instance)."""
    print(as_sentence(message), file=sys.stderr, flush=True)
