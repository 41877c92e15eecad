"""read_process() splits at the FIRST ')' (partition), so a name holding ')' shifts the fields.

Caught by: test_name_with_spaces_and_parentheses
"""

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo


def read_process(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            after = stat_file.read().partition(")")[2].split()
    except FileNotFoundError:
        return None
    return ProcessInfo(state=after[0], ppid=int(after[1]), nice=int(after[16]))
