"""Every `learn ...` command a page, the README, a docstring or a message tells a learner to type exists.

A learner copies `learn show framing` from a page and gets "there is no lesson": this
test reads every place that could say such a thing and resolves each command against
the real command tree (typer's groups), each lesson or page against the catalog, and
each exercise against the exercise catalog. It also checks "the X lesson" phrases.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from lessons import catalog
from lessons.cli import app
from lessons.exercises import catalog as exercises

REPO = Path(__file__).resolve().parent.parent

# `learn show poll-server`, "start `learn run struct-recv` first", a line of a code block
# starting with `learn ...` or `$ learn ...`, `.venv/bin/learn run ...`, `python -m lessons ...`
# (words one space apart: a wider gap starts the comment column of a command table)
MENTION = re.compile(r"(?:`|^[ \t]*(?:\$ )?|/bin/)learn ([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)*)"
                     r"|-m lessons ([a-z][a-z0-9-]*(?: [a-z][a-z0-9-]*)*)", re.MULTILINE)
LESSON_PHRASE = re.compile(r"\bthe `?([a-z][a-z0-9-]*)`? lesson\b", re.IGNORECASE)
NOT_A_NAME = {"next", "previous", "same", "first", "last", "whole", "one", "this", "each", "other"}


def places() -> list[Path]:
    """Docs pages, the README, and every Python file a learner runs (docstrings and messages)."""
    found = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    for package in ("lessons", "capstone"):
        found += sorted((REPO / package).rglob("*.py"))
        found += sorted((REPO / package).rglob("*.md"))
    return found


def mentions() -> list[tuple[str, str]]:
    """(where, 'show poll-server') for every command mentioned anywhere."""
    result = []
    for path in places():
        text = path.read_text(encoding="utf-8")
        for match in MENTION.finditer(text):
            words = match.group(1) or match.group(2)
            line = text.count("\n", 0, match.start()) + 1
            result.append((f"{path.relative_to(REPO)}:{line}", words.split()))
    return result


def resolve(words: list[str]) -> str | None:
    """None if `learn WORDS...` names a real command with real arguments, else what is wrong."""
    ctx = typer.Context(typer.main.get_command(app))
    command = ctx.command
    path = ["learn"]
    rest = list(words)
    while rest and hasattr(command, "get_command"):
        name = rest.pop(0)
        sub = command.get_command(ctx, name)
        if sub is None:
            return f"`{' '.join(path)}` has no command {name!r}"
        path.append(name)
        command = sub
    if not rest:
        return None
    return check_argument(path, rest[0])


def check_argument(path: list[str], argument: str) -> str | None:
    if path == ["learn", "show"]:
        if catalog.find(argument) is None and argument not in catalog.EXTRA_PAGES:
            return f"there is no lesson or page {argument!r} to show"
    elif path[:2] == ["learn", "exercise"] and path[2:] and path[2] not in ("init", "list", "watch"):
        if exercises.find(argument) is None:
            return f"there is no exercise {argument!r}"
    return None


ALL_MENTIONS = mentions()


def test_the_docs_mention_commands_at_all():
    """The scan itself works: it finds the README's and the pages' commands."""
    found = {" ".join(words) for _, words in ALL_MENTIONS}
    assert {"list", "show poll-server", "run poll-server", "exercise check poll-echo"} <= found
    assert len(ALL_MENTIONS) > 100


@pytest.mark.parametrize(("where", "words"), ALL_MENTIONS, ids=[f"{w}:{' '.join(c)}" for w, c in ALL_MENTIONS])
def test_every_mentioned_command_exists(where: str, words: list[str]) -> None:
    problem = resolve(words)
    assert problem is None, f"{where}: `learn {' '.join(words)}`: {problem}"


def test_the_checker_catches_what_does_not_exist():
    assert resolve(["show", "framing"]) == "there is no lesson or page 'framing' to show"
    assert resolve(["run", "framing"]) == "`learn run` has no command 'framing'"
    assert resolve(["exercise", "check", "pol-echo"]) == "there is no exercise 'pol-echo'"
    assert resolve(["bench", "threads"]) == "`learn bench` has no command 'threads'"
    assert resolve(["chat", "join"]) is None and resolve(["show", "capstone"]) is None


def lesson_phrases() -> list[tuple[str, str]]:
    result = []
    for path in places():
        text = path.read_text(encoding="utf-8")
        for match in LESSON_PHRASE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            result.append((f"{path.relative_to(REPO)}:{line}", match.group(1).lower()))
    return result


def names_a_lesson(word: str) -> bool:
    """`poll-server`, or a short name for lessons that exist: `poll` (poll-server), `struct`."""
    ids = [lesson.id for lesson in catalog.LESSONS]
    return word in ids or any(lesson_id.startswith(word + "-") for lesson_id in ids)


@pytest.mark.parametrize(("where", "word"), lesson_phrases())
def test_every_lesson_a_page_names_exists(where: str, word: str) -> None:
    assert word in NOT_A_NAME or names_a_lesson(word), f"{where}: 'the {word} lesson' does not exist"
