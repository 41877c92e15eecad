"""read_process() lets FileNotFoundError out for a process that has gone, instead of returning None.

Caught by: test_a_process_that_is_gone
"""

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo


def read_process(pid):
    with open(f"/proc/{pid}/stat") as stat_file:
        after = stat_file.read().rpartition(")")[2].split()
    return ProcessInfo(state=after[0], ppid=int(after[1]), nice=int(after[16]))
