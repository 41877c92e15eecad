"""run_workers() reads the exit codes with os.waitid(..., WNOWAIT) and never reaps: zombies stay behind.

Caught by: test_leaves_no_zombie_and_no_running_child
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403
from lessons.exercises.fork_workers.solution import start_worker


def run_workers(jobs):
    pids = [start_worker(job) for job in jobs]
    codes = []
    for pid in pids:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # looks, but leaves the zombie
        codes.append(info.si_status if info.si_code == os.CLD_EXITED else -info.si_status)
    return codes
