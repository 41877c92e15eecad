"""multitasking run for real: threads against processes, one core against two, the PCB, what a process owns.

Timings on a shared 2-core machine are noisy, so the tests check bounds no load can break
(one core never gives more than 1 s of CPU per second; under the GIL two threads never
keep more than one core busy) and relations that load does not reverse.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from lessonrun import default_sigint, kill_session

from lessons import multitasking
from lessons.toolkit import procfs
from lessons.toolkit.common import wait_for

pytestmark = pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")

LESSON = [sys.executable, "-m", "lessons", "run", "multitasking"]


def run_lesson(*options: str, timeout: float = 50) -> tuple[subprocess.CompletedProcess[str], set[int]]:
    before = set(procfs.children(os.getpid()))
    result = subprocess.run([*LESSON, *options], check=False, capture_output=True, text=True, timeout=timeout,
                            start_new_session=True)
    return result, before


@pytest.fixture(scope="module")
def whole_run() -> tuple[subprocess.CompletedProcess[str], set[int], int]:
    """One run of all four parts, with a small job and short windows, in a session of its own."""
    before = set(procfs.children(os.getpid()))
    process = subprocess.Popen([*LESSON, "--steps", "2000000", "--window", "0.3"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=50)
    finally:
        kill_session(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), before, process.pid




def test_the_whole_lesson_runs_and_leaves_nothing(whole_run) -> None:  # type: ignore[no-untyped-def]
    result, before, lesson_pid = whole_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for title in ("1. Why multitasking", "2. Concurrent or parallel", "3. The PCB", "4. The smallest unit"):
        assert title in result.stdout
    assert "no child process left" in result.stdout
    assert procfs.in_session(lesson_pid) == []
    assert [pid for pid in procfs.all_pids() if procfs.ppid(pid) == lesson_pid] == []
    assert set(procfs.children(os.getpid())) <= before


def ways(out: str) -> dict[str, tuple[float, float, float]]:
    found = re.findall(r"(one after the other|2 threads|2 processes) +([\d.]+) s wall, +([\d.]+) s CPU, "
                       r"([\d.]+) cores busy", out)
    return {way: (float(wall), float(cpu), float(busy)) for way, wall, cpu, busy in found}


def test_two_threads_under_the_gil_keep_at_most_one_core_busy(whole_run) -> None:  # type: ignore[no-untyped-def]
    out = whole_run[0].stdout
    measured = ways(out)
    assert set(measured) == {"one after the other", "2 threads", "2 processes"}, out
    gil = multitasking.gil_enabled()
    assert ("here has the GIL" in out) == gil
    if gil:
        wall, cpu, busy = measured["2 threads"]
        assert busy <= 1.3, out  # the GIL: one thread runs Python at a time
    for wall, cpu, _ in measured.values():
        assert wall > 0 and cpu > 0


def test_one_core_never_gives_more_than_a_second_per_second(whole_run) -> None:  # type: ignore[no-untyped-def]
    out = whole_run[0].stdout
    shared = re.search(r"both pinned to core \d+: [\d.]+ s \+ [\d.]+ s of CPU in [\d.]+ s = ([\d.]+) cores: "
                       r"concurrent", out)
    assert shared, out
    assert float(shared.group(1)) <= 1.15
    if len(os.sched_getaffinity(0)) >= 2:
        apart = re.search(r"pinned to cores \d+ and \d+: .* = ([\d.]+) cores: parallel", out)
        assert apart, out
        assert float(apart.group(1)) <= 2.15
    assert f"os.cpu_count() = {os.cpu_count()}" in out


def pcb_row(out: str, field: str) -> list[str]:
    row = re.search(rf"│ {field} +│ (.+?) +│ (.+?) +│", out)
    assert row, (field, out)
    return [row.group(1), row.group(2)]


def test_the_pcb_shows_sleeper_and_busy_child_leaving_the_cpu_differently(whole_run) -> None:  # type: ignore[no-untyped-def]
    out = whole_run[0].stdout
    assert pcb_row(out, "Name") == ["learn-napper", "learn-busy"]
    napper_state, busy_state = pcb_row(out, "State")
    assert napper_state.startswith("S") and busy_state.startswith("R")
    napper_parent, busy_parent = pcb_row(out, "PPid")
    assert napper_parent == busy_parent  # both children of the lesson
    napper_vol, busy_vol = map(int, pcb_row(out, "voluntary_ctxt_switches"))
    napper_invol, busy_invol = map(int, pcb_row(out, "nonvoluntary_ctxt_switches"))
    assert napper_vol > busy_vol  # sleeping gives the CPU up before the slice ends
    assert busy_invol > napper_invol  # sharing a core, the busy loop has its slice taken away
    assert re.search(r"PID 1 is .+, PPid 0", out)


def test_threads_share_the_table_and_the_map_a_child_has_copies(whole_run) -> None:  # type: ignore[no-untyped-def]
    out = whole_run[0].stdout
    assert re.search(r"fd (\d+) in the main thread's /proc/\d+/task/\d+/fd: open, /dev/null", out)
    assert re.search(r"0x[0-9a-f]+ in the main thread's /proc/\d+/task/\d+/maps: yes", out)
    assert re.search(r"list the same descriptors: yes; Threads in /proc/\d+/status: 2", out)
    assert re.search(r"fd \d+ in the child's /proc/\d+/fd: open, /dev/null; 0x[0-9a-f]+ in its maps: yes", out)
    assert re.search(r"fd \d+ in the parent's /proc/\d+/fd: not open", out)
    assert re.search(r"0x[0-9a-f]+ in the parent's /proc/\d+/maps: no", out)


def test_part_selects_what_runs() -> None:
    result, _ = run_lesson("--part", "4")
    assert result.returncode == 0, result.stderr
    assert "4. The smallest unit" in result.stdout and "1. Why multitasking" not in result.stdout


@pytest.mark.timeout(30)
@pytest.mark.parametrize("option", [["--part", "5"], ["--steps", "x"], ["--window", "0"]])
def test_bad_options_get_one_sentence_and_exit_2(option: list[str]) -> None:
    result, _ = run_lesson(*option, timeout=25)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_ctrl_c_ends_it_with_one_line_exit_130_and_no_child_left() -> None:
    process = subprocess.Popen([*LESSON, "--part", "2", "--window", "30"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint)
    try:
        for line in process.stdout:  # wait until the first measurement has started
            if "cores this process may run on" in line:
                break
        wait_for(lambda: any((procfs.name(pid) or "").startswith("learn-core")
                             for pid in procfs.children(process.pid)), timeout=20)
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        kill_session(process)
    assert process.returncode == 130, err
    assert "Traceback" not in out + err
    assert [line for line in out.splitlines() if "summary" in line] == [
        "summary  interrupted; no child process left: every child was killed and reaped"]
    assert procfs.in_session(process.pid) == []
