"""A parent's toolkit for its children: fork safely, reap always, and die with the parent.

`Children` is the safe shape of a fork that the process lessons share (fork-demo shows
why each step is there): flush before forking, always os._exit in the child, always
waitpid in the parent, and kill and reap whatever is left on every way out, Ctrl-C too.
`prctl` asks the kernel for the two things only it can do: signal a child when its
parent dies (however it dies), and adopt the orphans below a process (a subreaper).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from lessons.toolkit import procfs
from lessons.toolkit.common import RunFailure
from lessons.toolkit.i18n import _
from lessons.toolkit.narrate import Narrator

NOBODY = 65534  # the conventional uid/gid of "nobody": an ordinary, unprivileged user
HANDED_OVER_SIGNALS = {getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}


class Children:
    """The children a lesson forked, so every exit path (Ctrl-C too) kills and reaps them.

    A child nobody waits for stays a zombie; a child left running when we exit is an orphan.
    Use it as a context manager: leaving the block kills and reaps whatever is left.
    """

    def __init__(self) -> None:
        self.unreaped: set[int] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill_all()

    def fork(self, body: Callable[[], int | None]) -> int:
        """Run `body` in a new child and return its pid; the child never returns from here.

        Flushing first stops output buffered before fork() being printed twice, and
        os._exit stops the child running the parent's code (finally blocks, atexit, the CLI).
        """
        sys.stdout.flush()
        sys.stderr.flush()
        # Hold these signals across fork(): one that reaches the child before it has reset
        # its handlers is then delivered after the reset, instead of running ours or being lost.
        held = hold_signals()
        pid = os.fork()
        if pid == 0:  # the child: run the body, then leave at once
            code = 1
            try:
                leave_signals_to_parent()
                release_signals(held)
                code = body() or 0
            except BaseException as err:  # noqa: BLE001 - whatever happens, the child must _exit
                print(f"child {os.getpid()} failed: {err!r}", file=sys.stderr)
            finally:
                flush_quietly()
                os._exit(code)
        self.unreaped.add(pid)  # before unblocking: a pending Ctrl-C must find it registered
        release_signals(held)
        return pid

    def wait(self, pid: int) -> int:
        """waitpid: collect the exit status, which removes the zombie. -N means killed by signal N."""
        _, status = os.waitpid(pid, 0)
        self.unreaped.discard(pid)
        return os.waitstatus_to_exitcode(status)

    def wait_with_usage(self, pid: int) -> tuple[int, float]:
        """wait4: like wait(), and also the CPU seconds (user + system) the child used in its life."""
        _pid, status, usage = os.wait4(pid, 0)
        self.unreaped.discard(pid)
        return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime

    def ask(self, question: Callable[[], str]) -> str:
        """Run `question` in a throwaway child and return its answer, sent back through a pipe.

        For experiments that must not touch this process: dropping privileges, lowering limits.
        """
        read_end, write_end = os.pipe()

        def answer() -> None:
            os.close(read_end)
            os.write(write_end, question().encode())

        pid = self.fork(answer)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            reply = pipe.read().decode(errors="replace")
        code = self.wait(pid)
        if code != 0:
            raise RunFailure(_("a helper child process failed with exit status {code}.").format(code=code))
        return reply

    def kill_all(self) -> None:
        """SIGKILL (it also ends stopped processes) and reap every child still unreaped."""
        for pid in sorted(self.unreaped):
            try:
                os.kill(pid, signal.SIGKILL)
                self.wait(pid)
            except (ProcessLookupError, ChildProcessError):  # someone else reaped it already
                self.unreaped.discard(pid)


def reap_exited() -> dict[int, int]:
    """Collect every child that has already exited, without waiting: pid -> exit code.

    waitpid(-1, WNOHANG) until it says "none ended" (0) or "no children" (ECHILD). A
    process that forks many children (the fork engine's hub, the check sandbox) calls it
    whenever SIGCHLD may have come, so none stays a zombie."""
    reaped = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped[pid] = os.waitstatus_to_exitcode(status)


def leave_signals_to_parent() -> None:
    """In a child: Ctrl-C reaches the whole process group, but only the parent acts on it
    (it kills and reaps us); SIGTERM and SIGHUP get back their default effect: ending us."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def flush_quietly() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop a child from exiting
            pass


def drop_privileges(uid: int = NOBODY, gid: int = NOBODY) -> None:
    """Become an ordinary user if we are root; irreversible, so only in a throwaway child."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def hold_signals() -> set[signal.Signals]:
    """Block Ctrl-C, SIGTERM and SIGHUP until release_signals: around a bare os.fork(), so an
    interruption cannot land between fork() and the try whose finally reaps the child."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, HANDED_OVER_SIGNALS)


def release_signals(previous: set[signal.Signals]) -> None:
    """Unblock them again; a signal that came meanwhile is delivered now."""
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def signals_exit_cleanly() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit so finally blocks (which reap children) run."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {number: signal.signal(number, leave) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def check_nothing_left(say: Narrator, interrupted: bool = False) -> None:
    """The lesson's promise, checked from /proc: every child exited and was reaped.

    When the lesson was interrupted this is its one closing line, and it says so.
    """
    if not procfs.PROC.is_dir():
        if interrupted:
            say("summary", _("interrupted: every child was killed and reaped"))
        return
    left = procfs.children(os.getpid())
    if left:
        raise RunFailure(_("the lesson left child processes behind: {left}.").format(left=left))
    if interrupted:
        say("summary", _("interrupted; no child process left: every child was killed and reaped"))
    else:
        say("summary", _("no child process left: every child exited and was reaped, no orphan, no zombie"))


@contextmanager
def closing_calmly(say: Narrator) -> Iterator[None]:
    """A demo's frame: on Ctrl-C (exit 130) or SIGTERM/SIGHUP, one closing line and no traceback.

    A demo ends by itself, so an interruption is not a normal end: the exit status says so.
    On a terminal the line starts on a fresh line, not glued to the echoed ^C.
    """
    try:
        with signals_exit_cleanly():
            yield
    except KeyboardInterrupt:
        if say.console.is_terminal:
            say.console.print()
        check_nothing_left(say, interrupted=True)
        raise SystemExit(130) from None
    except SystemExit:
        check_nothing_left(say, interrupted=True)
        raise


# --- prctl: what only the kernel can promise ----------------------------------------------

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36  # Linux 3.4+


@functools.cache
def libc() -> Any:
    """The C library, loaded in the parent so that a new child has nothing to load."""
    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> bool:
    """prctl(2) with one argument (Linux); True if the kernel accepted it."""
    return libc().prctl(option, value, 0, 0, 0) == 0


def signal_when_parent_dies(signum: int, parent: int) -> bool:
    """Ask the kernel to send this process `signum` when `parent` dies (PR_SET_PDEATHSIG).

    A parent killed with SIGKILL runs no code, so only the kernel can tell its children.
    False if the parent died already, between fork() and here: then no signal will come.
    """
    prctl(PR_SET_PDEATHSIG, signum)
    return os.getppid() == parent


def die_with_parent(parent: int) -> None:
    """In a child: be SIGKILLed when the parent dies; end now if it is already gone.

    Our finally blocks reap every child, but without this a busy loop whose parent was
    SIGKILLed would spin on as an orphan.
    """
    if not signal_when_parent_dies(signal.SIGKILL, parent):
        os._exit(1)


def become_subreaper() -> bool:
    """Orphans below this process are re-parented to it instead of to init (Linux 3.4+)."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1)
