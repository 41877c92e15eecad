"""`learn show`: never cuts a line. Piped it is plain and whole; on a terminal it is paged and wrapped."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from lessonrun import child_env
from ptyrun import REPO, finish, run_in_a_terminal

from lessons import catalog

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
DEADLINE = 30.0


def piped(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lessons", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=DEADLINE)


@pytest.mark.parametrize("lesson", catalog.LESSONS, ids=lambda lesson: lesson.id)
def test_piped_source_is_every_line_whole(lesson: catalog.Lesson) -> None:
    done = piped("show", lesson.id, "--source")
    assert done.returncode == 0, done.stderr
    source = lesson.source_path().read_text(encoding="utf-8")
    assert done.stdout == f"# {lesson.source_path()}\n{source}"  # `> copy.py`: a comment line, then the file


def terminal_text(output: bytes) -> str:
    return ANSI.sub("", output.decode("utf-8", errors="replace")).replace("\r", "")


def without_gutter(screen: str, last_number: int) -> str:
    """The code column of rich's numbered listing: every row starts with a gutter this wide."""
    gutter = len(str(last_number)) + 2
    rows = screen.splitlines()[1:]  # the first row is the file's path
    return "\n".join(row[gutter:] for row in rows)


@pytest.mark.parametrize("lesson_id", ["poll-server", "fork-demo"])
def test_source_on_a_narrow_terminal_wraps_instead_of_cutting(lesson_id: str) -> None:
    lesson = catalog.find(lesson_id)
    source = lesson.source_path().read_text(encoding="utf-8")
    pid, master = run_in_a_terminal(["-m", "lessons", "show", lesson_id, "--source"], columns=40, PAGER="cat")
    output, code = finish(pid, master)
    assert code == 0
    screen = terminal_text(output)
    assert all(len(row) <= 40 for row in screen.splitlines()), "a row is wider than the terminal"
    shown = without_gutter(screen, len(source.splitlines()))
    # Wrapping moves text to the next row; cutting loses it. Every character must be there, in order.
    assert "".join(shown.split()) == "".join(source.split())


@pytest.mark.parametrize("args", [("show", "poll-server"), ("show", "poll-server", "--source"),
                                  ("show", "capstone")])
def test_a_terminal_gets_the_output_through_the_pager(args: tuple[str, ...]) -> None:
    pid, master = run_in_a_terminal(["-m", "lessons", *args], PAGER="sed 's/^/paged|/'")
    output, code = finish(pid, master)
    assert code == 0
    rows = [row for row in terminal_text(output).splitlines() if row.strip()]
    assert len(rows) > 50
    assert all(row.startswith("paged|") for row in rows), rows[:3]


def test_quitting_the_pager_early_is_a_quiet_exit_0() -> None:
    pid, master = run_in_a_terminal(["-m", "lessons", "show", "fork-demo", "--source"], PAGER="head -1")
    output, code = finish(pid, master)
    text = terminal_text(output)
    assert code == 0
    assert text.strip().endswith("lessons/fork.py"), text  # the first row, then nothing
    assert "Error" not in text and "Traceback" not in text


def test_an_empty_pager_prints_directly_without_cutting() -> None:
    pid, master = run_in_a_terminal(["-m", "lessons", "show", "poll-server"], columns=50, PAGER="")
    output, code = finish(pid, master)
    assert code == 0
    assert all(len(row) <= 50 for row in terminal_text(output).splitlines())
    assert "poll" in terminal_text(output)


def test_a_pager_that_does_not_exist_does_not_swallow_the_page() -> None:
    pid, master = run_in_a_terminal(["-m", "lessons", "show", "poll-server", "--source"],
                                    PAGER="no-such-pager-here")
    output, code = finish(pid, master)
    text = terminal_text(output)
    assert code == 0
    assert "def main" in text and text.count("\n") > 50
