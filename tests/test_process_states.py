"""process-states run for real: the states appear, nice shares the CPU, nothing is left behind."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from lessonrun import default_sigint, kill_session

from lessons.toolkit import procfs
from lessons.toolkit.children import Children, drop_privileges
from lessons.toolkit.narrate import Narrator
from lessons.process_states import nice_limit_text, show_privileges

pytestmark = pytest.mark.skipif(not procfs.PROC.is_dir(), reason="needs Linux /proc")

LESSON = [sys.executable, "-m", "lessons", "run", "process-states"]


def start(*options: str) -> subprocess.Popen[str]:
    """The lesson in a session of its own: its children stay in that session even if orphaned."""
    return subprocess.Popen([*LESSON, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=default_sigint)




def read_until(process: subprocess.Popen[str], text: str, timeout: float) -> str:
    """Read the lesson's stdout until `text` appears; fail after `timeout` seconds.

    Reads the raw descriptor: a buffered readline() could pull the awaited line into
    Python's buffer, where select() cannot see it.
    """
    fd = process.stdout.fileno()
    seen, deadline = b"", time.monotonic() + timeout
    while text.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{text!r} did not appear in {timeout} s; got:\n{seen.decode()}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, f"the lesson ended before printing {text!r}:\n{seen.decode()}"
            seen += chunk
    return seen.decode()


def assert_nothing_left(lesson_pid: int, our_children_before: set[int]) -> None:
    """No process of the lesson's session, none whose parent is the lesson, no new child of ours."""
    assert procfs.in_session(lesson_pid) == []
    assert [pid for pid in procfs.all_pids() if procfs.ppid(pid) == lesson_pid] == []
    assert set(procfs.children(os.getpid())) <= our_children_before


def test_quick_run_shows_every_state_reaps_them_and_shares_the_cpu_by_nice() -> None:
    before = set(procfs.children(os.getpid()))
    process = start("--quick")
    try:
        out, err = process.communicate(timeout=50)
    finally:
        kill_session(process)
    assert process.returncode == 0, err
    assert "Traceback" not in out + err
    for letter, why in (("R", "a busy loop"), ("S", "time.sleep()"), ("T", "SIGSTOP"), ("Z", "waitpid")):
        assert re.search(rf"learn-\w+ \(pid \d+\) is {letter}: .*{re.escape(why)}", out), letter
    assert re.search(r"learn-stopped \(pid \d+\) is S: .*SIGCONT", out)
    assert len(re.findall(r"waitpid\(\d+\) -> killed by SIGKILL; /proc/\d+ is gone", out)) == 3
    assert re.search(r"waitpid\(\d+\) -> exit status 3; /proc/\d+ is gone", out)
    shares = {int(nice): float(share) for nice, share in re.findall(r"nice +(\d+): [\d.]+ s of CPU = ([\d.]+)%", out)}
    assert set(shares) == {0, 10}
    assert shares[0] > 65.0, out  # CFS weights 1024 vs 110 predict 90.3%
    assert "no child process left" in out
    assert_nothing_left(process.pid, before)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_kills_and_reaps_all_its_children(signal_number: int) -> None:
    before = set(procfs.children(os.getpid()))
    process = start("--watch", "120")
    try:
        seen = read_until(process, "learn-zombie", timeout=40)  # four children, watched for 120 s
        os.kill(process.pid, signal_number)
        out, err = process.communicate(timeout=30)
    finally:
        kill_session(process)
    assert process.returncode == 128 + signal_number
    assert "Traceback" not in out + err
    assert "2. Continue, kill, reap" not in seen + out  # interrupted before the lesson reaped them
    summaries = [line for line in (seen + out).splitlines() if line.lstrip().startswith("summary")]
    assert len(summaries) == 1, summaries  # one calm closing line
    assert "interrupted" in summaries[0] and "no child process left" in summaries[0]
    pids = {int(pid) for pid in re.findall(r"\(pid (\d+)\)", seen)}
    assert len(pids) == 4
    assert [pid for pid in pids if procfs.state(pid) is not None] == []
    assert_nothing_left(process.pid, before)


