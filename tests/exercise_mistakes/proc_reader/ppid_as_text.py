"""read_process() returns the ppid and nice as the strings read from the file, not as ints.

Caught by: test_reads_its_own_process
"""

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo


def read_process(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            after = stat_file.read().rpartition(")")[2].split()
    except FileNotFoundError:
        return None
    return ProcessInfo(state=after[0], ppid=after[1], nice=after[16])
