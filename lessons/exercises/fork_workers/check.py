"""Checks for fork-workers: your run_workers(jobs) runs inside a forked copy of the check.

Each check forks a "stage" process that calls run_workers() and reports back through a
pipe, so a worker that forgets os._exit() and runs on into the caller's code is caught
by the stage's guard (its exit code 70), not loose inside pytest. After run_workers()
returns, the stage lists its own children from /proc: any left is a zombie or a worker
nobody waited for.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from types import ModuleType
from typing import Callable

import pytest

from lessons.toolkit import procfs
from lessons.exercises.harness import NotStarted, describe_exception, is_todo, patience, todo_text
from lessons.toolkit.i18n import N_, _

ESCAPED = 70  # the exit code of a worker that ran on into the caller's code
BARRIER_WAIT = patience(8.0)  # seconds a worker waits for the others (generous: forking takes milliseconds)
REAP_GRACE = 1.0  # seconds the slow worker gives a waiting parent to collect the fast one


def stage(learner: ModuleType, jobs: list[Callable[[], int]], report_fd: int) -> None:
    """In the forked stage: call run_workers, then describe what is left. Never returns."""
    me = os.getpid()
    report: dict = {}
    try:
        try:
            report["codes"] = learner.run_workers(jobs)
        except BaseException as err:  # noqa: BLE001 - everything is reported to the check
            report["error"] = todo_text(err) if is_todo(err) else describe_exception(err)
            report["todo"] = is_todo(err)
        if os.getpid() == me:
            left = [procfs.read_stat(pid) for pid in procfs.children(me)]
            report["left"] = [(info.pid, info.state) for info in left if info is not None]
            os.write(report_fd, json.dumps(report, default=repr).encode())
    finally:
        os._exit(0 if os.getpid() == me else ESCAPED)


def run_staged(learner: ModuleType, jobs: list[Callable[[], int]],
               while_running: Callable[[], None] = lambda: None, timeout: float = 30.0) -> dict:
    """Fork the stage, run `while_running` in the check meanwhile, and read the stage's report."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        stage(learner, jobs, write_fd)
    os.close(write_fd)
    try:
        while_running()
        raw = read_all(read_fd, timeout)
    finally:
        os.close(read_fd)
        stop_stage(pid)
    if not raw:
        pytest.fail(_("run_workers() had not returned after {seconds} s (or its process died): is it "
                      "waiting for a child that never ends, or for one it never started?").format(
            seconds=f"{timeout:g}"), pytrace=False)
    report = json.loads(raw)
    if report.get("todo"):
        raise NotStarted(report["error"])
    if "error" in report:
        pytest.fail(_("run_workers() raised {error}.").format(error=report["error"]), pytrace=False)
    return report


