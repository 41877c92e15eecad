"""The `learn` command itself: catalog walk, list, show, run dispatch, exit codes."""

from __future__ import annotations

import importlib
import inspect
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lessons import __version__, catalog
from lessons.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), prog_name="learn")


@pytest.mark.parametrize("lesson", catalog.LESSONS, ids=lambda lesson: lesson.id)
def test_every_lesson_has_a_page_and_an_entry_point(lesson: catalog.Lesson) -> None:
    page = catalog.doc_path(lesson.id)
    assert page.is_file(), f"{lesson.id} has no page at {page}"
    text = page.read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"# {lesson.title}", f"{page} should open with the lesson's title"
    for heading in missing_sections(text):
        pytest.fail(f"{page} has no section for {heading}")
    main = importlib.import_module(f"lessons.{lesson.module}").main
    required = [name for name, parameter in inspect.signature(main).parameters.items()
                if parameter.default is inspect.Parameter.empty]
    assert required == [], f"`learn run {lesson.id}` must work without options; {required} have no default"
    assert lesson.source_path().is_file()


# What every lesson page teaches, each under its own `## ` heading (the notes' part has two wordings).
SECTIONS = {
    "the idea (the concept)": ("## The idea",),
    "how to run it": ("## Run it",),
    "what you will see": ("## What you will see",),
    "the notes' version, its traps and what we changed": ("## The notes' code and what we changed",
                                                          "## The notes' version and the traps in it"),
}


def missing_sections(page: str) -> list[str]:
    headings = {line.strip() for line in page.splitlines() if line.startswith("## ")}
    return [what for what, wordings in SECTIONS.items() if not headings & set(wordings)]


def test_lesson_ids_are_unique_and_modules_distinct() -> None:
    ids = [lesson.id for lesson in catalog.LESSONS]
    assert len(ids) == len(set(ids))
    assert len({lesson.module for lesson in catalog.LESSONS}) == len(ids)


def test_list_shows_every_lesson() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for lesson in catalog.LESSONS:
        assert lesson.id in result.output


@pytest.mark.parametrize("lesson", catalog.LESSONS, ids=lambda lesson: lesson.id)
def test_show_renders_the_page_and_the_source(lesson: catalog.Lesson) -> None:
    page = invoke("show", lesson.id)
    assert page.exit_code == 0, page.output
    shown = " ".join(page.output.split())  # rich wraps long headings: compare word by word
    assert lesson.title in shown, f"the page's title is not shown:\n{page.output[:500]}"
    page_text = catalog.doc_path(lesson.id).read_text(encoding="utf-8")
    for heading in (line.removeprefix("## ").strip() for line in page_text.splitlines() if line.startswith("## ")):
        assert " ".join(heading.split()) in shown, f"the section {heading!r} is not shown"
    source = invoke("show", lesson.id, "--source")
    assert source.exit_code == 0, source.output
    assert "def main" in source.output


@pytest.mark.parametrize("lesson", catalog.LESSONS, ids=lambda lesson: lesson.id)
def test_run_help_shows_the_lessons_own_options(lesson: catalog.Lesson) -> None:
    result = invoke("run", lesson.id, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_unknown_lesson_suggests_the_closest_and_exits_2() -> None:
    result = invoke("run", "pol-server")
    assert result.exit_code == 2
    assert "poll-server" in result.output and "Traceback" not in result.output
    shown = invoke("show", "fork")
    assert shown.exit_code == 2 and "fork-demo" in shown.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.timeout(30)
def test_port_in_use_is_one_sentence_and_exit_2() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lessons", "run", "poll-server", "--port", str(port)],
            capture_output=True, text=True, timeout=25,
        )
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr
    assert "already in use" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.timeout(30)
def test_python_dash_m_lessons_is_the_learn_command() -> None:
    done = subprocess.run([sys.executable, "-m", "lessons", "--help"], capture_output=True, text=True, timeout=25)
    assert done.returncode == 0
    for group in ("list", "show", "run", "chat"):
        assert group in done.stdout
