"""run_workers() decodes the status as status >> 8: a worker killed by a signal reads as 0, not -9.

Caught by: test_a_worker_killed_by_a_signal
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    pids = [start_worker(job) for job in jobs]
    return [os.waitpid(pid, 0)[1] >> 8 for pid in pids]