def test_children_die_with_a_lesson_killed_by_sigkill() -> None:
    """SIGKILL runs no clean-up code; PR_SET_PDEATHSIG still ends every live child."""
    process = start("--watch", "120")
    try:
        read_until(process, "learn-zombie", timeout=40)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while [info for info in procfs.in_session(process.pid) if info.state != "Z"]:
            assert time.monotonic() < deadline, procfs.in_session(process.pid)
            time.sleep(0.02)
    finally:
        kill_session(process)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("option", [["--seconds", "0"], ["--nice", "25"], ["--nice", "x"]])
def test_bad_options_get_one_sentence_and_exit_2(option: list[str]) -> None:
    result = subprocess.run([*LESSON, *option], check=False, capture_output=True, text=True, timeout=25)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid value" in result.stderr.lower()


def privileges_report(as_nobody: bool = False) -> str:
    """What the lesson's part 4 prints, captured as text; as uid 65534 if `as_nobody`.

    Everything is imported before dropping root: uid 65534 cannot read root's Python here.
    """
    text = io.StringIO()
    say = Narrator(stream=text)
    say("warm-up", "imports rich's modules now")
    nice_limit_text()
    text.seek(0)
    text.truncate()
    if as_nobody:
        drop_privileges()
    with Children() as children:
        show_privileges(say, children)
    return text.getvalue()


def privileges_report_as_nobody() -> str:
    return privileges_report(as_nobody=True)


@pytest.mark.timeout(30)
def test_an_ordinary_user_cannot_lower_nice_even_back_to_where_it_was() -> None:
    with Children() as children:
        report = children.ask(privileges_report_as_nobody)  # root or not, this child is not root
    assert f"we run as uid {os.geteuid() if os.geteuid() else 65534}, an ordinary user" in report
    assert re.search(r"but back to -?\d+ raised PermissionError", report)
    assert "os.setpriority(..., -5) raised PermissionError" in report


@pytest.mark.timeout(30)
@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch needs root")
def test_as_root_the_lesson_shows_both_sides() -> None:
    report = privileges_report()
    assert "we run as root" in report
    assert "uid 65534: nice" in report
    assert "os.setpriority(..., -5) raised PermissionError" in report
    root_line = next(line for line in report.splitlines() if "os.setpriority(..., -5)" in line)  # root's child first
    if has_cap_sys_nice():
        assert "os.setpriority(..., -5) worked: nice is now -5" in root_line
    else:
        assert "os.setpriority(..., -5) raised PermissionError" in root_line


