"""A check's result in the lesson's terms: which checks pass, why the others fail,
and what the learner's code left behind. Text only (Rich markup); the CLI prints it.

With `plain=True` (output is not a terminal) the marks are words, not symbols, so
logs and pipes stay readable.
"""

from __future__ import annotations

import re
import textwrap

from rich.cells import cell_len
from rich.markup import escape

from lessons.exercises.catalog import Exercise
from lessons.exercises.runner import CheckResult, LeakedProcess
from lessons.toolkit.i18n import _, ngettext

INDENT = "      "


def render(result: CheckResult, exercise: Exercise, file_name: str, plain: bool = False,
           verbose: bool = False, width: int = 100) -> str:
    marks = {"passed": _("PASS"), "failed": _("FAIL"), "skipped": _("SKIP")} if plain else \
        {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]"}
    lines = [headline(result, exercise, file_name), ""]
    lines += check_lines(result, marks, width)
    lines += aftermath(result, plain, width)
    lines += ["", verdict(result, exercise, file_name)]
    if verbose:
        lines += ["", _("[bold]pytest's own output:[/]"), escape(result.raw_output.rstrip() or _("(none)"))]
    return "\n".join(lines)


def headline(result: CheckResult, exercise: Exercise, file_name: str) -> str:
    passed = sum(check.passed for check in result.checks)
    total = max(result.collected, len(result.checks))
    skipped = total - len(result.checks)
    not_run = _(", {n} did not run").format(n=skipped) if skipped else ""
    return _("[bold]{id}[/]: {passed} of {total} checks pass{not_run} ({file}, {seconds:.1f} s)").format(
        id=escape(exercise.id), passed=passed, total=total, not_run=not_run, file=escape(file_name),
        seconds=result.elapsed)


def check_lines(result: CheckResult, marks: dict[str, str], width: int) -> list[str]:
    if result.untouched:  # the same TODO message everywhere: say it once, below
        return [f"  {marks[check.outcome]} {escape(check.title)}" for check in result.checks]
    file_errors = [check for check in result.checks if check.file_error]
    if file_errors and len(file_errors) == len(result.checks):
        return [f"  {marks['failed']} " + _("your file does not load, so no check could run:"),
                indent(file_errors[0].message, width)]
    lines = []
    for check in result.checks:
        lines.append(f"  {marks[check.outcome]} {escape(check.title)}")
        if check.outcome != "passed" and check.message:
            lines.append(indent(check.message, width))
    return lines


def aftermath(result: CheckResult, plain: bool, width: int) -> list[str]:
    """Time limit, leaked processes, leftover socket files, problems of the runner itself."""
    bang = "!" if plain else "[bold red]![/]"
    notes = [escape(note) for note in notes_after(result)]
    lines = [f"  {bang} " + "\n    ".join(wrap(note, width - 4)) for note in notes]
    return ([""] + lines) if lines else []


def notes_after(result: CheckResult) -> list[str]:
    """Plain sentences about what happened around the checks."""
    lines = []
    if result.timed_out:
        running = _(" (it was running: {title})").format(title=result.running_at_timeout) \
            if result.running_at_timeout else ""
        lines.append(_("the check did not finish within {limit} s and was stopped{running}; "
                       "everything it had started was killed.").format(limit=f"{result.time_limit:g}",
                                                                       running=running))
    if result.interrupted:
        lines.append(_("the check was interrupted; everything it had started was killed."))
    lines += leak_notes(result.leaked)
    for name in result.leftover_files:
        lines.append(_("a socket file was left behind: {name} "
                       "(a server removes its socket file when it stops).").format(name=name))
    if result.runner_problem:
        lines.append(result.runner_problem)
    if result.escaped:
        count = len(result.escaped)
        lines.append(ngettext("{n} process of the check was still running when the check runner had gone; "
                              "it was found and killed.",
                              "{n} processes of the check were still running when the check runner had gone; "
                              "they were found and killed.", count).format(n=count))
    if not result.followed_orphans:
        lines.append(_("the check could not become a child subreaper (prctl failed), so a process that "
                       "left its parent behind may have gone unnoticed."))
    if not result.checks and not (result.timed_out or result.runner_problem):
        lines.append(_("no check ran (pytest exit code {code}); "
                       "run again with --verbose to see pytest's output.").format(code=result.exit_code))
    return lines


