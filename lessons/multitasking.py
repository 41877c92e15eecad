"""multitasking: why several tasks at once, processes against threads, and what a process is.

The notes open the process chapter with concepts: multitasking, concurrency against
parallelism, the process control block (PCB), and "a process is the smallest unit of
resource allocation". Each part here turns one of them into something measured on this
machine:

1. One CPU-bound job done twice: one after the other, in 2 threads, in 2 processes.
2. Two busy processes on one core (concurrent) and on two cores (parallel).
3. The PCB as Linux shows it: /proc/<pid>/status of a sleeping and a busy child.
4. What a process owns (its descriptor table, its memory map) and its threads share.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lessons.toolkit import procfs
from lessons.toolkit.common import RunFailure, wait_for
from lessons.toolkit.children import Children, check_nothing_left, closing_calmly
from lessons.toolkit.i18n import _, ngettext
from lessons.toolkit.narrate import Narrator
from lessons.process_states import busy_loop, check_linux, cpu_used, start_child

PARTS = (1, 2, 3, 4)


# --- 1. why multitasking: threads against processes for CPU-bound work -------------------


def count_down(steps: int) -> None:
    """Pure Python work that never waits: it needs the CPU, and under the GIL, the GIL."""
    while steps:
        steps -= 1


def one_after_the_other(steps: int) -> None:
    count_down(steps)
    count_down(steps)


def in_two_threads(steps: int) -> None:
    workers = [threading.Thread(target=count_down, args=(steps,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def in_two_processes(children: Children, steps: int) -> float:
    """Fork two children that each do the job; returns the CPU seconds they used together."""
    pids = [children.fork(lambda: count_down(steps)) for _ in range(2)]
    return sum(children.wait_with_usage(pid)[1] for pid in pids)


def timed(work: Callable[[], float | None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of `work`: the CPU time of this process (all its threads),
    or, when `work` returns a number, that: the CPU time of the children it ran."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    children_cpu = work()
    wall = time.perf_counter() - wall_start
    return wall, children_cpu if children_cpu is not None else time.process_time() - cpu_start


def load_text() -> str:
    """The 1-minute load average against the usable cores: is other work competing for them?"""
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    text = _("load average {load:.1f} over the last minute, {cores} usable cores").format(load=load, cores=cores)
    if load >= cores:
        text += _(": other processes are waiting for a CPU too, so the speed-ups below shrink")
    return text


def gil_enabled() -> bool:
    """sys._is_gil_enabled() from Python 3.13 on; every older CPython has the GIL."""
    return getattr(sys, "_is_gil_enabled", lambda: True)()


def gil_text() -> str:
    version = ".".join(map(str, sys.version_info[:3]))
    if gil_enabled():
        return _("Python {version} here has the GIL: one thread at a time runs Python code").format(version=version)
    return _("Python {version} here runs without the GIL (a free-threaded build)").format(version=version)


def show_threads_against_processes(say: Narrator, children: Children, steps: int) -> dict[str, tuple[float, float]]:
    say.rule(_("1. Why multitasking: one CPU-bound job, twice, three ways"))
    say("explain", _("The job counts down from {steps} in pure Python. Each way does it twice.").format(steps=steps))
    say("cores", load_text())
    results = {
        "sequential": timed(lambda: one_after_the_other(steps)),
        "threads": timed(lambda: in_two_threads(steps)),
        "processes": timed(lambda: in_two_processes(children, steps)),
    }
    labels = {"sequential": _("one after the other"), "threads": _("2 threads"), "processes": _("2 processes")}
    base = results["sequential"][0]
    for way, (wall, cpu) in results.items():
        say("result", _("{way:<19} {wall:5.2f} s wall, {cpu:5.2f} s CPU, {busy:3.1f} cores busy, "
                        "{speed:3.1f}x the speed of one after the other").format(
            way=labels[way], wall=wall, cpu=cpu, busy=cpu / wall if wall else 0.0, speed=base / wall if wall else 0.0))
    say("result", gil_text())
    if gil_enabled():
        say("explain", _("Two threads are no faster: the GIL lets one thread at a time run Python, so they "
                         "take turns on one core. Two processes each have their own interpreter and GIL, so "
                         "the kernel can run them on two cores at once. Threads still help when the work "
                         "waits (sockets, files, sleep): a waiting thread releases the GIL. Free-threaded "
                         "builds (python3.13t, python3.14t; PEP 703) drop the GIL, and there two threads "
                         "would use two cores too; `python -VV` says which build you have."))
    else:
        say("explain", _("Without the GIL, two threads can run Python on two cores at once, as two processes "
                         "can; with the GIL (the default build) they would take turns on one core."))
    return results


# --- 2. parallel against concurrent --------------------------------------------------------


def pinned_busy_loop(cpu: int) -> Callable[[], None]:
    def run() -> None:
        os.sched_setaffinity(0, {cpu})
        busy_loop()
    return run


def measure_racers(children: Children, cpus: list[int], window: float) -> tuple[list[float], float]:
    """Busy children pinned to `cpus` (one each): the CPU seconds each got, and the seconds that
    really passed between the two readings (a loaded machine can oversleep `window`)."""
    pids = [start_child(children, f"learn-core{cpu}-{number}", pinned_busy_loop(cpu))
            for number, cpu in enumerate(cpus)]
    for pid, cpu in zip(pids, cpus):
        wait_for(lambda: os.sched_getaffinity(pid) == {cpu}, timeout=15)
    started = time.monotonic()
    before = [procfs.read_stat(pid) for pid in pids]
    time.sleep(window)  # the measurement window
    used = [cpu_used(start, pid) for start, pid in zip(before, pids)]
    elapsed = time.monotonic() - started
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        children.wait(pid)
    return used, elapsed


def show_parallel_and_concurrent(say: Narrator, children: Children, window: float) -> dict[str, float]:
    say.rule(_("2. Concurrent or parallel: two busy processes on this machine's cores"))
    usable = sorted(os.sched_getaffinity(0))
    say("cores", _("os.cpu_count() = {count}; os.sched_getaffinity(0) = {usable}: the cores this process "
                   "may run on").format(count=os.cpu_count(), usable=set(usable)))
    shares = {}
    shared, elapsed = measure_racers(children, [usable[0], usable[0]], window)
    shares["one core"] = sum(shared) / elapsed
    say("result", _("both pinned to core {cpu}: {first:.2f} s + {second:.2f} s of CPU in {window:.1f} s = "
                    "{cores:.2f} cores: concurrent, they take turns").format(
        cpu=usable[0], first=shared[0], second=shared[1], window=elapsed, cores=shares["one core"]))
    if len(usable) < 2:
        say("result", _("only one core is usable here, so nothing can run in parallel"))
    else:
        apart, elapsed = measure_racers(children, usable[:2], window)
        shares["two cores"] = sum(apart) / elapsed
        say("result", _("pinned to cores {first_cpu} and {second_cpu}: {first:.2f} s + {second:.2f} s of CPU in "
                        "{window:.1f} s = {cores:.2f} cores: parallel, at the same instant").format(
            first_cpu=usable[0], second_cpu=usable[1], first=apart[0], second=apart[1], window=elapsed,
            cores=shares["two cores"]))
    say("explain", _("Concurrency is several tasks in progress over the same time, taking turns: one core "
                     "is enough, and one core never gives more than 1 s of CPU per second. Parallelism is "
                     "several running at the same instant, which needs several cores. Other work on this "
                     "machine takes its share too, so the parallel pair may get less than 2 cores."))
    return shares


# --- 3. the PCB: what Linux keeps per process ------------------------------------------------

PCB_FIELDS = ("Name", "State", "Pid", "PPid", "Threads", "VmRSS", "voluntary_ctxt_switches",
              "nonvoluntary_ctxt_switches")


def nap_often() -> None:
    while True:  # sleeps 100 times a second: each sleep gives the CPU up before its slice ends
        time.sleep(0.01)


def pcb_table(named: dict[str, int], statuses: dict[str, dict[str, str]]) -> Any:
    from rich.table import Table

    table = Table(title=_("read from /proc/<pid>/status"), title_justify="left")
    table.add_column(_("field"), no_wrap=True)
    for name in named:
        table.add_column(name, no_wrap=True)
    for field in PCB_FIELDS:
        table.add_row(field, *(statuses[name].get(field, "?") for name in named))
    return table


def first_processes_text() -> list[str]:
    """PID 1 and PID 2 as /proc shows them: both made by the kernel, so PPid 0."""
    lines = []
    for pid in (1, 2):
        info = procfs.read_stat(pid)
        if info is not None:
            lines.append(_("PID {pid} is {name}, PPid {ppid}").format(pid=pid, name=info.name, ppid=info.ppid))
    kernel_threads = [pid for pid in procfs.all_pids() if procfs.ppid(pid) == 2]
    if procfs.name(2) == "kthreadd":
        lines.append(ngettext("{count} kernel thread here has PPid 2: kthreadd made it, not a fork() from PID 1",
                              "{count} kernel threads here have PPid 2: kthreadd made them, not a fork() from PID 1",
                              len(kernel_threads)).format(count=len(kernel_threads)))
    else:
        lines.append(_("PID 2 is not kthreadd: this runs in a PID namespace (a container); on the host, "
                       "kthreadd is PID 2"))
    return lines


def show_pcb(say: Narrator, children: Children, window: float) -> dict[str, dict[str, str]]:
    say.rule(_("3. The PCB: what Linux keeps for each process"))
    cpu = min(os.sched_getaffinity(0))
    named = {
        "learn-napper": start_child(children, "learn-napper", nap_often),
        "learn-busy": start_child(children, "learn-busy", pinned_busy_loop(cpu)),
    }
    rival = start_child(children, "learn-rival", pinned_busy_loop(cpu))  # shares the core with learn-busy
    for pid in (named["learn-busy"], rival):
        wait_for(lambda: os.sched_getaffinity(pid) == {cpu}, timeout=15)
    time.sleep(window)  # let the counters grow
    procfs.wait_for_state(named["learn-napper"], "S", timeout=15)  # read it asleep, not just woken
    statuses = {name: procfs.read_status(pid) or {} for name, pid in named.items()}
    for pid in (*named.values(), rival):
        os.kill(pid, signal.SIGKILL)
        children.wait(pid)
    say.console.print(pcb_table(named, statuses))
    say("explain", _("This is the kernel's task_struct, the textbook's process control block, as text: "
                     "state, parent, threads, memory, and how the process left the CPU. A voluntary "
                     "switch is a time slice given up early: the process waited (sleep, read, a lock). A "
                     "nonvoluntary switch is a time slice used up: the scheduler took the CPU away because "
                     "another runnable process (learn-rival, on the same core) was waiting for it."))
    for line in first_processes_text():
        say("result", line)
    return statuses


# --- 4. the smallest unit of resource allocation ------------------------------------------


def open_and_map() -> tuple[int, int, mmap.mmap]:
    """Open a descriptor and map 1 MiB: (fd, the mapping's address, the mapping)."""
    import ctypes

    fd = os.open(os.devnull, os.O_RDONLY)
    region = mmap.mmap(-1, 1 << 20)
    view = ctypes.c_char.from_buffer(region)
    address = ctypes.addressof(view)
    del view  # release the buffer, so the mapping can be closed later
    return fd, address, region


def fd_folder(pid: int, tid: int | None = None) -> Path:
    return procfs.PROC / str(pid) / ("task/" + str(tid) if tid else "") / "fd"


def descriptors(pid: int, tid: int | None = None) -> set[int]:
    """The descriptor table of a process, or as one of its threads sees it.

    Listing a folder opens a descriptor, which shows up in a listing of our own table:
    keep only the entries still there once the listing is done.
    """
    folder = fd_folder(pid, tid)
    return {int(name) for name in os.listdir(folder) if os.path.lexists(folder / name)}


def fd_target(pid: int, fd: int, tid: int | None = None) -> str | None:
    """What descriptor `fd` of `pid` refers to (a path, pipe:[...]), or None when it is not open."""
    try:
        return os.readlink(fd_folder(pid, tid) / str(fd))
    except FileNotFoundError:
        return None


def open_text(target: str | None) -> str:
    return _("not open") if target is None else _("open, {target}").format(target=target)


def mapped(pid: int, address: int, tid: int | None = None) -> bool:
    """Is `address` inside one of the ranges listed in /proc/<pid>[/task/<tid>]/maps?"""
    path = procfs.PROC / str(pid) / ("task/" + str(tid) if tid else "") / "maps"
    for line in path.read_text().splitlines():
        start, _, end = line.split()[0].partition("-")
        if int(start, 16) <= address < int(end, 16):
            return True
    return False


def yes_no(value: bool) -> str:
    return _("yes") if value else _("no")


def show_thread_shares(say: Narrator) -> dict[str, bool]:
    """A second thread opens a descriptor and maps memory; the main thread sees both at once."""
    me = os.getpid()
    opened: list[tuple[int, int, mmap.mmap]] = []
    ready, finish = threading.Event(), threading.Event()

    def second_thread() -> None:
        opened.append((*open_and_map(), threading.get_native_id()))  # type: ignore[arg-type]
        ready.set()
        finish.wait()

    worker = threading.Thread(target=second_thread)
    worker.start()
    try:
        if not ready.wait(15):
            raise RunFailure(_("the second thread did not start within 15 s."))
        fd, address, region, tid = opened[0]  # type: ignore[misc]
        say("thread", _("a second thread (tid {tid}) opened {path} as fd {fd} and mapped 1 MiB at {address:#x}")
            .format(tid=tid, path=os.devnull, fd=fd, address=address))
        target = fd_target(me, fd, me)
        seen = {"fd": target == os.devnull, "map": mapped(me, address, me),
                "same table": descriptors(me, tid) == descriptors(me, me)}
        say("result", _("fd {fd} in the main thread's /proc/{pid}/task/{pid}/fd: {state}").format(
            fd=fd, pid=me, state=open_text(target)))
        say("result", _("{address:#x} in the main thread's /proc/{pid}/task/{pid}/maps: {seen}").format(
            address=address, pid=me, seen=yes_no(seen["map"])))
        say("result", _("/proc/{pid}/task/{tid}/fd and /proc/{pid}/task/{pid}/fd list the same descriptors: "
                        "{seen}; Threads in /proc/{pid}/status: {threads}").format(
            pid=me, tid=tid, seen=yes_no(seen["same table"]), threads=(procfs.read_status(me) or {}).get("Threads")))
    finally:
        finish.set()
        worker.join()
    os.close(fd)
    region.close()
    return seen


def show_child_copies(say: Narrator, children: Children) -> dict[str, bool]:
    """A forked child does the same; while it is alive, the parent has neither."""
    answer_read, answer_write = os.pipe()
    done_read, done_write = os.pipe()

    def child() -> None:
        fd, address, _region = open_and_map()
        os.write(answer_write, f"{fd} {address}".encode())
        os.read(done_read, 1)  # stay alive, descriptor open and memory mapped, until the parent has looked

    pid = children.fork(child)
    try:
        fd_text, address_text = os.read(answer_read, 100).decode().split()
        fd, address = int(fd_text), int(address_text)
        in_child, in_parent = fd_target(pid, fd), fd_target(os.getpid(), fd)
        seen = {"child fd": in_child == os.devnull, "child map": mapped(pid, address),
                "fd": in_parent == os.devnull, "map": mapped(os.getpid(), address)}
    finally:
        os.write(done_write, b"x")
        children.wait(pid)
        for end in (answer_read, answer_write, done_read, done_write):
            os.close(end)
    say("child", _("a forked child (pid {pid}) opened {path} as fd {fd} and mapped 1 MiB at {address:#x}")
        .format(pid=pid, path=os.devnull, fd=fd, address=address))
    say("result", _("fd {fd} in the child's /proc/{pid}/fd: {state}; {address:#x} in its maps: {seen}").format(
        fd=fd, pid=pid, state=open_text(in_child), address=address, seen=yes_no(seen["child map"])))
    say("result", _("fd {fd} in the parent's /proc/{pid}/fd: {state}").format(
        fd=fd, pid=os.getpid(), state=open_text(in_parent)))
    say("result", _("{address:#x} in the parent's /proc/{pid}/maps: {seen}").format(
        address=address, pid=os.getpid(), seen=yes_no(seen["map"])))
    return seen


def show_resources(say: Narrator, children: Children) -> dict[str, dict[str, bool]]:
    say.rule(_("4. The smallest unit of resource allocation: what a process owns"))
    child = show_child_copies(say, children)  # fork first: never fork while a second thread runs
    thread = show_thread_shares(say)
    say("explain", _("Resources belong to the process: its descriptor table, its memory map (and its "
                     "working directory, signal handlers, user ids). Its threads share all of them; each "
                     "thread has only its own stack, registers and thread id, the unit the scheduler runs. "
                     "fork() gives the child copies: the same descriptors and memory as at the moment of "
                     "the fork, then its own. Linux makes both with clone(): fork asks for copies, "
                     "pthread_create for sharing (CLONE_FILES, CLONE_VM)."))
    return {"thread": thread, "child": child}


# --- the lesson -----------------------------------------------------------------------


def main(
    part: Annotated[list[int] | None, typer.Option(
        "--part", min=1, max=4, metavar="N", help=_("Run only part N (1-4); repeat it for several."))] = None,
    steps: Annotated[int, typer.Option(min=10_000, max=100_000_000,
                                       help=_("How far the CPU-bound job of part 1 counts down."))] = 10_000_000,
    window: Annotated[float, typer.Option(min=0.1, max=30.0,
                                          help=_("Seconds each measurement of parts 2 and 3 lasts."))] = 0.5,
) -> None:
    """Processes against threads, concurrent against parallel, the PCB, what a process owns."""
    check_linux()
    chosen = sorted(set(part or PARTS))
    say = Narrator()
    with closing_calmly(say):
        with Children() as children:
            run_parts(say, children, chosen, steps, window)
        check_nothing_left(say)


def run_parts(say: Narrator, children: Children, chosen: list[int], steps: int, window: float) -> None:
    if 1 in chosen:
        show_threads_against_processes(say, children, steps)
    if 2 in chosen:
        show_parallel_and_concurrent(say, children, window)
    if 3 in chosen:
        show_pcb(say, children, window)
    if 4 in chosen:
        show_resources(say, children)