def read_all(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data


def stop_stage(pid: int) -> None:
    """Kill the stage if it is still there, and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def codes_of(report: dict, count: int) -> list[int]:
    codes = report["codes"]
    assert isinstance(codes, list), _("run_workers() should return a list of exit codes, it returned {codes}.").format(
        codes=repr(codes))
    if ESCAPED in codes:
        pytest.fail(_("a worker came back out of run_workers() and ran on into the caller's code (the check's "
                      "guard stopped it with exit code {code}): end every child with os._exit(code) in a "
                      "`finally:`, so neither a return nor an exception (nor sys.exit) gets it out.").format(
            code=ESCAPED), pytrace=False)
    assert len(codes) == count, _("run_workers() returned {n} exit codes for {count} jobs: {codes}.").format(
        n=len(codes), count=count, codes=codes)
    assert all(code < 256 for code in codes), _(
        "run_workers() returned {codes}: numbers of 256 and more are raw wait statuses, not exit codes; "
        "turn each status into an exit code with os.waitstatus_to_exitcode(status).").format(codes=codes)
    return codes


def returning(code: int) -> Callable[[], int]:
    return lambda: code


@pytest.mark.title(N_("Returns each job's exit code, in job order"))
def test_collects_exit_codes_in_job_order(learner: ModuleType) -> None:
    report = run_staged(learner, [returning(0), returning(3), returning(42)])
    codes = codes_of(report, 3)
    assert codes == [0, 3, 42], _("jobs returning 0, 3 and 42 gave exit codes {codes}; expected [0, 3, 42].").format(
        codes=codes)


@pytest.mark.title(N_("Each job runs in a child of its own, whose parent is the caller"))
def test_each_job_runs_in_its_own_child(learner: ModuleType) -> None:
    read_fd, write_fd = os.pipe()

    def tell_who_i_am() -> int:
        os.write(write_fd, f"{os.getpid()} {os.getppid()}\n".encode())
        return 0

    try:
        report = run_staged(learner, [tell_who_i_am] * 3, lambda: os.close(write_fd))
        lines = read_all(read_fd, 5.0).decode().split()
    finally:
        os.close(read_fd)
    codes_of(report, 3)
    pids, parents = lines[0::2], lines[1::2]
    assert len(set(pids)) == 3, _("the 3 jobs ran in {n} distinct processes; each needs its own fork().").format(
        n=len(set(pids)))
    assert len(set(parents)) == 1 and str(os.getpid()) not in pids, _(
        "the workers do not all have the caller as their parent: fork them from run_workers() itself.")


@pytest.mark.limit(40)
@pytest.mark.title(N_("All workers are started before any is waited for (they run at the same time)"))
def test_workers_run_at_the_same_time(learner: ModuleType) -> None:
    started_read, started_write = os.pipe()
    go_read, go_write = os.pipe()
    give_up_read, give_up_write = os.pipe()
    count = 4

    def wait_for_the_others() -> int:
        os.write(started_write, b"+")
        ready, _writable, _errors = select.select([go_read, give_up_read], [], [], BARRIER_WAIT)
        return 0 if go_read in ready else 99

    def release_when_all_started() -> None:
        os.close(started_write)
        if read_count(started_read, count, BARRIER_WAIT) == count:
            os.write(go_write, b"go")  # one write wakes every worker: none reads it
        else:  # the first worker gave up (99); the ones still to come need not wait too
            os.write(give_up_write, b"no")

    try:
        report = run_staged(learner, [wait_for_the_others] * count, release_when_all_started)
    finally:
        for fd in (started_read, go_read, go_write, give_up_read, give_up_write):
            os.close(fd)
    codes = codes_of(report, count)
    assert 99 not in codes, _("the workers did not run at the same time (codes {codes}; 99 = a worker waited "
                              "{seconds} s for the others): fork them all first, then wait for them.").format(
        codes=codes, seconds=f"{BARRIER_WAIT:g}")


def read_count(fd: int, count: int, timeout: float) -> int:
    deadline, seen = time.monotonic() + timeout, 0
    while seen < count and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, count)
            if not chunk:
                break
            seen += len(chunk)
    return seen


@pytest.mark.limit(40)
@pytest.mark.title(N_("The codes are in job order even when the last job finishes first"))
def test_codes_follow_job_order_not_finish_order(learner: ModuleType) -> None:
    read_fd, write_fd = os.pipe()

    def slow() -> int:  # ends only once `fast` has ended, and was collected if anyone was waiting
        if not select.select([read_fd], [], [], BARRIER_WAIT)[0]:
            return 99
        fast_pid = int(os.read(read_fd, 32))
        wait_until_ended(fast_pid)
        wait_until_collected(fast_pid, REAP_GRACE)
        return 7

    def fast() -> int:
        os.write(write_fd, str(os.getpid()).encode())
        return 5

    try:
        codes = codes_of(run_staged(learner, [slow, fast]), 2)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert 99 not in codes, _("the first worker waited in vain for the second: start every worker before waiting.")
    assert codes == [7, 5], _("got {codes}; expected [7, 5]: the codes came back in the order the workers "
                              "finished. Keep the pid of each job and put its code in that job's place.").format(
        codes=codes)


def wait_until_collected(pid: int, grace: float) -> None:
    """Until the parent has reaped `pid`, for at most `grace` seconds.

    A parent blocked in os.wait() reaps the first worker to end at once; without this
    pause, a parent slowed down by a busy machine could find both workers ended and
    os.wait() would hand it the older one first, hiding the finish-order mistake."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and procfs.read_stat(pid) is not None:
        time.sleep(0.005)


def wait_until_ended(pid: int) -> None:
    """Until the process is a zombie or reaped (its parent may reap it at once)."""
    deadline = time.monotonic() + BARRIER_WAIT
    while time.monotonic() < deadline:
        info = procfs.read_stat(pid)
        if info is None or info.state == "Z":
            return
        time.sleep(0.005)


@pytest.mark.title(N_("A worker killed by SIGKILL reads as -9"))
def test_a_worker_killed_by_a_signal(learner: ModuleType) -> None:
    def die() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    codes = codes_of(run_staged(learner, [die, returning(2)]), 2)
    assert codes == [-9, 2], _("got {codes}; expected [-9, 2]: os.waitstatus_to_exitcode() turns 'killed by "
                               "signal 9' into -9.").format(codes=codes)


@pytest.mark.title(N_("A job that raises makes its child exit with 1, and the exception stays in the child"))
def test_a_job_that_raises_exits_1_inside_its_child(learner: ModuleType) -> None:
    def broken() -> int:
        raise RuntimeError("this job fails")

    codes = codes_of(run_staged(learner, [broken, returning(0)]), 2)
    assert codes == [1, 0], _("got {codes}; expected [1, 0]: a job that raised should end its child with 1.").format(
        codes=codes)


@pytest.mark.title(N_("Leaves no zombie (and no running child) behind"))
def test_leaves_no_zombie_and_no_running_child(learner: ModuleType) -> None:
    report = run_staged(learner, [returning(0)] * 5)
    codes_of(report, 5)
    left = report["left"]
    zombies = [pid for pid, state in left if state == "Z"]
    assert not zombies, _("after run_workers() returned, {n} of its children were zombies (state Z): "
                          "os.waitpid() every pid you forked.").format(n=len(zombies))
    assert not left, _("after run_workers() returned, {n} children were still running: wait for them all.").format(
        n=len(left))


@pytest.mark.title(N_("No jobs: an empty list, and no child"))
def test_no_jobs_no_workers(learner: ModuleType) -> None:
    report = run_staged(learner, [])
    assert report["codes"] == [] and not report["left"], _("with no jobs, run_workers() returned {codes}.").format(
        codes=repr(report["codes"]))