MANY_LEAKS = 3  # more leftovers than this are summed up in one line


def leak_notes(leaks: list[LeakedProcess]) -> list[str]:
    """One sentence per leftover process, or one for them all when there are many."""
    if len(leaks) <= MANY_LEAKS:
        return [describe_leak(leak) for leak in leaks]
    zombies = sum(leak.state == "Z" for leak in leaks)
    away = sum(leak.own_session and leak.state != "Z" for leak in leaks)
    kinds = []
    if away:
        kinds.append(ngettext("{n} had called setsid() and left the check's session",
                              "{n} had called setsid() and left the check's session", away).format(n=away))
    if zombies:
        kinds.append(ngettext("{n} was a zombie nobody reaped with os.waitpid()",
                              "{n} were zombies nobody reaped with os.waitpid()", zombies).format(n=zombies))
    rest = len(leaks) - away - zombies
    if rest:
        kinds.append(ngettext("{n} was simply never stopped", "{n} were simply never stopped", rest).format(n=rest))
    first = leaks[0]
    listening = sorted({address for leak in leaks for address in leak.listening})
    heard = _("; between them they listened on {addresses}").format(
        addresses=", ".join(listening[:3]) + (", ..." if len(listening) > 3 else "")) if listening else ""
    return [_("{n} processes outlived the check ({kinds}){heard}. All were killed. The first was process "
              "{pid} ({command}).").format(n=len(leaks), kinds="; ".join(kinds), heard=heard, pid=first.pid,
                                          command=shorten(first.command))]


def describe_leak(leak: LeakedProcess) -> str:
    if leak.state == "Z":
        return _("process {pid} ({command}) had exited but nobody waited for it: a zombie. The process "
                 "that forks a child must reap it with os.waitpid().").format(pid=leak.pid,
                                                                               command=shorten(leak.command))
    how = _("it had called setsid() and left the check's session, so no signal to the check's "
            "process group would have reached it") if leak.own_session else _("nobody stopped and reaped it")
    listening = _("; it was listening on {addresses}").format(addresses=", ".join(leak.listening)) \
        if leak.listening else ""
    return _("process {pid} ({command}) outlived the check, in state {state}: {how}{listening}. "
             "It was killed.").format(pid=leak.pid, command=shorten(leak.command), state=leak.state, how=how,
                                      listening=listening)


def verdict(result: CheckResult, exercise: Exercise, file_name: str) -> str:
    if result.passed:
        return _("[bold green]{id} passes every check.[/]").format(id=escape(exercise.id))
    if result.untouched:
        failed = [check for check in result.checks if check.todo]
        return _("Not started yet: every check stops at the stub's NotImplementedError ({message}). "
                 "Open {file} and work through its TODOs; `learn show {lesson}` explains the idea.").format(
            message=escape(failed[0].message), file=escape(file_name), lesson=escape(exercise.lesson))
    if result.checks and all(check.passed for check in result.checks):
        return _("[bold yellow]The checks pass, but the code left something behind (above); "
                 "that counts as a failure.[/]")
    return _("Not yet. Stuck? `learn exercise hint {id}` (ask again for a more direct one).").format(
        id=escape(exercise.id))


def indent(message: str, width: int) -> str:
    """Under its check, wrapped to the screen; lines that start with spaces (hexdumps) kept as they are."""
    lines = []
    for line in message.splitlines():
        if line.startswith(" ") or cell_len(line) + len(INDENT) <= width:
            lines.append(INDENT + line)
        else:
            lines += wrap(line, width, INDENT)
    return "\n".join(escape(line) for line in lines)


# one breakable piece: a wide (CJK) character with the closing punctuation after it, or a word and its spaces
PIECE = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef][，。、：；！？）”’》]*|[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef]+\s*|\s+")


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Lines of at most `width` terminal cells. A Chinese character takes two cells and a line may
    break after any of them (not before a closing ，。)); English text wraps as textwrap does."""
    if cell_len(text) == len(text):
        return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)
    lines, current = [], indent
    for piece in PIECE.findall(text):
        if current.strip() and cell_len(current + piece.rstrip()) > width:
            lines.append(current.rstrip())
            current = indent + piece.lstrip()
        else:
            current += piece
    return lines + [current.rstrip()] if current.strip() else lines


def shorten(command: str, limit: int = 60) -> str:
    return command if len(command) <= limit else command[:limit - 3] + "..."
