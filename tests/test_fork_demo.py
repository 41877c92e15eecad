"""fork-demo run for real, and the fork helpers other lessons reuse."""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lessonrun import default_sigint

from lessons import fork
from lessons.toolkit import procfs
from lessons.toolkit.common import RunFailure, UserError
from lessons.toolkit.children import Children

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

LESSON = [sys.executable, "-m", "lessons", "run", "fork-demo"]


@pytest.fixture(scope="module")
def demo() -> tuple[subprocess.Popen[str], str, str, set[int]]:
    """One run of the whole demo, shared by the tests that read its output.

    Without PYTHONUNBUFFERED (set on this machine): the demo must flush before each fork
    itself, or its own lines would come out twice.
    """
    before = set(procfs.children(os.getpid()))
    process = subprocess.Popen([*LESSON, "--repeat", "10", "--lines", "40"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=fork.without_unbuffered())
    try:
        out, err = process.communicate(timeout=50)
    finally:
        process.kill()
        process.wait(timeout=30)
    return process, out, err, before


def test_demo_exits_0_without_traceback(demo) -> None:  # type: ignore[no-untyped-def]
    process, out, err, _ = demo
    assert process.returncode == 0, err
    assert "Traceback" not in out + err


def test_fork_returns_0_in_the_child_and_the_child_pid_in_the_parent(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    child = re.search(r"fork\(\) returned 0 in the child; I am pid (\d+), my parent is (\d+)", out)
    parent = re.search(r"I am pid (\d+) and I call os.fork\(\) once", out)
    returned = re.search(r"fork\(\) returned (\d+) in the parent", out)
    assert child and parent and returned, out
    assert child.group(1) == returned.group(1)  # the parent got the child's pid
    assert child.group(2) == parent.group(1)  # and the child's parent is the parent
    assert len(re.findall(r"I am pid \d+ and I call", out)) == 1  # the child started after fork()


def test_the_race_is_counted(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    counts = re.search(r"parent wrote first (\d+) times?, child wrote first (\d+) times? \(out of 10\)", out)
    assert counts and int(counts.group(1)) + int(counts.group(2)) == 10


def test_memory_is_copied(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    child = re.search(r"the child's list is \[1, 2, 3, 4\] at address (0x[0-9a-f]+)", out)
    parent = re.search(r"the parent's list is unchanged: \[1, 2, 3\] at address (0x[0-9a-f]+)", out)
    assert child and parent
    assert child.group(1) == parent.group(1)


def test_shared_offset_keeps_every_line_and_separate_offsets_overwrite(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    assert "inherited descriptor: 80 lines in the file (40 from each), none lost" in out
    assert "file opened again in the child: only 40 of 80 lines survive" in out


def test_zombie_then_reaped(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    zombie = re.search(r"child (\d+) has exited with status 7, we have not waited yet: state Z", out)
    assert zombie
    pid = zombie.group(1)
    assert f"os.waitpid({pid}, 0) returned; os.waitstatus_to_exitcode(status) = 7" in out
    assert f"after waitpid the zombie is gone: no process {pid} any more" in out
    assert "killed with SIGTERM reads back as -15" in out


def test_a_failing_fork_raises_oserror(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    assert re.search(r"uid \d+, RLIMIT_NPROC=1: os.fork\(\) raised BlockingIOError \[EAGAIN\]", out)


def test_output_before_fork_is_duplicated_only_without_a_flush(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    assert "no flush, child exits normally (the notes' shape): the line appeared 2 times" in out
    assert "the same, but stdout is a terminal (a pty): the line appeared 1 time" in out
    assert "fix 1: sys.stdout.flush() before fork: the line appeared 1 time" in out
    assert "fix 2: the child ends with os._exit(0): the line appeared 1 time" in out


def test_thread_warning_matches_the_running_python(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    if sys.version_info >= (3, 12):
        assert "DeprecationWarning: This process" in out
    else:
        assert "printed no warning when forking with a thread running" in out


@pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")
def test_demo_leaves_no_process_behind(demo) -> None:  # type: ignore[no-untyped-def]
    process, out, _, before = demo
    assert "no child process left" in out
    assert procfs.in_session(process.pid) == []
    assert [pid for pid in procfs.all_pids() if procfs.ppid(pid) == process.pid] == []
    assert set(procfs.children(os.getpid())) <= before


def newer_pythons() -> list[str]:
    """Interpreters >= 3.12 on this machine (pyenv's too), to see the warning 3.11 lacks."""
    names = [shutil.which(f"python3.{minor}") for minor in range(12, 16)]
    names += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    found = []
    for name in filter(None, names):
        check = subprocess.run([name, "-c", "import sys; print(sys.version_info >= (3, 12))"],
                               check=False, capture_output=True, text=True, timeout=30)
        if check.stdout.strip() == "True":
            found.append(name)
    return found


def test_forking_with_a_thread_warns_from_python_3_12() -> None:
    pythons = newer_pythons()
    if not pythons:
        pytest.skip("no Python 3.12+ on this machine")
    assert "DeprecationWarning: This process" in fork.fork_with_a_thread(pythons[0])
    if sys.version_info < (3, 12):
        assert fork.fork_with_a_thread(sys.executable) == ""


@pytest.mark.timeout(30)
def test_children_ask_returns_the_answer_and_reaps() -> None:
    with Children() as children:
        assert children.ask(lambda: f"{os.getppid()}") == str(os.getpid())
        assert children.unreaped == set()


@pytest.mark.timeout(30)
def test_a_failing_child_is_reported_not_hidden() -> None:
    with Children() as children, pytest.raises(RunFailure, match="exit status 1"):
        children.ask(lambda: str(1 / 0))


@pytest.mark.timeout(30)
def test_kill_all_ends_and_reaps_stopped_and_sleeping_children() -> None:
    children = Children()
    sleeping = children.fork(lambda: signal.pause() or 0)
    stopped = children.fork(lambda: signal.pause() or 0)
    os.kill(stopped, signal.SIGSTOP)
    procfs.wait_for_state(stopped, "T", timeout=20)
    children.kill_all()
    assert children.unreaped == set()
    assert procfs.state(sleeping) is None and procfs.state(stopped) is None


def test_a_signal_sent_right_after_fork_is_never_lost() -> None:
    """The child resets its handlers with the signals blocked, so SIGTERM at once still kills it."""
    with Children() as children:
        for _ in range(30):
            pid = children.fork(lambda: signal.pause() or 0)
            os.kill(pid, signal.SIGTERM)
            assert children.wait(pid) == -signal.SIGTERM


@pytest.mark.timeout(30)
def test_fork_fails_with_eagain_for_an_ordinary_user_at_its_process_limit() -> None:
    with Children() as children:
        answer = children.ask(fork.fork_under_process_limit)  # drops root first when we have it
    assert re.fullmatch(r"uid \d+, RLIMIT_NPROC=1: os\.fork\(\) raised BlockingIOError \[EAGAIN\] .+", answer)
    assert "uid 0," not in answer


@pytest.mark.timeout(30)
@pytest.mark.parametrize("shared, expected_lines", [(True, 60), (False, 30)])
def test_one_offset_keeps_all_lines_two_offsets_overwrite(tmp_path: Path, shared: bool, expected_lines: int) -> None:
    with Children() as children:
        lines = fork.race_into_file(children, tmp_path / "out.txt", 30, shared=shared)
    assert len(lines) == expected_lines
    assert all(re.fullmatch(r"(parent|child ) \d{5}", line) for line in lines)
    if shared:
        assert sorted(lines) == sorted([f"parent {n:05d}" for n in range(30)] + [f"child  {n:05d}" for n in range(30)])


@pytest.mark.timeout(30)
def test_bad_repeat_gets_one_sentence_and_exit_2() -> None:
    result = subprocess.run([*LESSON, "--repeat", "0"], check=False, capture_output=True, text=True, timeout=25)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "invalid value" in result.stderr.lower()


def test_without_fork_the_lesson_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(UserError, match="Windows"):
        fork.main()


def test_the_fork_call_and_the_childs_delay_are_measured_apart(demo) -> None:  # type: ignore[no-untyped-def]
    """Fact: the page tables are copied inside fork(); the child's delay is Python's after-fork work."""
    _, out, _, _ = demo
    assert re.search(r"median time os\.fork\(\) took in the parent, until it returned: \d+ µs", out)
    assert re.search(r"median time from the parent's write to the child's: -?\d+ µs", out)
    assert "copy-on-write page faults" in out
    assert "set up its copy of the address space" not in out


def test_a_lock_held_by_another_thread_at_fork_stays_locked_in_the_child_but_loggings_does_not() -> None:
    got_ours, got_logging, threads = fork.lock_held_at_fork(wait=0.2)
    assert threads == 1  # only the forking thread exists in the child
    assert got_ours is False  # copied locked, and its holder is not there to release it
    assert got_logging is True  # logging re-creates its locks after fork (os.register_at_fork)


def test_the_demo_shows_the_lock_held_at_fork(demo) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = demo
    assert "threading.active_count() is 1 in the child" in out
    assert re.search(r"our own threading\.Lock, held by the other thread at fork time: "
                     r"acquire\(timeout=[\d.]+\) returned False", out)
    assert re.search(r"a logging handler's lock, also held at fork time: acquire\(timeout=[\d.]+\) returned True", out)


@pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")
def test_ctrl_c_ends_the_demo_with_one_line_and_exit_130() -> None:
    """A demo ends by itself, so being interrupted is not a normal end: 130, one calm line, nothing left."""
    process = subprocess.Popen([*LESSON, "--repeat", "1000", "--lines", "10000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_sigint)
    try:
        for line in process.stdout:
            if "4. Open files are shared" in line or "2. Who runs first" in line:
                break
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        for info in procfs.in_session(process.pid):
            os.kill(info.pid, signal.SIGKILL)
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in out + err
    assert [line for line in out.splitlines() if line.lstrip().startswith("summary")] == [
        "summary  interrupted; no child process left: every child was killed and reaped"]
    assert procfs.in_session(process.pid) == []


@pytest.mark.timeout(30)
def test_a_ctrl_c_the_instant_a_bare_fork_returns_still_reaps_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts 1 and 2 fork without Children, as the notes do: the signal must wait for the reaping try."""
    import io

    from lessons.toolkit.narrate import Narrator

    real_fork = os.fork

    def fork_then_ctrl_c() -> int:
        pid = real_fork()
        if pid:
            signal.raise_signal(signal.SIGINT)  # as if Ctrl-C came the moment fork() returned
        return pid

    monkeypatch.setattr(os, "fork", fork_then_ctrl_c)
    # Python's own Ctrl-C handler, even when this test run ignores SIGINT (started as `pytest &`)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = set(procfs.children(os.getpid()))
    try:
        for part in (fork.race_once, lambda: fork.show_return_values(Narrator(stream=io.StringIO()))):
            with pytest.raises(KeyboardInterrupt):
                part()
            assert set(procfs.children(os.getpid())) <= before, "the child was left unreaped"
    finally:
        signal.signal(signal.SIGINT, previous)
        for pid in set(procfs.children(os.getpid())) - before:
            os.waitpid(pid, 0)
