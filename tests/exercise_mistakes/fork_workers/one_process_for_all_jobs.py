"""run_workers() forks one child that runs every job in turn, and reports its one code for each job.

Caught by: test_each_job_runs_in_its_own_child
"""

import os

from lessons.exercises.fork_workers.solution import *  # noqa: F401,F403


def run_workers(jobs):
    if not jobs:
        return []
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for job in jobs:
                code = job()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return [os.waitstatus_to_exitcode(status)] * len(jobs)
