"""The log sink never blocks its caller, says what it dropped, and notices a closed reader."""

from __future__ import annotations

import os
import threading
import time

from lessons.toolkit.i18n import language_from_environment
from lessons.toolkit.logsink import LogSink, RepeatCounter


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_writes_to_an_unread_pipe_never_block_and_the_drop_is_reported() -> None:
    read_end, write_end = os.pipe()
    sink = LogSink(write_end, max_queued=10, on_closed=lambda: None)
    line = "x" * 1000 + "\n"
    started = time.monotonic()
    for _ in range(500):  # 500 KB: far more than a pipe (64 KiB) plus the queue hold
        sink.write(line)
    assert time.monotonic() - started < 2.0, "a log write blocked the caller"
    assert sink.dropped > 0

    received = bytearray()

    def drain() -> None:
        while not received.endswith(b"not being read\n"):
            chunk = os.read(read_end, 65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    reader.join(10)
    assert b"log lines dropped: the output was not being read" in received
    os.close(read_end)
    os.close(write_end)


def test_a_reader_that_keeps_reading_loses_nothing_however_fast_lines_come() -> None:
    """--trace on a terminal: thousands of lines a second, a reader slower than the server
    but reading. The server waits for room (briefly) instead of dropping lines."""
    read_end, write_end = os.pipe()
    sink = LogSink(write_end, max_queued=10, on_closed=lambda: None)
    received = bytearray()
    lines = 5000

    def read_all() -> None:
        while received.count(b"\n") < lines:
            chunk = os.read(read_end, 512)  # small reads: slower than the writes
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    for number in range(lines):
        sink.write(f"line {number}\n")
    reader.join(20)
    assert sink.dropped == 0 and b"dropped" not in received
    assert received.decode().splitlines() == [f"line {number}" for number in range(lines)]
    os.close(read_end)
    os.close(write_end)


def test_a_closed_reader_calls_on_closed_once() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    calls = []
    sink = LogSink(write_end, on_closed=lambda: calls.append(1))
    for _ in range(5):
        sink.write("hello\n")
    assert wait_for(lambda: sink.closed)
    assert calls == [1]
    os.close(write_end)


def test_repeat_counter_reports_the_first_at_once_then_once_per_interval() -> None:
    counter = RepeatCounter(interval=1.0)
    assert counter.count(100.0) == 1
    assert [counter.count(100.0 + i / 1000) for i in range(1, 500)] == [0] * 499
    assert counter.next_report_at() == 101.0
    assert counter.due(100.9) == 0
    assert counter.due(101.0) == 499
    assert counter.due(105.0) == 0


def test_language_rule() -> None:
    assert language_from_environment({}) == "en"
    assert language_from_environment({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert language_from_environment({"LANG": "zh_CN.UTF-8", "LEARN_LANG": "en"}) == "en"
    assert language_from_environment({"LANGUAGE": "en_US:zh_CN", "LANG": "zh_CN.UTF-8"}) == "en"
    assert language_from_environment({"LC_ALL": "C.UTF-8"}) == "en"
