"""fork-demo: the notes' fork.py, with every claim about os.fork() shown on a real process.

os.fork() copies the calling process. Both copies continue from the line after the
call: the parent sees the child's pid, the child sees 0. The parts below show the
return values, the race between the two, copied memory, a shared file offset,
zombies and waitpid, how a failing fork looks in Python, the duplicated-output trap,
and forking with threads: Python 3.12's warning, and a lock held by another thread that
stays locked in the child.

`Children` (lessons/toolkit/children.py) is the safe shape of a fork that the process lessons
share: flush before forking, always os._exit in the child, always waitpid in the parent.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from lessons.toolkit import procfs
from lessons.toolkit.children import (NOBODY, Children, check_nothing_left, closing_calmly, drop_privileges,
                              flush_quietly, hold_signals, release_signals)
from lessons.toolkit.common import RunFailure, UserError, wait_for
from lessons.toolkit.i18n import N_, _, ngettext
from lessons.toolkit.narrate import Narrator


# --- 1. two return values -------------------------------------------------------------


def show_return_values(say: Narrator) -> None:
    say.rule(_("1. fork() returns twice: the child's pid in the parent, 0 in the child"))
    say("parent", _("I am pid {pid} and I call os.fork() once").format(pid=os.getpid()))
    sys.stdout.flush()  # see part 7: unflushed output would be copied into the child
    held = hold_signals()  # see hold_signals: a Ctrl-C must not leave this child unreaped
    pid = os.fork()
    if pid == 0:  # only the child gets here, starting on the line after fork()
        try:
            say("child", _("fork() returned 0 in the child; I am pid {pid}, my parent is {ppid}").format(
                pid=os.getpid(), ppid=os.getppid()))
        finally:
            flush_quietly()
            os._exit(0)
    try:
        release_signals(held)
    finally:
        os.waitpid(pid, 0)  # wait for the child first, so the two lines come in this order
    say("parent", _("fork() returned {pid} in the parent: the child's pid").format(pid=pid))
    say("explain", _("The 'I call os.fork() once' line was printed once: the child did not run it "
                     "again, it started on the line after fork()."))


# --- 2. no fixed order ----------------------------------------------------------------


def race_once() -> tuple[str, int, int]:
    """Fork once; both processes write '<who> <time>' into one pipe right after fork().

    A pipe keeps the order the writes reached the kernel, so its first line says who won;
    the child reports its own clock reading, so the gap needs no printing from the child.
    Also returns how long os.fork() took in the parent: the kernel's copy of the page
    tables and descriptor table is done inside that call, before it returns.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    held = hold_signals()  # see hold_signals: a Ctrl-C must not leave this child unreaped
    before_fork = time.monotonic_ns()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write_end, f"child {time.monotonic_ns()}\n".encode())
        finally:
            os._exit(0)
    try:
        os.write(write_end, f"parent {time.monotonic_ns()}\n".encode())
        release_signals(held)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            lines = pipe.read().decode().split("\n")[:2]
    finally:
        os.waitpid(pid, 0)
    stamps = dict(line.split() for line in lines)
    first = lines[0].split()[0]
    return first, int(stamps["child"]) - int(stamps["parent"]), int(stamps["parent"]) - before_fork


def times(count: int) -> str:
    return ngettext("{count} time", "{count} times", count).format(count=count)


def median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2]


