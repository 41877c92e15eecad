"""Exercise fork-workers, the reference solution: fork N workers, collect them with waitpid.

Lesson:  learn show fork-demo          Check:  learn exercise check fork-workers
"""

from __future__ import annotations

import os
from typing import Callable

Job = Callable[[], int]


def run_workers(jobs: list[Job]) -> list[int]:
    """Run every job in its own child process, at the same time; their exit codes, in job order."""
    pids = [start_worker(job) for job in jobs]  # all started before any is waited for
    codes = []
    for pid in pids:  # waitpid(pid) per child: codes land in job order, and no zombie is left
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def start_worker(job: Job) -> int:
    """Fork; the child runs `job` and exits with its result; the parent gets the child's pid."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1  # if the job raises, the child still ends here, with 1
    try:
        code = job()
    finally:
        os._exit(code)  # never return into the parent's code
