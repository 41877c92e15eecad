"""A server's log output that can never block the server, and floods summed up.

A server that prints with an ordinary `print()` stops the moment nobody reads its
output: a pipe holds about 64 KiB, a terminal paused with Ctrl-S holds less, and then
`write()` blocks the whole event loop (members time out, SIGTERM waits). So servers
write their log through a `LogSink`:

- lines go into a bounded queue and one writer thread does the blocking writes;
- when the queue is full but the reader is reading (only slower than the server
  writes, as with `--trace` on a terminal), the server waits for room, briefly: a
  reader that keeps up loses nothing;
- when the queue stays full (nobody reads), new lines are counted and dropped without
  any more waiting, and once the reader catches up one line says how many were lost;
- when the reader is gone for good (EPIPE: `| head` exited, the pager was quit),
  `on_closed` runs once; by default the process gets SIGTERM, so a server stops the
  way it always stops, quietly and at once.

`RepeatCounter` turns a flood of one event (EMFILE on every accept) into one line a
second with a count.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from typing import Callable
from lessons.toolkit.i18n import _, ngettext

MAX_QUEUED_WRITES = 2000  # about 200 KiB of typical log lines
STALL_SECONDS = 0.1  # a full queue that frees no room in this long means nobody is reading


def stop_this_process() -> None:
    """The default reaction to a closed log: stop the way Ctrl-C or SIGTERM would."""
    os.kill(os.getpid(), signal.SIGTERM)


class LogSink:
    """A write-only, file-like object (rich's Console can print to it) that never blocks."""

    encoding = "utf-8"

    def __init__(self, fd: int = 1, max_queued: int = MAX_QUEUED_WRITES,
                 on_closed: Callable[[], None] = stop_this_process) -> None:
        self.fd = fd
        self.on_closed = on_closed
        self.closed = False  # the reader went away (EPIPE) or the descriptor is gone
        self.dropped = 0  # lines dropped since the last "dropped" notice
        self.stalled = False  # the writer made no progress for STALL_SECONDS: drop, never wait
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queued)
        self._lock = threading.Lock()
        self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        self._writer.start()

    # ----- what a server calls ---------------------------------------------------------

    def write(self, text: str) -> int:
        if self.closed or not text:
            return len(text)
        data = text.encode(self.encoding, errors="replace")
        try:
            self._queue.put(data, block=not self.stalled, timeout=STALL_SECONDS)
        except queue.Full:
            self.stalled = True
            with self._lock:
                self.dropped += max(1, text.count("\n"))
        return len(text)

    def flush(self) -> None:
        """Nothing to do: the writer thread writes as fast as the reader reads."""

    def wait_written(self, timeout: float = 0.5) -> bool:
        """Wait (bounded) until what was queued is written; True if it was. For exits."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and not self.closed:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return not self.closed

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def writable(self) -> bool:
        return True

    # ----- the writer thread -------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            data = self._queue.get()
            try:
                if not self.closed:
                    self._write_all(data)
                    if self.stalled and self._queue.qsize() <= self._queue.maxsize // 2:
                        self.stalled = False  # the reader is keeping up again: worth waiting for
                    if self._queue.empty():
                        self._report_dropped()
            finally:
                self._queue.task_done()

    def _report_dropped(self) -> None:
        with self._lock:
            count, self.dropped = self.dropped, 0
        if count:
            dropped = ngettext("... {count:,} log line dropped: the output was not being read\n",
                               "... {count:,} log lines dropped: the output was not being read\n", count)
            self._write_all(dropped.format(count=count).encode())

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                written = os.write(self.fd, view)
            except InterruptedError:
                continue
            except OSError:  # EPIPE, EBADF, EIO: nobody will ever read this output
                self._reader_gone()
                return
            view = view[written:]

    def _reader_gone(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed()


class RepeatCounter:
    """Counts a repeated event and says when a summary line is due (at most once per interval).

        refusals = RepeatCounter()
        ...
        count = refusals.count(now)          # on every refused connection
        if count:
            log(f"refused {count:,} connections: too many open files")

    The first event is reported at once; later ones are summed until `interval` has
    passed. A loop that wants the last few reported after the flood stops calls
    `due(now)` when it wakes (and can wait no longer than `next_report_at()`).
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.pending = 0
        self.last_report: float | None = None

    def count(self, now: float) -> int:
        self.pending += 1
        return self.due(now)

    def due(self, now: float) -> int:
        """How many to report now (0 when nothing is pending or it is too soon)."""
        if not self.pending:
            return 0
        if self.last_report is not None and now - self.last_report < self.interval:
            return 0
        count, self.pending, self.last_report = self.pending, 0, now
        return count

    def next_report_at(self) -> float | None:
        if not self.pending or self.last_report is None:
            return None
        return self.last_report + self.interval
