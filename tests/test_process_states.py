"""process-states run for real: the states appear, nice shares the CPU, nothing is left behind."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lessons import procfs
from lessons.fork import Children, drop_privileges
from lessons.narrate import Narrator
from lessons.process_states import nice_limit_text, show_privileges

pytestmark = pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")

LESSON = [sys.executable, "-m", "lessons", "run", "process-states"]


def start(*options: str) -> subprocess.Popen[str]:
    """The lesson in a session of its own: its children stay in that session even if orphaned."""
    return subprocess.Popen([*LESSON, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def stop(process: subprocess.Popen[str]) -> None:
    """Clean-up for a failed test: kill the lesson's whole session and reap the lesson."""
    for info in procfs.in_session(process.pid):
        try:
            os.kill(info.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.kill()
    process.wait(timeout=30)


def read_until(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read the lesson's stdout until `text` appears; fail after `timeout` seconds.

    Reads the raw descriptor: a buffered readline() could pull the awaited line into
    Python's buffer, where select() cannot see it.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen, deadline = b"", time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{text!r} did not appear in {timeout} s; got:\n{seen.decode()}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the lesson ended before printing {text!r}:\n{seen.decode()}"
            seen += chunk
    return seen.decode()


def assert_nothing_left(lesson_pid: int, our_children_before: set[int]) -> None:
    """No process of the lesson's session, none whose parent is the lesson, no new child of ours."""
    assert procfs.in_session(lesson_pid) == []
    assert [pid for pid in procfs.all_pids() if procfs.ppid(pid) == lesson_pid] == []
    assert set(procfs.children(os.getpid())) <= our_children_before


@pytest.mark.timeout(60)
def test_quick_run_shows_every_state_reaps_them_and_shares_the_cpu_by_nice() -> None:
    before = set(procfs.children(os.getpid()))
    process = start("--quick")
    try:
        out, err = process.communicate(timeout=50)
    finally:
        stop(process)
    assert process.returncode == 0, err
    assert "Traceback" not in out + err
    for letter, why in (("R", "a busy loop"), ("S", "time.sleep()"), ("T", "SIGSTOP"), ("Z", "waitpid")):
        assert re.search(rf"learn-\w+ \(pid \d+\) is {letter}: .*{re.escape(why)}", out), letter
    assert re.search(r"learn-stopped \(pid \d+\) is S: .*SIGCONT", out)
    assert len(re.findall(r"waitpid\(\d+\) -> killed by SIGKILL; /proc/\d+ is gone", out)) == 3
    assert re.search(r"waitpid\(\d+\) -> exit status 3; /proc/\d+ is gone", out)
    shares = {int(nice): float(share) for nice, share in re.findall(r"nice +(\d+): [\d.]+ s of CPU = ([\d.]+)%", out)}
    assert set(shares) == {0, 10}
    assert shares[0] > 65.0, out  # CFS weights 1024 vs 110 predict 90.3%
    assert "no child process left" in out
    assert_nothing_left(process.pid, before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_kills_and_reaps_all_its_children(signal_number: int) -> None:
    before = set(procfs.children(os.getpid()))
    process = start("--watch", "120")
    try:
        seen = read_until(process, "learn-zombie", timeout=40)  # four children, watched for 120 s
        os.kill(process.pid, signal_number)
        out, err = process.communicate(timeout=30)
    finally:
        stop(process)
    assert process.returncode == 128 + signal_number
    assert "Traceback" not in out + err
    assert "2. Continue, kill, reap" not in seen + out  # interrupted before the lesson reaped them
    assert "interrupted" in out and "no child process left" in out
    pids = {int(pid) for pid in re.findall(r"\(pid (\d+)\)", seen)}
    assert len(pids) == 4
    assert [pid for pid in pids if procfs.state(pid) is not None] == []
    assert_nothing_left(process.pid, before)


@pytest.mark.timeout(60)
def test_children_die_with_a_lesson_killed_by_sigkill() -> None:
    """SIGKILL runs no clean-up code; PR_SET_PDEATHSIG still ends every live child."""
    process = start("--watch", "120")
    try:
        read_until(process, "learn-zombie", timeout=40)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while [info for info in procfs.in_session(process.pid) if info.state != "Z"]:
            assert time.monotonic() < deadline, procfs.in_session(process.pid)
            time.sleep(0.02)
    finally:
        stop(process)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("option", [["--seconds", "0"], ["--nice", "25"], ["--nice", "x"]])
def test_bad_options_get_one_sentence_and_exit_2(option: list[str]) -> None:
    result = subprocess.run([*LESSON, *option], check=False, capture_output=True, text=True, timeout=25)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid value" in result.stderr.lower()


def privileges_report(as_nobody: bool = False) -> str:
    """What the lesson's part 4 prints, captured as text; as uid 65534 if `as_nobody`.

    Everything is imported before dropping root: uid 65534 cannot read root's Python here.
    """
    text = io.StringIO()
    say = Narrator(stream=text)
    say("warm-up", "imports rich's modules now")
    nice_limit_text()
    text.seek(0)
    text.truncate()
    if as_nobody:
        drop_privileges()
    with Children() as children:
        show_privileges(say, children)
    return text.getvalue()


def privileges_report_as_nobody() -> str:
    return privileges_report(as_nobody=True)


@pytest.mark.timeout(30)
def test_an_ordinary_user_cannot_lower_nice_even_back_to_where_it_was() -> None:
    with Children() as children:
        report = children.ask(privileges_report_as_nobody)  # root or not, this child is not root
    assert f"we run as uid {os.geteuid() if os.geteuid() else 65534}, an ordinary user" in report
    assert re.search(r"but back to -?\d+ raised PermissionError", report)
    assert "os.setpriority(..., -5) raised PermissionError" in report


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch needs root")
def test_as_root_the_lesson_shows_both_sides() -> None:
    report = privileges_report()
    assert "we run as root" in report
    assert "uid 65534: nice" in report
    assert "os.setpriority(..., -5) raised PermissionError" in report
    root_line = report.splitlines()[1]  # the answer of the child that stayed root
    if has_cap_sys_nice():
        assert "os.setpriority(..., -5) worked: nice is now -5" in root_line
    else:
        assert "os.setpriority(..., -5) raised PermissionError" in root_line


def has_cap_sys_nice() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    return bool(effective & (1 << 23))  # CAP_SYS_NICE is capability 23
