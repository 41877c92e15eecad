"""How much one wait call costs with N watched descriptors, for select, poll, epoll, selectors.

The set-up is Kerrisk's: N descriptors are watched, exactly one of them is ready, and we
time only the wait call (registration is done once, outside the clock). select() and
poll() hand the whole list to the kernel on every call and the kernel walks all of it,
so their cost grows with N. epoll keeps the interest list inside the kernel and returns
only the ready descriptors, so its cost stays flat. DefaultSelector is epoll on Linux,
plus the Python work of building (key, events) pairs.

Each watched descriptor is an eventfd (one descriptor, no partner), made readable once by
writing to it. select() cannot watch a descriptor numbered 1024 or more (FD_SETSIZE), so
its row stops there.
"""

from __future__ import annotations

import os
import resource
import select
import selectors
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable
from lessons.toolkit.i18n import _

FD_SETSIZE = 1024  # glibc's fixed size of an fd_set: select() rejects descriptors >= this
MULTIPLEXERS = ("select", "poll", "epoll", "selectors")
SIZES = (10, 30, 100, 300, 1000, 3000, 10_000, 20_000)


@dataclass
class Row:
    """One N: the median microseconds of one wait call per multiplexer (None = not measured)."""

    n: int
    micros: dict[str, float | None]


@dataclass
class Report:
    repeat: int
    max_fds: int
    fd_limit: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "benchmark": "multiplexers",
            "unit": _("microseconds per wait call (median)"),
            **asdict(self),
        }


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `wanted` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def make_eventfds(count: int) -> list[int]:
    """`count` eventfds, lowest numbers first, so the first ones fit select()'s limit."""
    fds: list[int] = []
    try:
        for _ in range(count):
            fds.append(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
    except OSError:
        close_all(fds)
        raise
    return fds


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def time_calls(call: Callable[[], object], repeat: int) -> float:
    """Median microseconds of `call()`, each call timed on its own (a few warm-ups first)."""
    for _ in range(3):
        call()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        start = clock()
        call()
        samples.append(clock() - start)
    return statistics.median(samples) / 1000


def no_cleanup() -> None:
    """select() keeps no state between calls, and a poll object is freed with its last reference."""


def waiter(name: str, fds: list[int]) -> tuple[Callable[[], object], Callable[[], None]]:
    """Register `fds` with one multiplexer (untimed); returns (one wait call, clean-up)."""
    if name == "select":
        return (lambda: select.select(fds, [], [], 0)), no_cleanup
    if name == "poll":
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        return (lambda: poller.poll(0)), no_cleanup
    if name == "epoll":
        epoll = select.epoll()
        for fd in fds:
            epoll.register(fd, select.EPOLLIN)
        return (lambda: epoll.poll(0)), epoll.close
    selector = selectors.DefaultSelector()
    for fd in fds:
        selector.register(fd, selectors.EVENT_READ)
    return (lambda: selector.select(0)), selector.close


def measure_one(name: str, fds: list[int], repeat: int) -> float:
    """Median microseconds of one wait call of `name` over `fds`."""
    call, close = waiter(name, fds)
    try:
        first = call()
        ready = len(first[0]) if name == "select" else len(first)
        if ready != 1:  # a broken set-up would time the wrong thing
            raise RuntimeError(_("{name} reported {ready} ready descriptors, expected exactly 1").format(name=name, ready=ready))
        return time_calls(call, repeat)
    finally:
        close()


def sizes_up_to(max_fds: int) -> list[int]:
    sizes = [n for n in SIZES if n < max_fds]
    return sizes + [max_fds]


def run(max_fds: int = 10_000, repeat: int = 1000, on_progress: Callable[[str], None] | None = None) -> Report:
    """Measure every multiplexer at every N up to `max_fds`; the caller renders the Report."""
    reserve = 32  # descriptors the interpreter, the terminal and the epoll objects need
    limit = raise_fd_limit(max_fds + reserve)
    report = Report(repeat=repeat, max_fds=max_fds, fd_limit=limit)
    if max_fds + reserve > limit:
        max_fds = max(limit - reserve, 1)
        report.notes.append(_("the open-file limit ({limit}, hard limit reached) caps N at "
                              "{max_fds}.").format(limit=limit, max_fds=max_fds))
        report.max_fds = max_fds
    fds = make_eventfds(max_fds)
    try:
        for n in sizes_up_to(max_fds):
            watched = fds[:n]
            ready_fd = watched[-1]  # the highest number: select must scan the whole set
            os.eventfd_write(ready_fd, 1)
            row = Row(n=n, micros={})
            for name in MULTIPLEXERS:
                if on_progress:
                    on_progress(f"{name}, N={n}")
                if name == "select" and ready_fd >= FD_SETSIZE:
                    row.micros[name] = None
                    continue
                row.micros[name] = measure_one(name, watched, repeat)
            os.eventfd_read(ready_fd)
            report.rows.append(row)
    finally:
        close_all(fds)
    if any(row.micros["select"] is None for row in report.rows):
        report.notes.append(
            _("select stops below N={limit}: an fd_set has FD_SETSIZE={limit} bits, so "
              "descriptors numbered {limit} or more cannot be watched (Python raises "
              "ValueError).").format(limit=FD_SETSIZE)
        )
    return report
