"""`return codes` is indented into the waiting loop: one code comes back, and no list at all for no jobs.

Caught by: test_no_jobs_no_workers
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    pids = [start_worker(job) for job in jobs]
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
        return codes
