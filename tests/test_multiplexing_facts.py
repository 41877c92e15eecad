"""What the multiplexing pages claim about the kernel, checked against the kernel, and --notes-bug.

Issue 10, "Facts to correct" 1, 2 and 8: each page's sentence has a test here that would
fail if the sentence were wrong. And the notes' own buggy poll server (`--notes-bug`).
"""

from __future__ import annotations

import re
import select
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lessonrun import child_env, lesson_command

REPO = Path(__file__).resolve().parent.parent
PREFIX = "收到了: ".encode()
needs_epoll = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")
needs_poll = pytest.mark.skipif(not hasattr(select, "poll"), reason="no poll() here")


@pytest.fixture
def tcp_pair():
    """A connected TCP pair over loopback: (ours, theirs), as a server and its client."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname(), timeout=5)
        ours, _ = listener.accept()
    yield ours, theirs
    ours.close()
    theirs.close()


def poll_once(sock: socket.socket, mask: int, timeout_ms: int = 2000) -> int:
    poller = select.poll()
    poller.register(sock, mask)
    events = poller.poll(timeout_ms)
    return events[0][1] if events else 0


@needs_poll
@pytest.mark.timeout(30)
def test_a_tcp_peers_close_is_pollin_not_pollhup(tcp_pair):
    """poll-server.md: a peer's FIN makes the socket readable (recv returns b''); POLLHUP needs both sides shut."""
    ours, theirs = tcp_pair
    theirs.close()
    rdhup = getattr(select, "POLLRDHUP", 0)
    mask = poll_once(ours, select.POLLIN | rdhup)
    assert mask & select.POLLIN
    assert not mask & select.POLLHUP, "a peer's close alone is not a hang-up"
    if rdhup:
        assert mask & rdhup, "POLLRDHUP, when asked for, says the peer shut its writing side"
    ours.shutdown(socket.SHUT_WR)  # now neither direction is open
    assert poll_once(ours, select.POLLIN) & select.POLLHUP


@needs_poll
@pytest.mark.timeout(30)
def test_a_reset_is_pollin_pollerr_pollhup(tcp_pair):
    ours, theirs = tcp_pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    assert poll_once(ours, select.POLLIN) == select.POLLIN | select.POLLERR | select.POLLHUP


@needs_epoll
@pytest.mark.timeout(30)
def test_edge_triggered_epoll_reports_every_arrival_even_with_data_unread(tcp_pair):
    """epoll-server.md: each arrival is an event, not only the change from empty to non-empty."""
    ours, theirs = tcp_pair
    with select.epoll() as epoll:
        epoll.register(ours.fileno(), select.EPOLLIN | select.EPOLLET)
        theirs.sendall(b"first")
        assert epoll.poll(2) == [(ours.fileno(), select.EPOLLIN)]
        assert epoll.poll(0.1) == [], "no new arrival, no new event (the first bytes are still unread)"
        theirs.sendall(b"second")
        assert epoll.poll(2) == [(ours.fileno(), select.EPOLLIN)], "a new arrival on a non-empty buffer"
    assert ours.recv(100) == b"firstsecond"


@pytest.mark.timeout(30)
def test_select_and_selectors_report_a_reset_as_ready_for_whatever_was_asked(tcp_pair):
    """select-server.md, selectors-server.md: an error counts as readable AND writable."""
    ours, theirs = tcp_pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    readable, writable, _ = select.select([ours], [ours], [], 2)
    assert readable == [ours] and writable == [ours]
    with selectors.DefaultSelector() as selector:
        selector.register(ours, selectors.EVENT_READ | selectors.EVENT_WRITE)
        [(key, mask)] = selector.select(2)
        assert mask == selectors.EVENT_READ | selectors.EVENT_WRITE


# ----- the notes' own poll server -------------------------------------------------------


def test_notes_bug_demo_shows_the_keyerror_and_the_fix():
    result = subprocess.run(lesson_command("poll-server", "--notes-bug", "--demo"), cwd=REPO, env=child_env(),
                            capture_output=True, text=True, encoding="utf-8", timeout=40)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"error  KeyError: \d+ at poll_server\.py line \d+: poller\.unregister\(fdmap\[fd\]\)$",
                     out, re.MULTILINE), out
    assert "del fdmap[fd]" in out and "conn = fdmap.pop(fd)" in out
    assert "bob gets no answer: his connection was closed when the server died" in out
    assert "stopped (the notes' KeyError)" in out
    assert "Traceback" not in result.stderr + out


def read_line_with(process: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        line = process.stdout.readline() if ready else ""
        if not line:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    pytest.fail(f"no line matching {pattern!r}:\n{''.join(seen)}")


def test_notes_bug_server_dies_at_the_first_disconnect_with_one_narrated_explanation():
    process = subprocess.Popen(lesson_command("poll-server", "--notes-bug", "--port", "0"), cwd=REPO,
                               env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8")
    try:
        port = int(read_line_with(process, r"^listening on \S+:(\d+)$", 20).group(1))
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        second.sendall(b"hi")
        assert second.recv(100) == PREFIX + b"hi"
        first.close()
        read_line_with(process, r"KeyError: \d+ at poll_server\.py", 20)
        assert second.recv(100) == b"", "the crash took the other client's connection with it"
        second.close()
        assert process.wait(20) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_the_demo_counts_answers_with_the_right_plural():
    """Issue 10 defect 13: "in 1 answers" (seen when RECV_SIZE is raised to 4096, as a page suggests trying)."""
    from lessons.echo_demo import all_back_text, pieces_text

    assert all_back_text("alice", 3000, 1) == "alice got all 3000 bytes back, in 1 answer"
    assert all_back_text("alice", 3000, 3) == "alice got all 3000 bytes back, in 3 answers"
    assert "in 1 pieces" not in pieces_text(1) and "in 3 pieces" in pieces_text(3)
