"""read_process() opens /proc/self/stat instead of /proc/<pid>/stat: every process looks like the caller.

Caught by: test_sleeping_child
"""

import os

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo


def read_process(pid):
    if not os.path.exists(f"/proc/{pid}"):
        return None
    with open("/proc/self/stat") as stat_file:
        after = stat_file.read().rpartition(")")[2].split()
    return ProcessInfo(state=after[0], ppid=int(after[1]), nice=int(after[16]))
