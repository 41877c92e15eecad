"""run_workers() collects with os.wait() (any child) and lists the codes in the order the children ended.

Caught by: test_codes_follow_job_order_not_finish_order
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    pids = [start_worker(job) for job in jobs]
    codes = []
    for _ in pids:
        _, status = os.wait()
        codes.append(os.waitstatus_to_exitcode(status))
    return codes
