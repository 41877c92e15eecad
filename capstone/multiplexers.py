"""One small interface over the lessons' multiplexers: epoll, poll, select, selectors.

The chat's event loop does not care which system call waits for readiness, so each
engine is a backend with the same four methods, the way CPython's `selectors` does it:
`PollBackend` and `EpollBackend` are a few class attributes on one shared base, and a
backend exists only where the platform has its system call.

`wait` returns (fd, readable, writable) triples. An error or hang-up counts as
readable: the next recv() then reports the EOF or the error, which is where the
server handles it (the lesson servers' POLLHUP/POLLERR branch, in one place).
`modify(fd, write, read=False)` stops watching a connection's input for a while (the
server does that to a client that floods it with WHO or PING).
"""

from __future__ import annotations

import os
import select
import selectors
from typing import Callable

from lessons.toolkit import events

Ready = tuple[int, bool, bool]


class Backend:
    name = "abstract"
    max_fd: int | None = None  # descriptors from this one on cannot be watched (select)

    def register(self, fd: int, write: bool = False) -> None:
        raise NotImplementedError

    def modify(self, fd: int, write: bool, read: bool = True) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[Ready]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PollLikeBackend(Backend):
    """poll and epoll take the same calls; they differ in constants and timeout units."""

    READ: int
    WRITE: int
    ERROR: int
    describe: Callable[[int], str]

    def __init__(self, trace: Callable[[str], None] | None = None) -> None:
        self._poller = self._new_poller()
        self._trace = trace

    def _new_poller(self):  # noqa: ANN202 - select.poll or select.epoll
        raise NotImplementedError

    def _mask(self, write: bool, read: bool = True) -> int:
        return (self.READ if read else 0) | (self.WRITE if write else 0)

    def register(self, fd: int, write: bool = False) -> None:
        self._poller.register(fd, self._mask(write))

    def modify(self, fd: int, write: bool, read: bool = True) -> None:
        self._poller.modify(fd, self._mask(write, read))

    def unregister(self, fd: int) -> None:
        self._poller.unregister(fd)

    def _poll(self, timeout: float | None) -> list[tuple[int, int]]:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[Ready]:
        ready = []
        read_mask, write_mask, error_mask = self.READ, self.WRITE, self.ERROR
        for fd, mask in self._poll(timeout):
            if self._trace:
                self._trace(f"{self.name} -> fd {fd} {type(self).describe(mask)}")
            ready.append((fd, bool(mask & (read_mask | error_mask)), bool(mask & write_mask)))
        return ready


class PollBackend(_PollLikeBackend):
    name = "poll"
    READ = select.POLLIN
    WRITE = select.POLLOUT
    ERROR = select.POLLERR | select.POLLHUP | select.POLLNVAL
    describe = staticmethod(events.describe_poll)

    def _new_poller(self):  # noqa: ANN202
        return select.poll()

    def _poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # poll() counts in milliseconds, epoll in seconds: the notes' classic slip.
        return self._poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))


if hasattr(select, "epoll"):

    class EpollBackend(_PollLikeBackend):
        name = "epoll"
        READ = select.EPOLLIN
        WRITE = select.EPOLLOUT
        ERROR = select.EPOLLERR | select.EPOLLHUP
        describe = staticmethod(events.describe_epoll)

        def _new_poller(self):  # noqa: ANN202
            return select.epoll()

        def _poll(self, timeout: float | None) -> list[tuple[int, int]]:
            return self._poller.poll(-1 if timeout is None else max(0.0, timeout))

        def close(self) -> None:
            self._poller.close()


class SelectBackend(Backend):
    """select() rebuilds its fd lists on every call, and cannot watch fd >= 1024."""

    name = "select"
    FD_SETSIZE = 1024

    def __init__(self, trace: Callable[[str], None] | None = None) -> None:
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        self._trace = trace
        # A test hook: pretend FD_SETSIZE is smaller, to reach the limit with few connections.
        self.max_fd = int(os.environ.get("LEARN_TEST_FD_SETSIZE", self.FD_SETSIZE))

    def register(self, fd: int, write: bool = False) -> None:
        if fd >= self.max_fd:
            raise ValueError(f"select() cannot watch fd {fd}: FD_SETSIZE is {self.max_fd}")
        self.modify(fd, write)

    def modify(self, fd: int, write: bool, read: bool = True) -> None:
        (self._readers.add if read else self._readers.discard)(fd)
        (self._writers.add if write else self._writers.discard)(fd)

    def unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def wait(self, timeout: float | None) -> list[Ready]:
        readable, writable, _ = select.select(self._readers, self._writers, (), timeout)
        readable_set, writable_set = set(readable), set(writable)
        ready = [(fd, fd in readable_set, fd in writable_set) for fd in readable_set | writable_set]
        if self._trace:
            for fd, r, w in ready:
                self._trace(f"select -> fd {fd} {'readable ' if r else ''}{'writable' if w else ''}".rstrip())
        return ready


class SelectorsBackend(Backend):
    """The standard library's portable choice (epoll on Linux, kqueue on macOS)."""

    name = "selectors"

    def __init__(self, trace: Callable[[str], None] | None = None) -> None:
        self._selector = selectors.DefaultSelector()
        self._trace = trace
        self._parked: set[int] = set()  # watched for nothing: selectors refuses an empty mask

    @staticmethod
    def _events(write: bool, read: bool = True) -> int:
        return (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)

    def register(self, fd: int, write: bool = False) -> None:
        self._selector.register(fd, self._events(write))

    def modify(self, fd: int, write: bool, read: bool = True) -> None:
        events = self._events(write, read)
        if not events:
            if fd not in self._parked:
                self._selector.unregister(fd)
                self._parked.add(fd)
        elif fd in self._parked:
            self._parked.discard(fd)
            self._selector.register(fd, events)
        else:
            self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if fd in self._parked:
            self._parked.discard(fd)
        else:
            self._selector.unregister(fd)

    def wait(self, timeout: float | None) -> list[Ready]:
        ready = []
        for key, mask in self._selector.select(timeout):
            if self._trace:
                self._trace(f"selectors -> fd {key.fd} {events.describe_selectors(mask)}")
            ready.append((key.fd, bool(mask & selectors.EVENT_READ), bool(mask & selectors.EVENT_WRITE)))
        return ready

    def close(self) -> None:
        self._selector.close()


def available() -> dict[str, type[Backend]]:
    """The backends this platform has, by engine name."""
    found: dict[str, type[Backend]] = {}
    if hasattr(select, "epoll"):
        found["epoll"] = EpollBackend
    if hasattr(select, "poll"):
        found["poll"] = PollBackend
    found["select"] = SelectBackend
    found["selectors"] = SelectorsBackend
    return found
