"""The one ordered list of exercises; every other place derives from it.

An exercise is declared once here. Its files are found by convention in the folder
`<home>/<module>/`: `stub.py`, `solution.py`, `check.py`, `hints.md`, and for each other
language its twins `stub.zh.py` and `solution.zh.py` (the same code, comments, docstrings
and TODOs in Chinese) and `hints.zh.md` (the same tiers and code blocks). The home is
`lessons/exercises/`, or `capstone/exercises/` for an exercise that stands on the capstone's
code (named as a string and found with importlib, so this package never imports the capstone).
In the learner's workspace it is the single file `<module>.py`.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lessons.toolkit.i18n import LANGUAGES, N_

HERE = Path(__file__).resolve().parent
HINT_TIERS = (N_("nudge"), N_("approach"), N_("nearly the code"))


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    lesson: str  # the lesson it practises (an id in lessons/catalog.py), or "capstone"; declared only here
    goal: str  # one sentence: what the learner's code must do
    time_limit: float = 90.0  # seconds for the whole check, then everything is killed
    home: str = "lessons.exercises"  # the package whose folder holds this exercise's files

    @property
    def module(self) -> str:
        return self.id.replace("-", "_")

    @property
    def folder(self) -> Path:
        if self.home == "lessons.exercises":
            return HERE / self.module
        spec = importlib.util.find_spec(self.home)
        assert spec is not None and spec.submodule_search_locations, f"{self.home} is not a package"
        return Path(spec.submodule_search_locations[0]) / self.module

    @property
    def stub(self) -> Path:
        return self.stub_in("en")

    def stub_in(self, language: str) -> Path:
        return self.folder / in_language("stub.py", language)

    def stubs(self) -> list[Path]:
        """The stub in every language: a learner's file equal to any of them is untouched."""
        return [self.stub_in(language) for language in LANGUAGES]

    @property
    def solution(self) -> Path:
        return self.solution_in("en")

    def solution_in(self, language: str) -> Path:
        """In the words of the learner's stub, so that the diff from their file shows only code."""
        return self.folder / in_language("solution.py", language)

    @property
    def check(self) -> Path:
        return self.folder / "check.py"

    @property
    def hints_file(self) -> Path:
        return self.hints_file_in("en")

    def hints_file_in(self, language: str) -> Path:
        return self.folder / in_language("hints.md", language)

    @property
    def file_name(self) -> str:
        """The learner's file in the workspace."""
        return f"{self.module}.py"

    def hints(self, language: str = "en") -> list[str]:
        return parse_hints(self.hints_file_in(language).read_text(encoding="utf-8"))


def in_language(name: str, language: str) -> str:
    """'stub.py' -> 'stub.zh.py': English is the file itself, other languages sit beside it."""
    if language == "en":
        return name
    stem, _, suffix = name.rpartition(".")
    return f"{stem}.{language}.{suffix}"


EXERCISES: tuple[Exercise, ...] = (
    Exercise("poll-echo", N_("A poll() echo server that survives disconnects"), "poll-server",
             N_("serve(listener, stop): echo every client's bytes back with poll(), and keep "
                "serving when one of them leaves (the notes' KeyError).")),
    Exercise("epoll-edge", N_("An edge-triggered epoll reader"), "epoll-server",
             N_("read_available(sock) drains a non-blocking socket until EAGAIN; serve(listener, "
                "stop) echoes with EPOLLET.")),
    Exercise("frames", N_("recv_exact and a length-prefixed frame decoder"), "struct-recv",
             N_("recv_exact(sock, n) reads exactly n bytes; FrameDecoder.feed(data) returns every "
                "whole frame, however the bytes were split or merged.")),
    Exercise("unix-server", N_("A Unix socket server that cleans up after itself"), "unix-recv",
             N_("serve(path, stop): replace a stale socket file, refuse a live one, mode 0600, "
                "echo, and remove the file when stopped.")),
    Exercise("proc-reader", N_("Read a process's state from /proc"), "process-states",
             N_("read_process(pid) returns state, ppid and nice from /proc/<pid>/stat, or None "
                "once the process is gone.")),
    Exercise("fork-workers", N_("Run N workers with fork and collect them with waitpid"), "fork-demo",
             N_("run_workers(jobs) forks one child per job, returns their exit codes in job order, "
                "and leaves no zombie.")),
    Exercise("chat-room", N_("The chat room's state machine (sans-IO)"), "capstone",
             N_("Room: names, join and leave notices, broadcast and errors, frames in and effects "
                "out, by the rules of PROTOCOL.md."),
             home="capstone.exercises"),
)


def find(exercise_id: str) -> Exercise | None:
    """By id (`poll-echo`), module (`poll_echo`) or workspace file name (`poll_echo.py`)."""
    wanted = exercise_id.removesuffix(".py").replace("_", "-")
    return next((item for item in EXERCISES if item.id == wanted), None)


def closest_ids(wrong: str) -> list[str]:
    return difflib.get_close_matches(wrong, [item.id for item in EXERCISES], n=3, cutoff=0.5)


def for_lesson(lesson_id: str) -> Exercise | None:
    """The exercise that practises `lesson_id`: lessons/catalog.py derives Lesson.exercise from here."""
    return next((item for item in EXERCISES if item.lesson == lesson_id), None)


def parse_hints(text: str) -> list[str]:
    """hints.md holds one `## ` section per tier, in order: nudge, approach, nearly the code.

    A line starting with `## ` inside a ``` code block is code, not a new tier.
    """
    sections: list[list[str]] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if line.startswith("## ") and not in_code:
            sections.append([])
        elif sections:
            sections[-1].append(line)
    return ["\n".join(lines).strip() for lines in sections]
