"""The child runs os._exit(job()) with no try/finally: a job that raises escapes into the caller's code.

Caught by: test_a_job_that_raises_exits_1_inside_its_child
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403


def run_workers(jobs):
    pids = []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            os._exit(job())
        pids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