def show_order(say: Narrator, repeat: int) -> None:
    say.rule(_("2. Who runs first after fork()? {repeat} races").format(repeat=repeat))
    results = [race_once() for _ in range(repeat)]
    parent_first = sum(1 for first, _, _ in results if first == "parent")
    say("result", _("parent wrote first {parent_times}, child wrote first {child_times} (out of {repeat})").format(
        parent_times=times(parent_first), child_times=times(repeat - parent_first), repeat=repeat))
    say("result", _("median time os.fork() took in the parent, until it returned: {micro} µs").format(
        micro=median([in_fork for _, _, in_fork in results]) // 1000))
    say("result", _("median time from the parent's write to the child's: {micro} µs").format(
        micro=median([gap for _, gap, _ in results]) // 1000))
    say("explain", _("The kernel copied the page tables and the descriptor table inside fork(), before it "
                     "returned to the parent. The child's extra delay is Python's own after-fork work in "
                     "the child (re-initialising its runtime and threading state, running "
                     "os.register_at_fork hooks) and copy-on-write page faults: every page the child "
                     "writes to is copied on that first write. A C child runs within tens of microseconds."))
    say("explain", _("The scheduler decides, and the answer changes with the kernel, the number of "
                     "CPUs and the load. Code that needs an order must make it (a pipe, waitpid, a "
                     "lock)."))


# --- 3. copied memory -----------------------------------------------------------------


def show_copied_memory(say: Narrator, children: Children) -> None:
    say.rule(_("3. Memory is copied: the child changes its copy, not ours"))
    numbers = [1, 2, 3]

    def change_it() -> str:
        numbers.append(4)
        return _("{numbers} at address {address:#x}").format(numbers=numbers, address=id(numbers))

    say("child", _("after numbers.append(4) the child's list is {numbers}").format(numbers=children.ask(change_it)))
    say("parent", _("the parent's list is unchanged: {numbers} at address {address:#x}").format(
        numbers=numbers, address=id(numbers)))
    say("explain", _("Same address, different contents: each process has its own address space. "
                     "Linux copies a page only when one side writes to it (copy-on-write), so "
                     "fork() is cheap."))


# --- 4. shared open files -------------------------------------------------------------


def write_lines(fd: int, who: str, count: int) -> None:
    """Equal-length lines, so overwrites line up. The short pause stands for the work a real
    program does between writes; without it one process often ends before the other starts."""
    for number in range(count):
        os.write(fd, f"{who:<6} {number:05d}\n".encode())
        time.sleep(0.0005)


def race_into_file(children: Children, path: Path, count: int, shared: bool) -> list[str]:
    """Parent and child each write `count` lines to `path`, at the same moment.

    shared=True: the child uses the descriptor it inherited, so both move one file offset.
    shared=False: the child opens the file again and gets its own offset, starting at 0.
    A new Python child needs most of a millisecond before it runs at full speed (its after-fork
    work, copy-on-write faults), so it says "ready" and waits for "go" before writing.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()

    def child_writes() -> None:
        own_fd = fd if shared else os.open(path, os.O_WRONLY)
        os.write(ready_write, b"ready")
        os.read(go_read, 2)
        write_lines(own_fd, "child", count)

    pid = children.fork(child_writes)
    os.read(ready_read, 5)
    os.write(go_write, b"go")
    write_lines(fd, "parent", count)
    children.wait(pid)
    for descriptor in (fd, ready_read, ready_write, go_read, go_write):
        os.close(descriptor)
    return path.read_text().splitlines()


def runs_of(lines: list[str]) -> str:
    """'parent×37 child×200 parent×163': who wrote each stretch of the file."""
    runs: list[list[object]] = []
    for line in lines:
        who = line.split()[0]
        if runs and runs[-1][0] == who:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([who, 1])
    shown = " ".join(f"{who}×{count}" for who, count in runs[:8])
    more = ngettext(" ... ({count} stretch)", " ... ({count} stretches)", len(runs)).format(count=len(runs))
    return shown + (more if len(runs) > 8 else "")


def show_shared_file(say: Narrator, children: Children, count: int) -> None:
    say.rule(_("4. Open files are shared: one descriptor, one file offset"))
    with tempfile.TemporaryDirectory(prefix="learn-fork-") as folder:
        path = Path(folder) / "both.txt"
        shared = race_into_file(children, path, count, shared=True)
        say("result", _("inherited descriptor: {total} lines in the file ({count} from each), none "
                        "lost").format(total=len(shared), count=count))
        say("result", _("who wrote where: {runs}").format(runs=runs_of(shared)))
        separate = race_into_file(children, path, count, shared=False)
        parent_lines = sum(1 for line in separate if line.startswith("parent"))
        say("result", _("file opened again in the child: only {survived} of {written} lines survive "
                        "({parent_lines} parent, {child_lines} child)").format(
            survived=len(separate), written=2 * count, parent_lines=parent_lines, child_lines=len(separate) - parent_lines))
    say("explain", _("fork() copies the descriptor table, not the open files: both descriptors "
                     "point at one open file with one offset, so each write lands after the "
                     "other's. A second open() has its own offset at 0, and the two overwrite each "
                     "other. The terminal is shared the same way, which is why both can print to "
                     "it."))


# --- 5. zombies and waitpid -----------------------------------------------------------


def state_letter(pid: int) -> str | None:
    """The ps state letter of a process: from /proc on Linux, from `ps` where there is no /proc."""
    if procfs.PROC.is_dir():
        return procfs.state(pid)
    result = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], check=False, capture_output=True, text=True)
    return result.stdout.strip()[:1] or None


def show_zombie(say: Narrator, children: Children) -> None:
    say.rule(_("5. An exited child is a zombie until the parent waits for it"))
    pid = children.fork(lambda: 7)
    try:
        wait_for(lambda: state_letter(pid) == "Z", timeout=15)
    except TimeoutError:
        raise RunFailure(_("child {pid} did not become a zombie within 15 s; is the machine "
                           "overloaded?").format(pid=pid)) from None
    say("zombie", _("child {pid} has exited with status 7, we have not waited yet: state Z "
                    "({state})").format(pid=pid, state=procfs.describe_state('Z')))
    code = children.wait(pid)
    say("reap", _("os.waitpid({pid}, 0) returned; os.waitstatus_to_exitcode(status) = {code}").format(pid=pid, code=code))
    gone = state_letter(pid) is None
    if gone:
        say("reap", _("after waitpid the zombie is gone: no process {pid} any more").format(pid=pid))
    else:
        say("reap", _("after waitpid the zombie is STILL THERE: process {pid} still exists").format(pid=pid))
    sleeper = children.fork(lambda: signal.pause() or 0)
    os.kill(sleeper, signal.SIGTERM)
    code = children.wait(sleeper)
    say("reap", _("a child killed with SIGTERM reads back as {code}: minus the signal number "
                  "({signal})").format(code=code, signal=signal.Signals(-code).name if code < 0 else _('not a signal')))
    say("explain", _("The kernel keeps an exited child's pid and status until the parent collects "
                     "them with wait. If the parent dies first, the orphan is adopted by init (or "
                     "a subreaper), which reaps it."))


# --- 6. a failing fork ----------------------------------------------------------------


def fork_under_process_limit() -> str:
    """In a throwaway child: become an ordinary user, allow one process, and try to fork."""
    import resource

    drop_privileges()
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
    try:
        pid = os.fork()
    except OSError as err:
        name = errno.errorcode.get(err.errno or 0, "?")
        return _("uid {uid}, RLIMIT_NPROC=1: os.fork() raised {error} [{name}]").format(
            uid=os.getuid(), error=type(err).__name__, name=name)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return _("uid {uid}, RLIMIT_NPROC=1: os.fork() succeeded (this process is privileged)").format(uid=os.getuid())


def show_failure(say: Narrator, children: Children) -> None:
    say.rule(_("6. When fork() fails: C returns -1, Python raises OSError"))
    say("explain", _("The notes say fork returns a negative number on failure. That is the C "
                     "function: it returns -1 and sets errno (EAGAIN: too many processes; ENOMEM). "
                     "Python checks for you and raises OSError, so a Python program never sees a "
                     "negative pid."))
    if os.geteuid() == 0:
        say("explain", _("We run as root, and root ignores RLIMIT_NPROC, so the child first drops "
                         "to uid {uid} (nobody).").format(uid=NOBODY))
    say("result", children.ask(fork_under_process_limit))


# --- 7. output printed twice ----------------------------------------------------------

BEFORE_FORK = """\
import os, sys
print("printed once, before fork")
{flush}pid = os.fork()
if pid == 0:
    {child_ends}
else:
    os.waitpid(pid, 0)
"""

DUPLICATION_CASES = (
    # (what the child Python does, flush line, how the child ends, stdout is a terminal)
    (N_("no flush, child exits normally (the notes' shape)"), "", "pass", False),
    (N_("the same, but stdout is a terminal (a pty)"), "", "pass", True),
    (N_("fix 1: sys.stdout.flush() before fork"), "sys.stdout.flush()\n", "pass", False),
    (N_("fix 2: the child ends with os._exit(0)"), "", "os._exit(0)", False),
)


def without_unbuffered() -> dict[str, str]:
    """This machine may set PYTHONUNBUFFERED=1, which hides the effect: remove it for the child."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}


def run_python(script: str, terminal: bool) -> str:
    """Run `script` in a new Python whose stdout is a pipe, or a pseudo-terminal; return the output."""
    command = [sys.executable, "-c", script]
    if not terminal:
        return subprocess.run(command, check=False, env=without_unbuffered(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30).stdout
    import pty

    controller, terminal_end = pty.openpty()
    with subprocess.Popen(command, env=without_unbuffered(), stdin=subprocess.DEVNULL,
                          stdout=terminal_end, stderr=subprocess.DEVNULL) as process:
        os.close(terminal_end)
        output = read_until_closed(controller, timeout=30)
        process.wait(timeout=30)
    return output.replace("\r\n", "\n")


def read_until_closed(fd: int, timeout: float) -> str:
    """Read a pty until every writer has closed it (Linux reports EIO then, macOS EOF)."""
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError as err:
                if err.errno == errno.EIO:
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def show_duplicated_output(say: Narrator) -> None:
    say.rule(_("7. Output printed before fork() can come out twice"))
    for label, flush, child_ends, terminal in DUPLICATION_CASES:
        output = run_python(BEFORE_FORK.format(flush=flush, child_ends=child_ends), terminal)
        copies = output.count("printed once, before fork")
        say("result", _("{case}: the line appeared {times}").format(case=_(label), times=times(copies)))
    say("explain", _("print() to a pipe or file is block-buffered: the line waits in the process's "
                     "memory, fork() copies that memory, and both processes flush it at exit. A "
                     "terminal is line-buffered, so the line was already written. Flush before "
                     "fork(), or end the child with os._exit() (which skips flushing: flush the "
                     "child's own output first)."))


# --- 8. threads and fork --------------------------------------------------------------

FORK_WITH_A_THREAD = """\
import os, threading
stop = threading.Event()
helper = threading.Thread(target=stop.wait)
helper.start()
pid = os.fork()  # this process has two threads now
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
stop.set()
helper.join()
"""


def fork_with_a_thread(python: str = sys.executable) -> str:
    """Run a Python that forks while a second thread runs; return the warnings it printed."""
    result = subprocess.run([python, "-W", "default::DeprecationWarning", "-c", FORK_WITH_A_THREAD],
                            check=False, env=without_unbuffered(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    return "\n".join(line.strip() for line in result.stderr.splitlines() if "Warning" in line)


LOCK_HELD_AT_FORK = """\
import logging, os, sys, threading
ours = threading.Lock()
handler = logging.StreamHandler(sys.stderr)
holding, done = threading.Event(), threading.Event()

def hold_both_locks():
    with ours:
        handler.acquire()
        holding.set()
        done.wait()
        handler.release()

holder = threading.Thread(target=hold_both_locks)
holder.start()
holding.wait()
pid = os.fork()  # the holder thread holds both locks right now; the child gets no holder
if pid == 0:
    got_ours = ours.acquire(timeout={wait})
    got_logging = handler.lock.acquire(timeout={wait})
    os.write(1, f"{{got_ours}} {{got_logging}} {{threading.active_count()}}".encode())
    os._exit(0)
os.waitpid(pid, 0)
done.set()
holder.join()
"""


def lock_held_at_fork(wait: float = 0.3) -> tuple[bool, bool, int]:
    """Fork while another thread holds our own Lock and a logging handler's lock.

    Returns what the child saw: could it take our lock, could it take logging's lock
    (within `wait` seconds each), and how many threads it has. Runs in a new Python so
    that this lesson itself never forks with a thread running.
    """
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", LOCK_HELD_AT_FORK.format(wait=wait)],
                            check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    fields = result.stdout.split()
    if result.returncode != 0 or len(fields) != 3:
        raise RunFailure(_("the lock experiment failed: {error}").format(error=result.stderr.strip()[-200:]))
    return fields[0] == "True", fields[1] == "True", int(fields[2])


def show_thread_warning(say: Narrator) -> None:
    say.rule(_("8. Forking a process that has threads"))
    version = ".".join(map(str, sys.version_info[:3]))
    warning = fork_with_a_thread()
    if warning:
        say("result", _("Python {version} warned: {warning}").format(version=version, warning=warning))
    else:
        say("result", _("Python {version} printed no warning when forking with a thread running "
                        "(the DeprecationWarning arrived in Python 3.12)").format(version=version))
    wait = 0.3
    got_ours, got_logging, threads = lock_held_at_fork(wait)
    say("child", _("threading.active_count() is {count} in the child: only the thread that called fork() "
                   "was copied").format(count=threads))
    say("child", _("our own threading.Lock, held by the other thread at fork time: acquire(timeout={wait}) "
                   "returned {got}").format(wait=wait, got=got_ours))
    say("child", _("a logging handler's lock, also held at fork time: acquire(timeout={wait}) "
                   "returned {got}").format(wait=wait, got=got_logging))
    say("explain", _("fork() copies only the thread that called it. Our lock was copied locked, and the "
                     "thread that would release it does not exist in the child: without a timeout, "
                     "acquire() would wait forever. logging is safe here because it re-creates its locks "
                     "in the child (os.register_at_fork); your own locks, a print() whose buffer lock "
                     "another thread held, or the C library's internal locks are not. Python 3.12+ "
                     "warns; fork before starting threads, or use subprocess or multiprocessing's "
                     "'spawn' / 'forkserver'."))


def main(
    repeat: Annotated[int, typer.Option(min=1, max=1000, help=_("How many forks race to write first."))] = 200,
    lines: Annotated[int, typer.Option(min=1, max=10_000, help=_("Lines each process writes in part 4."))] = 100,
) -> None:
    """os.fork() step by step: return values, order, memory, files, zombies, failure, buffers, threads."""
    if not hasattr(os, "fork"):
        raise UserError(_("os.fork() does not exist on Windows; run this lesson on Linux or macOS (or WSL)."))
    say = Narrator()
    with closing_calmly(say):
        with Children() as children:
            run_parts(say, children, repeat, lines)
        check_nothing_left(say)


def run_parts(say: Narrator, children: Children, repeat: int, lines: int) -> None:
    show_return_values(say)
    show_order(say, repeat)
    show_copied_memory(say, children)
    show_shared_file(say, children, lines)
    show_zombie(say, children)
    show_failure(say, children)
    show_duplicated_output(say)
    show_thread_warning(say)
