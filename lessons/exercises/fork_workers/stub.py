"""Exercise fork-workers: run N workers with os.fork() and collect them with os.waitpid().

Lesson:  learn show fork-demo          Check:  learn exercise check fork-workers

os.fork() returns twice: the child's pid in the parent, 0 in the child. The child is a
copy of the parent that goes on from the same line, so it must be told where to stop:
after its job it calls os._exit(code) and never returns into the caller's code (not
even by an exception: that would run the caller's loop, its `finally:` blocks, its
cleanup, a second time, in the wrong process). sys.exit() is not enough, it raises.

A child that has ended stays a zombie (state Z) until its parent collects its exit
status with os.waitpid(); a parent that forgets fills the process table with them.

Write run_workers(jobs): start one child per job, all of them before waiting for any;
each child runs its job and exits with the job's return value (1 if the job raised);
then wait for every child and return the exit codes in the order of `jobs` (use
os.waitstatus_to_exitcode: a child killed by signal 9 reads as -9).
"""

from __future__ import annotations

import os
from typing import Callable

Job = Callable[[], int]


def run_workers(jobs: list[Job]) -> list[int]:
    """Run every job in its own child process, at the same time; their exit codes, in job order."""
    # TODO 1: for each job: pid = os.fork(). In the child (pid == 0): run the job inside
    #         try/finally and end with os._exit(code) (code 1 if the job raised).
    #         In the parent: remember which pid runs which job, and go on forking.
    # TODO 2: then, for each pid: _, status = os.waitpid(pid, 0);
    #         code = os.waitstatus_to_exitcode(status); put it in that job's place.
    raise NotImplementedError("TODO: write run_workers()")
