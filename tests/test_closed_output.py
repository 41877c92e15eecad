"""A closed stdout (`learn ... | head -1`) ends every command quietly and at once, exit 0.

Each command writes into a real pipe, the test reads the first line and closes the pipe,
as `head -1` does. The pipe is shrunk to one page (4 KiB) and every command here writes
more than that, so the command is certain to meet EPIPE while it still has output to
write; then it must stop at once (the timeout), with exit 0 and nothing on stderr.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from lessonrun import child_env, default_sigint, lesson_command

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0
PIPE_SIZE = 4096  # the smallest pipe Linux allows: one page
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def first_line_then_close(command: list[str], columns: int = 80, until: bytes = b"") -> tuple[bytes, int, str]:
    """Run `command` with stdout into a one-page pipe; read one line (the first with `until`), close, wait."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
    env = dict(child_env(), COLUMNS=str(columns))
    env.pop("PAGER", None)
    with subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                          stderr=subprocess.PIPE, preexec_fn=default_sigint) as process:
        os.close(write_end)
        with os.fdopen(read_end, "rb", buffering=0) as reader:
            line = b""
            while not (line.endswith(b"\n") and until in line):
                byte = reader.read(1)
                if not byte:
                    break
                line += byte
        # the read end is closed here: the command's next write meets EPIPE
        try:
            code = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"{command[3:]} did not stop within {DEADLINE} s after its output was closed")
        stderr = process.stderr.read().decode(errors="replace")
    return line, code, stderr


def learn(*args: str) -> list[str]:
    return [sys.executable, "-m", "lessons", *args]


COMMANDS = {
    "list": (learn("list"), 80),
    "show": (learn("show", "poll-server"), 80),
    "show --source": (learn("show", "poll-server", "--source"), 80),
    "show a page": (learn("show", "capstone"), 80),
    "help": (learn("run", "struct-send", "--help"), 400),
    # the groups get it from the root command like every other command
    "exercise --help": (learn("exercise", "--help"), 400),
    "bench --help": (learn("bench", "--help"), 400),
    "chat join --help": (learn("chat", "join", "--help"), 400),
    # the demos draw their section rules as wide as the terminal: 400 columns of them
    # make sure each writes well over one pipe's worth
    "struct-recv --demo": (lesson_command("struct-recv", "--demo"), 400),
    "struct-send --demo": (lesson_command("struct-send", "--demo"), 400),
    "unix-recv --demo": (lesson_command("unix-recv", "--demo"), 400),
    "unix-send --demo": (lesson_command("unix-send", "--demo"), 400),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_closed_stdout_ends_the_command_quietly(name: str) -> None:
    command, columns = COMMANDS[name]
    line, code, stderr = first_line_then_close(command, columns)
    assert line.endswith(b"\n"), f"{name} printed no first line"
    assert stderr == "", f"{name} wrote to stderr after its output was closed:\n{stderr}"
    assert code == 0


@pytest.fixture
def echo_server_port():
    """A selectors-server on a free port, for the tcp-client."""
    process = subprocess.Popen(lesson_command("selectors-server", "--port", "0"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, encoding="utf-8", preexec_fn=default_sigint)
    try:
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", process.stdout.readline())
        assert match, "the echo server did not start"
        yield int(match.group(1))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def test_a_closed_stdout_ends_the_tcp_client_quietly(echo_server_port: int) -> None:
    # 1000 answers of about 40 bytes: ten pipes' worth, so EPIPE comes long before the end
    command = lesson_command("tcp-client", "--port", str(echo_server_port), "--send", "hello", "--count", "1000")
    line, code, stderr = first_line_then_close(command)
    assert line.startswith(b"answer 1/1000: ")
    assert stderr == ""
    assert code == 0


@pytest.mark.parametrize("lesson", ["struct-recv", "unix-recv"])
def test_a_waiting_receiver_stops_when_its_output_is_closed(lesson: str, tmp_path: Path) -> None:
    """`learn run struct-recv | head -1`: the receiver waits in accept() and writes nothing more.

    It still stops at once when head exits (no write ever meets EPIPE, so it has to
    notice the reader leaving), cleans up as Ctrl-C would, and exits 0.
    """
    where = tmp_path / "lesson.sock"
    args, last_line = (["--port", "0"], b"per record") if lesson == "struct-recv" else (["--path", str(where)],
                                                                                       b"listening on")
    output, code, stderr = first_line_then_close(lesson_command(lesson, *args), until=last_line)
    assert output.endswith(b"\n") and last_line in output  # all it says before it waits for a sender
    assert stderr == ""
    assert code == 0
    assert not where.exists(), "the socket file was left behind"


def test_an_interactive_tcp_client_stops_when_its_output_is_closed(echo_server_port: int) -> None:
    """`learn run tcp-client | head -1`: after the first answer it waits for your next line;
    it must not wait for that line to find out that nobody reads its answers any more."""
    read_end, write_end = os.pipe()
    with subprocess.Popen(lesson_command("tcp-client", "--port", str(echo_server_port)), cwd=REPO,
                          env=child_env(), stdin=subprocess.PIPE, stdout=write_end,
                          stderr=subprocess.PIPE, preexec_fn=default_sigint) as process:
        os.close(write_end)
        process.stdin.write(b"hello\n")
        process.stdin.flush()
        with os.fdopen(read_end, "rb", buffering=0) as reader:
            answer = b""
            while not answer.endswith(b"\n"):
                answer += reader.read(1)
        assert answer == "收到了: hello\n".encode()
        try:  # stdin stays open: the client is waiting for a line that never comes
            code = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the client kept waiting for input after its output was closed")
        finally:
            process.stdin.close()
        said = process.stderr.read().decode().splitlines()
        assert len(said) == 1 and said[0].startswith("connected to ")  # and nothing after that
    assert code == 0
