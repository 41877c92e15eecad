"""run_workers() waits for each child right after forking it: the workers run one after another.

Caught by: test_workers_run_at_the_same_time
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    codes = []
    for job in jobs:
        _, status = os.waitpid(start_worker(job), 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes
