"""Exercise proc-reader: a process's state, parent and nice value, read from /proc.

Lesson:  learn show process-states     Check:  learn exercise check proc-reader

`ps aux` and `pstree` are readers of /proc. Every process has a directory /proc/<pid>,
and its file `stat` is one line:

    4242 (python3) S 4100 4242 4100 34816 4242 4194560 ... 0 20 0 1 0 ...
    pid  (name)    state ppid ...                   (field 19 is nice)

Fields are numbered from 1 as in `man 5 proc`: 1 pid, 2 name, 3 state, 4 ppid, 19 nice.
The trap: the name is whatever the process calls itself, spaces and ')' included, so
splitting the whole line on spaces breaks. Split at the LAST ')' and count from there.
A process can disappear between two looks: then there is simply no answer (None).
"""

from __future__ import annotations

from typing import NamedTuple


class ProcessInfo(NamedTuple):
    state: str  # one letter: R running, S sleeping, D disk sleep, T stopped, Z zombie
    ppid: int  # the parent's pid
    nice: int  # -20 (greedy) .. 19 (kind to others)


def read_process(pid: int) -> ProcessInfo | None:
    """State, parent and nice value of `pid` from /proc/<pid>/stat; None if there is no such process."""
    # TODO 1: read /proc/<pid>/stat; FileNotFoundError or ProcessLookupError -> return None.
    # TODO 2: everything after the LAST ")" is fields 3, 4, 5...: split that part on spaces.
    # TODO 3: state is field 3, ppid field 4, nice field 19 (careful with the offsets).
    raise NotImplementedError("TODO: write read_process()")
