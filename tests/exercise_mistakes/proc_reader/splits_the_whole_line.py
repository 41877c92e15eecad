"""read_process() splits the whole stat line on spaces, so a name with spaces shifts every field.

Caught by: test_name_with_spaces_and_parentheses
"""

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo


def read_process(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            fields = stat_file.read().split()
    except FileNotFoundError:
        return None
    return ProcessInfo(state=fields[2], ppid=int(fields[3]), nice=int(fields[18]))
