"""Checks for proc-reader: real child processes put into each state, then read_process().

The check knows the truth on its own: it forked each child itself (so it knows the
parent), set its nice value, and waits for each state with the lesson's own /proc reader
(lessons/toolkit/procfs.py) before asking yours.
"""

from __future__ import annotations

import os
import signal
from types import ModuleType
from typing import Callable, Iterator

import pytest

from lessons.toolkit import procfs
from lessons.exercises.harness import describe_exception
from lessons.toolkit.i18n import N_, _

STATE_WAIT = 10.0


class Child:
    """A forked child that runs `action` and then waits on a pipe; killed and reaped at the end."""

    def __init__(self, action: Callable[[], None] = lambda: None) -> None:
        ready_read, ready_write = os.pipe()
        self.hold_read, self.hold_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never return into the check
            try:
                action()
                os.write(ready_write, b"!")
                os.read(self.hold_read, 1)  # sleeps (state S) until the check lets go
            finally:
                os._exit(0)
        os.close(ready_write)
        os.read(ready_read, 1)  # the action is done
        os.close(ready_read)
        self.reaped = False

    def release(self) -> None:
        """Let the child exit (it becomes a zombie until reaped)."""
        os.write(self.hold_write, b"!")

    def reap(self) -> None:
        if not self.reaped:
            os.waitpid(self.pid, 0)
            self.reaped = True

    def kill(self) -> None:
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap()
        os.close(self.hold_read)
        os.close(self.hold_write)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.kill()


def start_child(children: list[Child], action: Callable[[], None] = lambda: None) -> Child:
    child = Child(action)
    children.append(child)
    return child


def ask(learner: ModuleType, pid: int, what: str):
    try:
        info = learner.read_process(pid)
    except (FileNotFoundError, ProcessLookupError) as err:
        pytest.fail(_("read_process() let {error_name} out for {what} ({error}); return None: processes come "
                      "and go while you look.").format(error_name=type(err).__name__, what=what,
                                                       error=describe_exception(err)), pytrace=False)
    except (IndexError, ValueError) as err:
        pytest.fail(_("read_process() could not parse the stat line of {what}: {error}.").format(
            what=what, error=describe_exception(err)), pytrace=False)
    return info


def expect(learner: ModuleType, pid: int, state: str, nice: int, what: str, ppid: int | None = None) -> None:
    """Ask the learner's read_process() about `pid` and compare with what /proc says (`what`: translated)."""
    ppid = os.getpid() if ppid is None else ppid
    info = ask(learner, pid, what)
    assert info is not None, _("read_process() returned None for {what}, which exists.").format(what=what)
    assert isinstance(info, tuple) and len(info) == 3, _(
        "read_process() should return ProcessInfo(state, ppid, nice); for {what} it returned {info}.").format(
        what=what, info=repr(info))
    got = tuple(info)  # a ProcessInfo is a tuple: (state, ppid, nice)
    fields_hint = _(" (count the fields after the last ')': state is field 3, ppid 4, nice 19)")
    assert got == (state, ppid, nice), _(
        "for {what}, read_process() returned state={got_state} ppid={got_ppid} nice={got_nice}; "
        "/proc says state={state} ppid={ppid} nice={nice}{hint}.").format(
        what=what, got_state=repr(got[0]), got_ppid=repr(got[1]), got_nice=repr(got[2]), state=repr(state),
        ppid=ppid, nice=nice, hint=fields_hint if got[0] != state or got[2] != nice else "")


@pytest.mark.title(N_("Reads the running process itself: state R, its parent, its nice value"))
def test_reads_its_own_process(learner: ModuleType) -> None:
    expect(learner, os.getpid(), "R", os.getpriority(os.PRIO_PROCESS, 0),
           _("this process (it is running while it reads /proc)"), ppid=os.getppid())


@pytest.mark.title(N_("A child blocked in read() is S, sleeping, and its ppid is the check"))
def test_sleeping_child(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children)
    truth = procfs.wait_for_state(child.pid, "S", STATE_WAIT)
    expect(learner, child.pid, "S", truth.nice, _("a child blocked in read()"))


@pytest.mark.title(N_("A child stopped by SIGSTOP is T"))
def test_stopped_child(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children)
    os.kill(child.pid, signal.SIGSTOP)
    truth = procfs.wait_for_state(child.pid, "T", STATE_WAIT)
    expect(learner, child.pid, "T", truth.nice, _("a child stopped by SIGSTOP"))
    os.kill(child.pid, signal.SIGCONT)


@pytest.mark.title(N_("A child that exited and was not reaped yet is Z, a zombie"))
def test_zombie_child(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children)
    child.release()
    truth = procfs.wait_for_state(child.pid, "Z", STATE_WAIT)
    expect(learner, child.pid, "Z", truth.nice, _("a child that exited, not reaped"))


@pytest.mark.title(N_("A child that called os.nice(5) shows its new nice value"))
def test_niced_child(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children, lambda: os.nice(5))
    truth = procfs.wait_for_state(child.pid, "S", STATE_WAIT)
    expected = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    assert truth.nice == expected, _("the check's own reader disagrees with os.nice(); /proc is odd here.")
    expect(learner, child.pid, "S", expected, _("a child that called os.nice(5)"))


def rename_to(name: bytes) -> Callable[[], None]:
    def action() -> None:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(name)
    return action


@pytest.mark.title(N_("A child named 'x) Z 1 (y' is still read right (split at the last ')')"))
def test_name_with_spaces_and_parentheses(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children, rename_to(b"x) Z 1 (y"))
    truth = procfs.wait_for_state(child.pid, "S", STATE_WAIT)
    assert truth.name == "x) Z 1 (y", _("the child could not rename itself; /proc is odd here.")
    expect(learner, child.pid, "S", truth.nice,
           _("a child named 'x) Z 1 (y' (a name may hold spaces and ')': split at the LAST ')')"))


@pytest.mark.title(N_("A process that has exited and been reaped reads as None"))
def test_a_process_that_is_gone(learner: ModuleType, children: list[Child]) -> None:
    child = start_child(children)
    child.release()
    child.reap()
    info = ask(learner, child.pid, _("a process that is gone"))
    assert info is None, _("read_process() returned {info} for a process that no longer exists; return None.").format(
        info=repr(info))
