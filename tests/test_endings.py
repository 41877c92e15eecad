"""How commands end, the same everywhere (docs/style.md): error sentences, usage mistakes, Ctrl-C.

Real processes: `python -m lessons ...`, real signals, and a real pseudo-terminal where
the terminal's own behaviour (the echoed `^C`) is the point.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lessonrun import child_env, default_sigint, lesson_command
from ptyrun import finish, read_until, run_in_a_terminal

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 20.0
BOX_DRAWING = re.compile("[\u2500-\u257f]")


def learn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lessons", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=DEADLINE)


# ---------------------------------------------------------------- one plain error style

@pytest.mark.parametrize(("args", "sentence"), [
    (("run", "struct-send", "--demoo"),
     "error: no such option: --demoo (possible options: --demo, --mode); see `learn run struct-send --help`."),
    (("run", "pol-server"), "error: there is no lesson called 'pol-server' (did you mean poll-server, "
                            "epoll-server or select-server?)."),
    (("show", "framing"), "error: there is no lesson or page called 'framing'; `learn list` shows them all."),
    (("show",), "error: missing argument 'LESSON'; see `learn show --help`."),
    (("lisst",), "error: no such command 'lisst' (did you mean 'list'?); see `learn --help`."),
])
def test_usage_mistakes_are_one_plain_sentence_and_exit_2(args, sentence):
    done = learn(*args)
    assert done.returncode == 2
    assert done.stderr.strip() == sentence
    assert not BOX_DRAWING.search(done.stderr), "usage errors are plain sentences, not rich boxes"
    assert done.stdout == ""


@pytest.mark.parametrize("args", [("run", "struct-send", "--port", "x"), ("run", "struct-recv", "--framing", "x")])
def test_bad_values_are_one_plain_sentence(args):
    done = learn(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid value for '--")
    assert lines[0].endswith(f"; see `learn run {args[1]} --help`.")


@pytest.mark.parametrize("lesson", ["struct-send", "struct-recv", "unix-recv", "tcp-client", "poll-server"])
def test_help_shows_flags_as_flags(lesson):
    """`--demo` takes no value, so the help must not print `<bool>` after it."""
    done = subprocess.run(lesson_command(lesson, "--help"), cwd=REPO, env=dict(child_env(), COLUMNS="120"),
                          capture_output=True, text=True, encoding="utf-8", timeout=DEADLINE)
    assert done.returncode == 0
    assert "--help" in done.stdout
    assert "<bool>" not in done.stdout, done.stdout


# ---------------------------------------------------------------- Ctrl-C

def wait_for_line(process: subprocess.Popen) -> str:
    line = process.stdout.readline()
    assert line, "the command printed nothing"
    return line


def test_ctrl_c_on_a_demo_is_one_line_and_exit_130():
    process = subprocess.Popen(lesson_command("struct-recv", "--demo"), cwd=REPO, env=child_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, encoding="utf-8", preexec_fn=default_sigint)
    with process:
        wait_for_line(process)  # it runs for about a second; this is its first tenth
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 130
    assert err == "stopped `learn run struct-recv` with Ctrl-C before it finished.\n"
    assert "Traceback" not in out


@pytest.fixture
def silent_server():
    """Accepts a connection (in the kernel) and never answers: a client waits on it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(DEADLINE)
        yield server


def test_ctrl_c_typed_in_a_terminal_starts_a_fresh_line(silent_server):
    """The terminal echoes `^C` where the cursor is; the notice must not be glued to it."""
    port = silent_server.getsockname()[1]
    pid, master = run_in_a_terminal(["-m", "lessons", "run", "tcp-client", "--port", str(port),
                                     "--send", "hello", "--timeout", "15"])
    conn, _ = silent_server.accept()
    with conn:
        conn.settimeout(DEADLINE)
        assert conn.recv(5) == b"hello"  # the client is now waiting for the answer
        os.write(master, b"\x03")  # Ctrl-C, typed: the terminal echoes ^C and sends SIGINT
        output, code = finish(pid, master)
    text = output.decode(errors="replace")
    assert code == 130
    assert "^C\r\nstopped `learn run tcp-client` with Ctrl-C before it finished." in text, text
    assert "Traceback" not in text


def test_ctrl_c_on_the_struct_receiver_stops_it_on_a_fresh_line_with_exit_0():
    """A receiver runs until stopped: Ctrl-C is the way to stop it, so it is not a failure."""
    pid, master = run_in_a_terminal(["-m", "lessons", "run", "struct-recv", "--port", "0"])
    read_until(master, b"per record", time.monotonic() + DEADLINE)  # its second line
    os.write(master, b"\x03")
    output, code = finish(pid, master)
    text = output.decode(errors="replace")
    assert code == 0, text
    assert "^C\r\n" in text and re.search(r"close\s+stopped\r\n$", text), text


# ---------------------------------------------------------------- the rules, written down once

def exit_code_table(path: Path) -> set[int]:
    text = path.read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", section, re.MULTILINE)}


def test_the_exit_codes_are_written_down_where_the_code_takes_them_from():
    from lessons.toolkit import exits

    codes = {exits.DONE, exits.FAILED, exits.USAGE, exits.INTERRUPTED}
    assert exit_code_table(REPO / "README.md") == codes
    assert exit_code_table(REPO / "docs" / "style.md") == codes
