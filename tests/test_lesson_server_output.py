"""The lesson servers' output can never stop them: a closed pipe ends them, an unread one is skipped.

Issue 9 finding 2 (log lines were blocking writes) and issue 10 defect 4 (`--demo | head -1`
hung until Ctrl-C). Every process here is a real `python -m lessons run ...` whose stdout
is a real pipe; every wait has a deadline.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from lessonrun import child_env, default_sigint, lesson_command

from lessons.toolkit.logsink import MAX_QUEUED_WRITES

REPO = Path(__file__).resolve().parent.parent
PIPE_SIZE = 4096  # the smallest pipe Linux allows: one page
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PREFIX = "收到了: ".encode()
HAS_EPOLL = hasattr(select, "epoll")
needs_epoll = pytest.mark.skipif(not HAS_EPOLL, reason="epoll is Linux-only")

DEMOS = [
    pytest.param(("poll-server",), id="poll"),
    pytest.param(("epoll-server",), id="epoll", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge"), id="epoll-edge", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge", "--no-drain"), id="epoll-no-drain", marks=needs_epoll),
    pytest.param(("select-server",), id="select"),
    pytest.param(("selectors-server",), id="selectors"),
]


def read_first_line(fd: int, timeout: float) -> bytes:
    """Read from a pipe until the first newline (the server's `listening on ...`), with a deadline."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no first line within {timeout} s (got {data!r})"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)  # one byte at a time: nothing after the first line is read
            assert chunk, "the process closed its output before its first line"
            data += chunk
    return data


def exit_code_within(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


@pytest.mark.parametrize("args", DEMOS)
def test_a_demo_whose_reader_goes_away_ends_at_once_and_quietly(args):
    """`learn run X --demo | head -1`: head reads one line and exits; the demo must follow."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(lesson_command(*args, "--demo", "--trace"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        assert read_first_line(read_end, 20).startswith(b"listening on ")
    finally:
        os.close(read_end)  # what head does after its first line
    started = time.monotonic()
    code = exit_code_within(process, 10)
    if code is None:
        process.kill()
        process.wait()
        pytest.fail("the demo still ran 10 s after its reader went away")
    took = time.monotonic() - started
    errors = process.stderr.read().decode()
    process.stderr.close()
    assert code == 0, errors
    assert errors == "", "a closed stdout ends the demo quietly"
    assert took < 5, f"it took {took:.1f} s to notice"


def ask(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(message)
    want = len(PREFIX) + len(message)
    data = b""
    while len(data) < want:
        chunk = sock.recv(want - len(data))
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("args", [("poll-server",), pytest.param(("epoll-server", "--edge"), marks=needs_epoll),
                                  ("select-server",), ("selectors-server",)])
def test_a_server_whose_output_nobody_reads_keeps_serving_and_stops_on_sigterm(args):
    """Log lines never read: half again what a one-page pipe and the log's queue hold together
    (its writer blocks, then lines are dropped). The server must not notice."""
    # 2.2 to 3 lines of ~45 bytes per message (edge-triggered epoll logs fewest): 1,400 messages
    # make 3,100 lines or more; the queue holds 2,000 lines and the pipe about 100.
    messages = MAX_QUEUED_WRITES * 7 // 10
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    process = subprocess.Popen(lesson_command(*args, "--trace", "--port", "0"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        first = read_first_line(read_end, 20).decode()
        port = int(first.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            for number in range(messages):
                message = f"message {number}".encode()
                assert ask(sock, message) == PREFIX + message, f"no answer to message {number}"
        process.send_signal(signal.SIGTERM)
        code = exit_code_within(process, 5)
        assert code == 0, "SIGTERM stops a server whose log is stuck, at once and with exit 0"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(read_end)
        process.stderr.close()


WRITE_WAITS = [
    pytest.param(("poll-server",), r"modify fd (\d+) POLLOUT", r"poll\(\) -> \[.*\({fd}, POLLOUT\)",
                 r"modify fd {fd} POLLIN", id="poll"),
    pytest.param(("epoll-server",), r"modify fd (\d+) EPOLLOUT", r"epoll\.poll\(\) -> \[.*\({fd}, EPOLLOUT\)",
                 r"modify fd {fd} EPOLLIN", id="epoll", marks=needs_epoll),
    pytest.param(("epoll-server", "--edge"), r"modify fd (\d+) EPOLLOUT\|EPOLLET",
                 r"epoll\.poll\(\) -> \[.*\({fd}, EPOLLOUT\)", r"modify fd {fd} EPOLLIN\|EPOLLET",
                 id="epoll-edge", marks=needs_epoll),
    pytest.param(("select-server",), r"send +fd (\d+): only \d+ of \d+ bytes fit", r"-> \(\[[\d, ]*\], \[{fd}\], \[\]\)",
                 r"recv .*\(fd {fd}\) sent", id="select"),
    pytest.param(("selectors-server",), r"modify fd (\d+) EVENT_WRITE", r"select\(\) -> \[.*\({fd}, EVENT_WRITE\)",
                 r"modify fd {fd} EVENT_READ", id="selectors"),
]


@pytest.mark.parametrize(("args", "waits", "writable", "resumes"), WRITE_WAITS)
def test_a_client_that_does_not_read_is_waited_for_with_pollout_and_loses_nothing(args, waits, writable, resumes):
    """Issue 10: --trace shows the server waiting to write (POLLOUT), and every byte still comes back."""
    import re
    import threading

    process = subprocess.Popen(lesson_command(*args, "--trace", "--port", "0"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)

    def wait_for(pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if found := re.search(pattern, line):
                    return found
            time.sleep(0.02)  # polling collected output, with a deadline
        pytest.fail(f"no line matching {pattern!r}:\n{''.join(lines[-20:])}")

    try:
        reader.start()
        port = int(wait_for(r"^listening on \S+:(\d+)$").group(1))
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small buffers: it fills up sooner
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.setblocking(False)
        sent = bytearray()
        deadline = time.monotonic() + 30
        scanned = 0  # lines already searched: each round looks only at the new ones
        while True:  # send, never read, until the server says it waits to write
            new = lines[scanned:]
            scanned += len(new)
            if any(re.search(waits, line) for line in new):
                break
            assert time.monotonic() < deadline, "the server never waited to write"
            try:
                sent += b"z" * slow.send(b"z" * 65536)
            except BlockingIOError:
                select.select([], [slow], [], 0.05)
        fd = wait_for(waits).group(1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as other:
            assert ask(other, b"and me?") == PREFIX + b"and me?", "the others are served meanwhile"
        slow.setblocking(True)
        slow.settimeout(20)
        echoed = 0
        while echoed < len(sent):  # now read everything: every byte comes back
            chunk = slow.recv(1 << 20)
            assert chunk, "the server closed the connection of a client that was only slow"
            echoed += chunk.count(b"z")
        assert echoed == len(sent)
        print(f"{len(sent)} bytes sent before the server waited")
        wait_for(writable.format(fd=fd))
        wait_for(resumes.format(fd=fd))
        slow.close()
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(10)
        reader.join(5)
        process.stdout.close()
        process.stderr.close()


def test_ctrl_c_in_a_terminal_puts_the_summary_on_its_own_line():
    """Issue 10 defect 13: the terminal echoes ^C, and the summary used to glue onto it (`^Csummary`)."""
    import pty

    pid, master = pty.fork()
    if pid == 0:  # the child: the server, on a real terminal
        default_sigint()
        os.chdir(REPO)
        os.execve(lesson_command("poll-server", "--port", "0")[0], lesson_command("poll-server", "--port", "0"),
                  child_env())
    output = b""
    try:
        deadline = time.monotonic() + 30
        while b"listening on" not in output:
            assert time.monotonic() < deadline, output
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                output += os.read(master, 4096)
        os.write(master, b"\x03")  # Ctrl-C typed at the terminal: echoed as ^C, SIGINT sent
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            try:
                chunk = os.read(master, 4096) if ready else b""
            except OSError:  # EIO: the child has gone and the terminal closed
                chunk = b""
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    text = output.decode(errors="replace").replace("\r", "")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert re.search(r"^summary  stopped \(Ctrl-C\)", text, re.MULTILINE), text
    assert "^Csummary" not in text
