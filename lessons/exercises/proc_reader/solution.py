"""Exercise proc-reader, the reference solution: state, ppid and nice from /proc/<pid>/stat.

Lesson:  learn show process-states     Check:  learn exercise check proc-reader
"""

from __future__ import annotations

from typing import NamedTuple


class ProcessInfo(NamedTuple):
    state: str  # one letter: R running, S sleeping, D disk sleep, T stopped, Z zombie
    ppid: int  # the parent's pid
    nice: int  # -20 (greedy) .. 19 (kind to others)


def read_process(pid: int) -> ProcessInfo | None:
    """State, parent and nice value of `pid` from /proc/<pid>/stat; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat_file:
            line = stat_file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    after_name = line.rpartition(")")[2].split()  # after_name[0] is field 3
    field = lambda number: after_name[number - 3]  # noqa: E731 - field numbers as in `man 5 proc`
    return ProcessInfo(state=field(3), ppid=int(field(4)), nice=int(field(19)))
