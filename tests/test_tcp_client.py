"""`learn run tcp-client` against a real echo server: scripted, interactive, and its errors."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from lessonrun import child_env, default_sigint, lesson_command

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0




def run_client(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(lesson_command("tcp-client", *args), cwd=REPO, env=child_env(), input=stdin,
                          capture_output=True, text=True, encoding="utf-8", timeout=DEADLINE)


@pytest.fixture
def server_port():
    """A selectors-server on a free port; its output is not needed, only its port."""
    process = subprocess.Popen(lesson_command("selectors-server", "--port", "0"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, encoding="utf-8", preexec_fn=default_sigint)
    try:
        line = process.stdout.readline()  # its first line, printed once it listens (the test's timeout bounds it)
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, f"unexpected first line {line!r}"
        yield int(match.group(1))
        process.send_signal(signal.SIGINT)
        assert process.wait(DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(DEADLINE)
        process.stdout.close()


def test_scripted_mode_sends_n_times_and_waits_for_each_answer(server_port):
    result = run_client("--port", str(server_port), "--send", "hello 你好", "--count", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"answer {n}/3: 收到了: hello 你好" for n in (1, 2, 3)]
    assert re.fullmatch(r"3 answers in [\d.]+ ms \([\d.]+ ms per round trip\)", lines[3])


def test_one_answer_is_one_answer(server_port):
    result = run_client("--port", str(server_port), "--send", "hi")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"1 answer in [\d.]+ ms \([\d.]+ ms per round trip\)", result.stdout.splitlines()[1])


def test_interactive_mode_answers_each_line_and_quits_at_end_of_input(server_port):
    result = run_client("--port", str(server_port), stdin="hello\n\x1b[31mred\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["收到了: hello", "收到了: \\x1b[31mred"]
    assert "connected to 127.0.0.1:" in result.stderr


@pytest.mark.timeout(30)
def test_connection_refused_is_one_sentence():
    with socket.socket() as bound_not_listening:  # the port is ours, and nobody listens on it
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        result = run_client("--port", str(port), "--send", "x")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: nothing is listening on 127.0.0.1:{port}; "
                                     f"start a server first, e.g. `learn run poll-server`.")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("args", "sentence"), [
    (("--host", "0.0.0.0", "--send", "x"), "error: 0.0.0.0 means 'every address' to a server; a client must "
                                           "name one real address, such as 127.0.0.1."),
    (("--host", "::", "--send", "x"), "error: :: means 'every address' to a server"),
    (("--host", "0:0::0", "--send", "x"), "error: 0:0::0 means 'every address' to a server"),
    (("--count", "2"), "--count needs --send TEXT."),
])
def test_bad_options_are_one_sentence(args, sentence):
    result = run_client(*args)
    assert result.returncode == 2
    assert sentence in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_is_reported_after_the_timeout():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (in the kernel), never answers
        port = silent.getsockname()[1]
        result = run_client("--port", str(port), "--send", "hello", "--timeout", "0.5")
    assert result.returncode == 1
    assert "no complete answer within 0.5 s, nothing came back." in result.stderr
