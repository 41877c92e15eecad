"""The sandbox around a check, against a learner's code that misbehaves on purpose (issue 9, finding 8).

- memory and file size are limited per check run, and hitting a limit is said in the
  learner's words;
- code that kills the check runner itself is reported as exactly that, once per check,
  and everything it left (a daemon re-parented to init) is found and killed: by a cgroup
  where the machine allows one, else by a /proc scan, which is tested on its own too,
  also as an unprivileged user;
- many leftover processes are summed up in one line, not one paragraph each.
Small numbers throughout: 64 MiB files become 1 MiB, 300 children become 30.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lessons.exercises import catalog, containment, report
from lessons.exercises.runner import CheckResult, run_check
from lessonrun import as_nobody

NOBODY = 65534
PROC_READER, POLL_ECHO = catalog.find("proc-reader"), catalog.find("poll-echo")

GREEDY = '''
from lessons.exercises.proc_reader.solution import *  # noqa
from lessons.exercises.proc_reader.solution import read_process as good_read_process

def read_process(pid):
    hoard = bytearray(700 << 20)  # 700 MiB, more than the limit of this run
    return good_read_process(pid)
'''

WRITER = '''
import os
from lessons.exercises.proc_reader.solution import *  # noqa
from lessons.exercises.proc_reader.solution import read_process as good_read_process

def read_process(pid):
    with open(os.path.join(os.environ["LEARN_CHECK_TMP"], "log.txt"), "ab") as log:
        log.write(b"x" * (2 << 20))  # 2 MiB, more than the limit of this run
    return good_read_process(pid)
'''

KILLS_THE_RUNNER = '''
import os, signal, time
from lessons.exercises.poll_echo.solution import serve as good_serve

def serve(listener, stop):
    if os.fork() == 0:
        os.setsid()
        child = os.getpid()
        if os.fork() != 0:
            os._exit(0)
        while os.getppid() == child:  # until the check runner (a subreaper) adopts us
            time.sleep(0.01)
        os.kill(os.getppid(), signal.SIGKILL)
        while True:
            signal.pause()
    good_serve(listener, stop)
'''

MANY_CHILDREN = '''
import os, signal
from lessons.exercises.poll_echo.solution import serve as good_serve
started = False

def serve(listener, stop):
    global started
    if not started:
        started = True
        for _ in range(30):
            if os.fork() == 0:
                os.setsid()
                while True:
                    signal.pause()
    good_serve(listener, stop)
'''


def learner_file(tmp_path: Path, exercise, text: str) -> Path:
    path = tmp_path / exercise.file_name
    path.write_text(text)
    return path


def failures(result: CheckResult) -> dict[str, str]:
    return {check.title: check.message for check in result.checks if check.outcome == "failed"}


def marked(path: Path) -> list[int]:
    """Live processes whose environment names `path` (every process of that check run does)."""
    found = []
    for pid in (int(name) for name in os.listdir("/proc") if name.isdigit()):
        try:
            if str(path).encode() in Path(f"/proc/{pid}/environ").read_bytes() and \
                    Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
                found.append(pid)
        except OSError:
            continue
    return found


def test_too_much_memory_is_said_in_the_learners_words(tmp_path: Path) -> None:
    result = run_check(PROC_READER, learner_file(tmp_path, PROC_READER, GREEDY), memory_limit=512 << 20)
    assert not result.passed
    messages = list(failures(result).values())
    assert messages and all("your code used more than 512 MiB of memory" in message for message in messages), (
        messages, result.raw_output[-2000:])
    assert "proc_reader.py line 6" in messages[0], messages[0]


def test_a_file_too_large_is_said_in_the_learners_words(tmp_path: Path) -> None:
    result = run_check(PROC_READER, learner_file(tmp_path, PROC_READER, WRITER), file_limit=1 << 20)
    assert not result.passed
    messages = list(failures(result).values())
    assert messages and all("your code wrote a file larger than 1 MiB" in message for message in messages), (
        messages, result.raw_output[-2000:])


@pytest.mark.parametrize("how", ["cgroup", "scan"])
def test_code_that_kills_the_check_runner_is_reported_and_its_daemon_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "cgroup" and containment.own_cgroup_v2() is None:
        pytest.skip("no cgroup v2 here")
    if how == "scan":
        monkeypatch.setenv(containment.NO_CGROUP_VARIABLE, "1")
    path = learner_file(tmp_path, POLL_ECHO, KILLS_THE_RUNNER)
    result = run_check(POLL_ECHO, path, time_limit=30)
    text = report.render(result, POLL_ECHO, path.name, plain=True)
    assert result.runner_killed_by == signal.SIGKILL and not result.passed, text
    assert "your code killed the process that runs the checks (SIGKILL, signal 9)" in text, text
    titles = [check.title for check in result.checks]
    assert len(titles) == len(set(titles)), f"one check reported twice:\n{text}"
    assert "check runner failed" not in text, text
    assert result.escaped, f"the daemon re-parented to init was not found:\n{text}"
    assert marked(path) == [], "a process of the check is still running"
    assert not list(Path("/sys/fs/cgroup/unified").glob(f"learn-check-{os.getpid()}-*")), "a cgroup was left"


def test_many_leftover_processes_are_one_line(tmp_path: Path) -> None:
    path = learner_file(tmp_path, POLL_ECHO, MANY_CHILDREN)
    result = run_check(POLL_ECHO, path)
    assert len(result.leaked) == 30 and not result.passed, result.leaked
    text = report.render(result, POLL_ECHO, path.name, plain=True)
    notes = [line for line in text.splitlines() if "outlived" in line]
    assert len(notes) == 1 and "30 processes outlived the check (30 had called setsid()" in notes[0], text
    assert len(text.splitlines()) < 30, text
    assert marked(path) == []


def spawn_marked_tree(marker: str) -> subprocess.Popen:
    """A shell with a child and a setsid daemon re-parented to init, all carrying `marker`.

    Plain /bin/sh and sleep, so that an unprivileged user can run it too.
    """
    script = ("setsid sh -c 'sleep 300 & exit 0'\n"  # returns once the daemon's parent is gone
              "sleep 300 &\n"
              "echo ready\n"
              "wait\n")
    return subprocess.Popen(["/bin/sh", "-c", script], env={**os.environ, "LEARN_CHECK_TMP": marker},
                            stdout=subprocess.PIPE, start_new_session=True)


def sweep_by_scanning(marker: str) -> dict:
    """Start a marked tree, find it by scanning /proc (no cgroup), kill it; what was found and what is left."""
    os.environ[containment.NO_CGROUP_VARIABLE] = "1"
    tree = spawn_marked_tree(marker)
    tree.stdout.readline()
    hold = containment.Containment(f"LEARN_CHECK_TMP={marker}", "unused")
    deadline = time.monotonic() + 10  # a shell that has forked may not have exec'd its sleep yet
    found = hold.members()
    while len(found) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
        found = hold.members()
    killed = hold.kill_all()
    tree.wait(10)
    return {"cgroup": hold.cgroup is not None, "found": len(found), "killed": len(killed),
            "left": hold.members()}


def test_the_proc_scan_finds_and_kills_a_runaway_daemon(tmp_path: Path) -> None:
    answer = sweep_by_scanning(str(tmp_path / "marker"))
    assert answer == {"cgroup": False, "found": 3, "killed": 3, "left": []}, answer


def test_an_unprivileged_learner_gets_the_scan_and_it_works(tmp_path: Path) -> None:
    """As root a cgroup is made; as user 65534 it cannot be, and the /proc scan must do the job."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user")
    answer = as_nobody(lambda: {"cgroup": containment.make_cgroup("learn-check-nobody") is not None,
                                "scan": sweep_by_scanning("/nonexistent/marker-nobody")})
    assert answer.get("cgroup") is False, answer
    assert answer.get("scan") == {"cgroup": False, "found": 3, "killed": 3, "left": []}, answer
