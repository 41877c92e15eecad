"""lessons.toolkit.procfs against real processes: states, parents, nice, names, children."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lessons.toolkit import procfs

pytestmark = pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")

SLEEP = "import time; time.sleep(120)"


@contextmanager
def child_python(code: str = SLEEP) -> Iterator[subprocess.Popen[bytes]]:
    """A child Python running `code`, killed and reaped whatever the test does."""
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.mark.timeout(30)
def test_a_sleeping_child_is_S_and_we_are_its_parent() -> None:
    with child_python() as child:
        info = procfs.wait_for_state(child.pid, "S", timeout=20)
        assert info.pid == child.pid
        assert procfs.state(child.pid) == "S"
        assert procfs.ppid(child.pid) == os.getpid()
        assert child.pid in procfs.children(os.getpid())


@pytest.mark.timeout(30)
def test_a_stopped_child_is_T_and_continues_to_S() -> None:
    with child_python() as child:
        procfs.wait_for_state(child.pid, "S", timeout=20)
        os.kill(child.pid, signal.SIGSTOP)
        assert procfs.wait_for_state(child.pid, "T", timeout=20).state == "T"
        os.kill(child.pid, signal.SIGCONT)
        assert procfs.wait_for_state(child.pid, "S", timeout=20).state == "S"


@pytest.mark.timeout(30)
def test_an_unreaped_child_is_Z_and_vanishes_when_reaped() -> None:
    with child_python("raise SystemExit(5)") as child:
        zombie = procfs.wait_for_state(child.pid, "Z", timeout=20)
        assert zombie.ppid == os.getpid()
        assert child.pid in procfs.children(os.getpid())  # zombies are still children
        assert procfs.command(child.pid) == f"[{zombie.name}]"  # a zombie has no command line
        assert child.wait(timeout=20) == 5
        assert procfs.state(child.pid) is None
        assert procfs.read_stat(child.pid) is None
        assert child.pid not in procfs.children(os.getpid())


@pytest.mark.timeout(30)
def test_nice_reads_back_what_setpriority_set() -> None:
    with child_python() as child:
        assert procfs.nice(child.pid) == os.getpriority(os.PRIO_PROCESS, 0)
        os.setpriority(os.PRIO_PROCESS, child.pid, 7)
        assert procfs.nice(child.pid) == 7
        os.setpriority(os.PRIO_PROCESS, child.pid, 19)
        assert procfs.nice(child.pid) == 19


@pytest.mark.timeout(30)
def test_a_name_with_parentheses_and_spaces_does_not_confuse_the_parser() -> None:
    rename = "open('/proc/self/comm', 'w').write('x) R 1 (y'); import time; time.sleep(120)"
    with child_python(rename) as child:
        procfs.wait_for_state(child.pid, "S", timeout=20)
        info = procfs.read_stat(child.pid)
        assert info is not None
        assert (info.name, info.state, info.ppid) == ("x) R 1 (y", "S", os.getpid())
        assert procfs.name(child.pid) == "x) R 1 (y"
        assert procfs.command(child.pid) == f"{sys.executable} -c {rename}"


@pytest.mark.timeout(30)
def test_cpu_time_grows_for_a_busy_child_only() -> None:
    with child_python("while True: pass") as busy, child_python() as sleeper:
        procfs.wait_for_state(busy.pid, "R", timeout=20)
        procfs.wait_for_state(sleeper.pid, "S", timeout=20)
        start = procfs.read_stat(busy.pid)
        assert start is not None
        # a tick is 1/CLK_TCK s of CPU: wait, with a deadline, until the busy loop has used 5
        from lessons.toolkit.common import wait_for

        wait_for(lambda: procfs.read_stat(busy.pid).cpu_ticks >= start.cpu_ticks + 5, timeout=20)  # type: ignore[union-attr]
        assert procfs.read_stat(sleeper.pid).cpu_seconds < 1.0  # type: ignore[union-attr]


@pytest.mark.timeout(30)
def test_in_session_finds_every_process_of_a_new_session() -> None:
    process = subprocess.Popen([sys.executable, "-c", SLEEP], start_new_session=True)
    try:
        procfs.wait_for_state(process.pid, "S", timeout=20)
        assert [info.pid for info in procfs.in_session(process.pid)] == [process.pid]
        assert process.pid not in [info.pid for info in procfs.in_session(os.getsid(0))]
    finally:
        process.kill()
        process.wait(timeout=30)
    assert procfs.in_session(process.pid) == []


@pytest.mark.timeout(30)
def test_waiting_for_a_state_that_never_comes_times_out_and_a_gone_pid_is_reported() -> None:
    with child_python() as child:
        procfs.wait_for_state(child.pid, "S", timeout=20)
        with pytest.raises(TimeoutError):
            procfs.wait_for_state(child.pid, "T", timeout=0.2)
    with pytest.raises(ProcessLookupError):
        procfs.wait_for_state(child.pid, "S", timeout=1)


def test_this_process_reads_itself_as_running() -> None:
    me = procfs.read_stat(os.getpid())
    assert me is not None
    assert (me.state, me.ppid, me.session) == ("R", os.getppid(), os.getsid(0))
    assert me.nice == os.getpriority(os.PRIO_PROCESS, 0)
    assert procfs.describe_state("Z").startswith("zombie")


def fake_stat(**fields: int | str) -> procfs.ProcStat:
    base: dict = dict(pid=100, name="x", state="S", ppid=1, pgrp=50, session=40, nice=0, cpu_ticks=0,
                      tpgid=-1, threads=1)
    return procfs.ProcStat(**{**base, **fields})


@pytest.mark.parametrize("fields, expected", [
    ({}, "S"),
    ({"nice": -5}, "S<"),
    ({"nice": 5}, "SN"),
    ({"session": 100}, "Ss"),
    ({"threads": 3}, "Sl"),
    ({"tpgid": 50}, "S+"),
    ({"tpgid": 51}, "S"),  # another group has the terminal: background
    ({"state": "R", "nice": 19, "session": 100, "threads": 2, "tpgid": 50}, "RNsl+"),
])
def test_stat_column_adds_the_suffixes_in_ps_order(fields: dict, expected: str) -> None:
    assert procfs.stat_column(fake_stat(**fields)) == expected


def test_locked_pages_add_L_after_the_priority() -> None:
    assert procfs.stat_column(fake_stat(nice=5, session=100), locked_kb=4) == "SNLs"


@pytest.mark.timeout(30)
@pytest.mark.skipif(not shutil.which("ps"), reason="needs ps")
def test_stat_of_matches_ps_for_a_session_leader_with_threads() -> None:
    code = "import threading, time; threading.Thread(target=time.sleep, args=(120,)).start(); time.sleep(120)"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        from lessons.toolkit.common import wait_for

        wait_for(lambda: procfs.stat_of(process.pid) == "Ssl", timeout=20)
        ps = subprocess.run(["ps", "-o", "stat=", "-p", str(process.pid)], capture_output=True, text=True, timeout=20)
        assert ps.stdout.strip() == "Ssl"
    finally:
        process.kill()
        process.wait(timeout=30)


def test_read_status_gives_the_pcb_fields() -> None:
    status = procfs.read_status(os.getpid())
    assert status is not None
    assert status["State"].startswith("R")
    assert int(status["PPid"]) == os.getppid()
    for key in ("Threads", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches", "VmRSS"):
        assert status[key].split()[0].isdigit(), key
    assert procfs.read_status(2**22 + 1) is None  # above pid_max: never a process
