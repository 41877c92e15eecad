"""read_process() reports os.nice(0), the caller's own nice value, instead of the process's from /proc.

Caught by: test_niced_child
"""

import os

from lessons.exercises.proc_reader.solution import *  # noqa: F401,F403
from lessons.exercises.proc_reader.solution import ProcessInfo, read_process as _read_stat


def read_process(pid):
    info = _read_stat(pid)
    return None if info is None else ProcessInfo(info.state, info.ppid, os.nice(0))