def has_cap_sys_nice() -> bool:
    status = Path("/proc/self/status").read_text()
    effective = int(re.search(r"CapEff:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    return bool(effective & (1 << 23))  # CAP_SYS_NICE is capability 23


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def take_the_terminal() -> None:
    """In the child, before exec: the new terminal becomes its controlling terminal, Ctrl-C works."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    default_sigint()


class Terminal:
    """The lesson on a pseudo-terminal `columns` wide, as a learner sees it."""

    def __init__(self, columns: int, *options: str) -> None:
        self.controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        modes = termios.tcgetattr(terminal)
        modes[3] |= termios.ECHO | termios.ECHOCTL | termios.ISIG  # as a shell leaves it: ^C is echoed
        termios.tcsetattr(terminal, termios.TCSANOW, modes)
        env = {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "TERM", "COLUMNS")}
        self.process = subprocess.Popen([*LESSON, *options], stdin=terminal, stdout=terminal, stderr=terminal,
                                        start_new_session=True, env={**env, "TERM": "xterm"},
                                        preexec_fn=take_the_terminal)
        os.close(terminal)
        self.seen = b""

    def read_until(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in ANSI.sub("", self.seen.decode(errors="replace")).encode():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} did not appear; got:\n{self.text()}"
            if select.select([self.controller], [], [], remaining)[0]:
                try:
                    chunk = os.read(self.controller, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                assert chunk, f"the lesson ended before printing {text!r}:\n{self.text()}"
                self.seen += chunk

    def finish(self, timeout: float = 40) -> int:
        try:
            self.read_until("\0never", timeout)  # until the terminal closes
        except AssertionError as err:
            if "ended before" not in str(err):
                raise
        code = self.process.wait(timeout=timeout)
        os.close(self.controller)
        return code

    def text(self) -> str:
        """What the screen shows, line by line: colours and cursor moves removed."""
        return ANSI.sub("", self.seen.decode(errors="replace")).replace("\r\n", "\n").replace("\r", "")


def test_ctrl_c_on_a_terminal_gives_one_line_of_its_own_and_exit_130() -> None:
    before = set(procfs.children(os.getpid()))
    screen = Terminal(100, "--watch", "0", "--seconds", "60")
    try:
        screen.read_until("measuring utime+stime", timeout=40)  # part 3: no live view redraws the screen
        os.write(screen.controller, b"\x03")  # Ctrl-C typed: the terminal echoes ^C and sends SIGINT
        code = screen.finish()
    finally:
        kill_session(screen.process)
    assert code == 130
    text = screen.text()
    assert "Traceback" not in text
    closing = [line for line in text.splitlines() if "interrupted" in line]
    assert "^C" in text  # the terminal echoed it...
    assert len(closing) == 1 and closing[0].lstrip().startswith("summary"), text  # ...on a line of its own
    assert_nothing_left(screen.process.pid, before)


def test_on_a_narrow_terminal_lines_wrap_between_words_and_the_table_keeps_whole_names() -> None:
    columns = 70
    screen = Terminal(columns, "--quick")
    try:
        code = screen.finish()
    finally:
        kill_session(screen.process)
    assert code == 0, screen.text()
    lines = screen.text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns, [line for line in lines if len(line) > columns]
    assert any(line.startswith(" " * 9) and line.strip() for line in lines)  # continued under the text
    for name in ("learn-busy", "learn-sleeper", "learn-stopped", "learn-zombie"):
        assert re.search(rf"│ {name} +│", screen.text()), name  # the table row holds the whole name
    assert re.search(r"learn-low \(pid \d+\) is SN\+:", screen.text())  # in the terminal's foreground group
    words = set(re.findall(r"[a-z]{4,}", " ".join(lines)))
    assert "sleepi" not in words and "runnin" not in words


def quick_run_output() -> str:
    result = subprocess.run([*LESSON, "--quick"], check=False, capture_output=True, text=True, timeout=50,
                            start_new_session=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def quick_output() -> str:
    return quick_run_output()


def test_the_stat_suffixes_appear_on_children_made_for_them_and_ps_agrees(quick_output: str) -> None:
    expected = {"learn-low": "SN", "learn-threads": "Sl", "learn-leader": "Ss", "learn-term": "Ss+"}
    if os.geteuid() == 0:
        expected["learn-high"] = "S<"
    for name, stat in expected.items():
        line = re.search(rf"{name} \(pid \d+\) is (\S+): .*; (ps agrees|ps says \S+)", quick_output)
        assert line, (name, quick_output)
        assert line.group(1) == stat, line.group(0)
        if shutil.which("ps"):
            assert line.group(2) == "ps agrees", line.group(0)


def test_the_five_state_diagram_is_drawn_with_linuxs_letters(quick_output: str) -> None:
    diagram = quick_output[quick_output.index("7. The five-state model"):]
    for box in ("│ new │", "│ ready │", "│ running │", "│terminated│", "│ waiting │"):
        assert box in diagram, box
    for letter in "RSDZT":
        assert re.search(rf"letter  {letter}  \w", diagram), letter
    assert max(len(line) for line in diagram.splitlines()[1:14]) <= 72  # fits a terminal


@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch needs root")
def test_as_root_nice_takes_both_spellings_of_the_notes(quick_output: str) -> None:
    assert "$ nice -n 9 nice  ->  9" in quick_output
    assert "$ nice -9 nice  ->  9" in quick_output  # the notes' nice -9: option 9, not minus nine
    if has_cap_sys_nice():
        assert "$ nice -n -9 nice  ->  -9" in quick_output
        assert "$ nice --9 nice  ->  -9" in quick_output  # the notes' nice --9


@pytest.mark.timeout(30)
@pytest.mark.skipif(shutil.which("nice") is None, reason="needs the nice command")
def test_an_ordinary_user_is_refused_below_0_by_nice_and_both_system_calls() -> None:
    from lessons.process_states import nice_as_nobody

    with Children() as children:
        report = children.ask(nice_as_nobody)  # drops to uid 65534 when we are root
    assert not report.startswith("uid 0:")
    assert "$ nice -n 9 nice  ->  9" in report  # going up: allowed
    assert re.search(r"\$ nice -n -9 nice  ->  0 .*cannot set niceness", report)  # warned, ran anyway
    assert "os.nice(-9) raised PermissionError [EPERM]" in report
    assert "os.setpriority(os.PRIO_PROCESS, 0, -9) raised PermissionError [EACCES]" in report
