"""run_workers() returns the raw wait status (exit code 3 reads as 768) instead of the exit code.

Caught by: test_collects_exit_codes_in_job_order
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    pids = [start_worker(job) for job in jobs]
    return [os.waitpid(pid, 0)[1] for pid in pids]
