"""A small reader of Linux /proc: what `ps` and `pstree` show, read by hand.

Every process has a directory /proc/<pid>. Its `stat` file is one line that holds the
state letter, the parent's pid, the nice value and the CPU time used so far; `comm` is
the short name pstree prints; `cmdline` is the full command line ps aux prints.
A pid that vanished (reaped, or never existed) reads as None: processes come and go
while we look, so "gone" is a normal answer, not an error.
Linux only: macOS has no /proc (use `ps -o pid,ppid,stat,nice,comm` there).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from lessons.toolkit.i18n import N_, _

PROC = Path("/proc")

# What the letters in `ps aux` (column STAT) and /proc/<pid>/stat mean.
STATE_MEANINGS = {
    "R": N_("running or runnable (on a CPU, or waiting for one)"),
    "S": N_("sleeping, interruptible (waiting for an event)"),
    "D": N_("disk sleep, uninterruptible (waiting inside the kernel)"),
    "T": N_("stopped by a signal (SIGSTOP, Ctrl-Z)"),
    "t": N_("stopped by a debugger (ptrace)"),
    "Z": N_("zombie: exited, parent has not reaped it yet"),
    "X": N_("dead (never seen: gone at once)"),
    "I": N_("idle kernel thread"),
    "P": N_("parked kernel thread"),
}

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat a lesson needs (see `man 5 proc` for the rest)."""

    pid: int
    name: str  # `comm`: at most 15 bytes, what pstree and `ps -o comm` show
    state: str  # one letter, see STATE_MEANINGS
    ppid: int
    pgrp: int
    session: int
    nice: int  # -20 (most favoured) .. 19 (kindest to others)
    cpu_ticks: int  # utime + stime, in CLOCK_TICKS_PER_SECOND units
    tpgid: int = -1  # the foreground process group of its terminal; -1: no terminal
    threads: int = 1

    @property
    def cpu_seconds(self) -> float:
        return self.cpu_ticks / CLOCK_TICKS_PER_SECOND


def parse_stat(line: str) -> ProcStat:
    """Parse one /proc/<pid>/stat line.

    The name sits in parentheses and may itself contain spaces and ')' (a process can
    rename itself to anything), so split at the LAST ')' and count fields from there.
    """
    head, _, tail = line.rpartition(")")
    pid_text, _, name = head.partition(" (")
    fields = tail.split()  # fields[0] is field 3 of `man 5 proc`, so field n is fields[n - 3]
    return ProcStat(
        pid=int(pid_text),
        name=name,
        state=fields[0],
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        session=int(fields[3]),
        nice=int(fields[16]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        tpgid=int(fields[5]),
        threads=int(fields[17]),
    )


def stat_column(info: ProcStat, locked_kb: int = 0) -> str:
    """The STAT column of `ps aux`, built as procps builds it from the same fields.

    The state letter, then: `<` nice below 0, `N` nice above 0, `L` pages locked in
    memory, `s` session leader, `l` more than one thread, `+` in the foreground process
    group of its terminal.
    """
    flags = info.state
    if info.nice < 0:
        flags += "<"
    elif info.nice > 0:
        flags += "N"
    if locked_kb:
        flags += "L"
    if info.session == info.pid:
        flags += "s"
    if info.threads > 1:
        flags += "l"
    if info.tpgid != -1 and info.tpgid == info.pgrp:
        flags += "+"
    return flags


def read_status(pid: int) -> dict[str, str] | None:
    """/proc/<pid>/status as a dict ("State" -> "S (sleeping)"); None once the process is gone.

    The readable face of what the kernel keeps per process (its task_struct, the textbook's
    PCB): state, parent, threads, memory, context switches.
    """
    try:
        text = (PROC / str(pid) / "status").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, _, value in fields}


def stat_of(pid: int) -> str | None:
    """What `ps -o stat` prints for `pid`, from /proc; None once it is gone."""
    info = read_stat(pid)
    status = read_status(pid)
    if info is None or status is None:
        return None
    locked = int(status.get("VmLck", "0 kB").split()[0] or 0)
    return stat_column(info, locked)


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat line, parsed; None if there is no such process (any more)."""
    try:
        line = (PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_stat(line)


def state(pid: int) -> str | None:
    """The state letter (R, S, D, T, Z...), or None once the process is gone."""
    info = read_stat(pid)
    return info.state if info else None


def ppid(pid: int) -> int | None:
    info = read_stat(pid)
    return info.ppid if info else None


def nice(pid: int) -> int | None:
    info = read_stat(pid)
    return info.nice if info else None


def name(pid: int) -> str | None:
    """The short name (`comm`), which a zombie keeps after its command line is gone."""
    info = read_stat(pid)
    return info.name if info else None


def command(pid: int) -> str | None:
    """The command line as `ps aux` prints it: `[name]` when there is none (zombies, kernel threads)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if raw:
        return " ".join(part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0"))
    short = name(pid)
    return f"[{short}]" if short is not None else None


def describe_state(letter: str) -> str:
    return _(STATE_MEANINGS[letter]) if letter in STATE_MEANINGS else _("unknown state")


def all_pids() -> list[int]:
    return sorted(int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit())


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid`, zombies included, in pid order.

    /proc/<pid>/task/<tid>/children lists them per thread when the kernel has
    CONFIG_PROC_CHILDREN; otherwise scan every process's ppid, as pstree does.
    """
    tasks = PROC / str(pid) / "task"
    try:
        files = [task / "children" for task in tasks.iterdir()]
        if files and all(file.exists() for file in files):
            found = {int(text) for file in files for text in _read_or_empty(file).split()}
            return sorted(found)
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [other for other in all_pids() if ppid(other) == pid]


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):  # the thread ended while we looked
        return ""


def in_session(session: int) -> list[ProcStat]:
    """Every process of a session; a process keeps its session when orphaned, so leaks show here."""
    found = (read_stat(pid) for pid in all_pids())
    return [info for info in found if info is not None and info.session == session]


def wait_for_state(pid: int, letters: str, timeout: float = 10.0) -> ProcStat:
    """Poll /proc until the process is in one of `letters`; TimeoutError after `timeout` s.

    A state is reached when the kernel gets there, not when our call returns: kill()
    returns before SIGSTOP is delivered, and a child may not have run yet after fork().
    """
    deadline = time.monotonic() + timeout
    while True:
        info = read_stat(pid)
        if info is None:
            raise ProcessLookupError(_("process {pid} is gone while waiting for state {letters}").format(pid=pid, letters=letters))
        if info.state in letters:
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(_("process {pid} stayed in {state}, not {letters}, for {timeout} s").format(pid=pid, state=info.state, letters=letters, timeout=timeout))
        time.sleep(0.005)
