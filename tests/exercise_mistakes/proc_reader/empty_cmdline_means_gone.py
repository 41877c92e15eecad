"""read_process() takes an empty /proc/<pid>/cmdline to mean "gone", so a zombie (which has none) reads as None.

Caught by: test_zombie_child
"""

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import read_process as _read_stat


def read_process(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if not cmdline.read():
                return None
    except FileNotFoundError:
        return None
    return _read_stat(pid)
