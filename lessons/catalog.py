"""The one list of lessons: the CLI, the docs check and the tests all read it.

A lesson is declared once here. Everything else is derived by convention:
its code is `lessons/<module>.py` with a `main` function (its `learn run` options),
its page is `docs/lessons/<id>.md`, and its exercise is the one in
lessons/exercises/catalog.py that names it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from lessons.exercises import catalog as exercises
from lessons.toolkit.i18n import N_

LINUX = "linux"
MACOS = "macos"
WINDOWS = "windows"
POSIX = (LINUX, MACOS)


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    topic: str
    summary: str
    module: str
    platforms: tuple[str, ...] = POSIX

    @property
    def exercise(self) -> str | None:
        """The id of the exercise that practises this lesson, if there is one."""
        practice = exercises.for_lesson(self.id)
        return practice.id if practice else None

    @property
    def doc_name(self) -> str:
        return f"lessons/{self.id}.md"

    def source_path(self) -> Path:
        return Path(__file__).with_name(f"{self.module}.py")


LESSONS: tuple[Lesson, ...] = (
    Lesson("poll-server", N_("A poll() echo server"), N_("I/O multiplexing"),
           N_("One thread serves many clients: register sockets, wait with poll(), handle "
              "POLLIN/POLLHUP/POLLERR."), "poll_server"),
    Lesson("epoll-server", N_("An epoll echo server"), N_("I/O multiplexing"),
           N_("The same server on epoll, level- and edge-triggered (--edge): why ET must drain "
              "until EAGAIN."), "epoll_server", platforms=(LINUX,)),
    Lesson("select-server", N_("A select() echo server"), N_("I/O multiplexing"),
           N_("The oldest multiplexer: three fd lists, and the FD_SETSIZE=1024 wall."),
           "select_server", platforms=(LINUX, MACOS, WINDOWS)),
    Lesson("selectors-server", N_("A portable selectors server"), N_("I/O multiplexing"),
           N_("The standard library picks epoll, kqueue or poll for you."),
           "selectors_server", platforms=(LINUX, MACOS, WINDOWS)),
    Lesson("tcp-client", N_("A line-based TCP client"), N_("I/O multiplexing"),
           N_("Talk to any of the servers by hand, or script it (--send TEXT --count N)."),
           "tcp_client", platforms=(LINUX, MACOS, WINDOWS)),
    Lesson("struct-send", N_("Sending binary records with struct"), N_("Binary data"),
           N_("Pack the notes' i5sf record and send it, merged or split, to struct-recv."),
           "struct_send", platforms=(LINUX, MACOS, WINDOWS)),
    Lesson("struct-recv", N_("Receiving binary records with struct"), N_("Binary data"),
           N_("Alignment padding, NUL padding, float rounding, and why one recv() is not one "
              "record."), "struct_recv", platforms=(LINUX, MACOS, WINDOWS)),
    Lesson("unix-send", N_("Sending over a Unix domain socket"), N_("Local sockets"),
           N_("Connect to a socket file instead of an IP address and port."), "unix_send"),
    Lesson("unix-recv", N_("Receiving on a Unix domain socket"), N_("Local sockets"),
           N_("Bind a socket file safely: private directory, mode 0600, stale files, peer "
              "credentials."), "unix_recv"),
    Lesson("process-states", N_("Process states and priorities"), N_("Processes"),
           N_("Watch children in R, S, T and Z from /proc, a process tree, and nice at work."),
           "process_states", platforms=(LINUX,)),
    Lesson("multitasking", N_("Processes, threads and cores"), N_("Processes"),
           N_("Threads against processes under the GIL, concurrent against parallel, the PCB in "
              "/proc, and what a process owns."), "multitasking", platforms=(LINUX,)),
    Lesson("fork-demo", N_("os.fork() step by step"), N_("Processes"),
           N_("Return values, copied memory, shared files, zombies, and duplicated output."),
           "fork", platforms=POSIX),
)

# Pages in docs/ that are not lessons but that `learn show` renders too.
EXTRA_PAGES = ("capstone", "protocol", "irc", "scale-out", "exercises", "benchmarks", "architecture")


def find(lesson_id: str) -> Lesson | None:
    return next((lesson for lesson in LESSONS if lesson.id == lesson_id), None)


def closest_ids(wrong: str, choices: tuple[str, ...] | None = None) -> list[str]:
    candidates = choices if choices is not None else tuple(lesson.id for lesson in LESSONS)
    return difflib.get_close_matches(wrong, candidates, n=3, cutoff=0.5)


def docs_root() -> Path:
    """docs/ ships inside the wheel as lessons/_docs; in a source checkout it is ../docs."""
    packaged = Path(__file__).with_name("_docs")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "docs"


def doc_path(name: str) -> Path:
    lesson = find(name)
    relative = lesson.doc_name if lesson else f"{name}.md"
    return docs_root() / relative
