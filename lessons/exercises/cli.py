"""`learn exercise ...`: init a workspace, check, hint, reset, solution, watch, list.

Only typer is imported at the top so that `learn` starts fast; each command imports
what it needs. Errors the learner can fix are a UserError: one sentence, exit code 2.
`check` exits 0 when every check passes and 1 otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from lessons.toolkit.i18n import _

app = typer.Typer(
    help=_("Rebuild each lesson yourself; pytest checks your code."),
    no_args_is_help=True,
    rich_markup_mode="rich",
)

WorkspaceOption = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help=_("The workspace folder (default: found from here upwards).")),
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help=_("An exercise id, e.g. poll-echo."))]
OptionalName = Annotated[
    Optional[str], typer.Argument(metavar="[NAME]", help=_("An exercise id; default: the next unfinished one."))
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help=_("Do not ask for confirmation."))]
LanguageOption = Annotated[
    Optional[str],
    typer.Option("--lang", metavar="zh|en", help=_("The language of the stubs, hints and check messages "
                 "(default: LEARN_LANG, then the locale; an existing workspace keeps its own).")),
]


def console(soft_wrap: bool = True) -> Any:
    """Rich on a terminal; plain text (no colours, no symbols) when piped or captured."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=soft_wrap, no_color=is_plain())


def is_plain() -> bool:
    return not sys.stdout.isatty()


def exercise_named(name: str) -> Any:
    from lessons.toolkit.common import UserError, unknown_name
    from lessons.exercises import catalog

    exercise = catalog.find(name)
    if exercise is None:
        raise UserError(unknown_name(_("there is no exercise called {name!r}").format(name=name),
                                     catalog.closest_ids(name), "learn exercise list"))
    return exercise


def open_workspace(path: Optional[Path]) -> Any:
    """The workspace, speaking its own language from now on (unless LEARN_LANG says otherwise)."""
    from lessons.exercises.workspace import Workspace

    space = Workspace.find(path)
    space.speak()
    return space


def language_named(code: Optional[str]) -> Optional[str]:
    """'zh' or 'en' from --lang (zh_CN, zh-tw... are Chinese too); None when not given."""
    from lessons.toolkit.common import UserError
    from lessons.toolkit.i18n import LANGUAGES

    if code is None:
        return None
    language = "zh" if code.lower().startswith("zh") else code.lower()
    if language not in LANGUAGES:
        raise UserError(_("there is no language {code!r}; choose one of: {choices}.").format(
            code=code, choices=", ".join(LANGUAGES)))
    return language


# ----- init and list ---------------------------------------------------------------------


@app.command(help=_(
    "Create a workspace with one stub per exercise; files already there are never "
    "overwritten."))
def init(
    directory: Annotated[
        Optional[Path],
        typer.Argument(metavar="[DIR]", help=_("Where to put your files (default ./learn-exercises).")),
    ] = None,
    lang: LanguageOption = None,
) -> None:
    from rich.markup import escape

    from lessons.toolkit.i18n import ngettext
    from lessons.exercises.workspace import DEFAULT_DIR, Workspace, chosen_language, find_root

    if directory is None:  # inside a workspace already? complete that one, do not nest another
        directory = find_root(Path.cwd()) or Path(DEFAULT_DIR)
    workspace, created, kept = Workspace.init(directory, language_named(lang) or chosen_language())
    out = console()
    out.print(_("Workspace: [bold]{path}[/]").format(path=escape(str(workspace.root))))
    if created:
        out.print(ngettext("  created {n} exercise file: {files}", "  created {n} exercise files: {files}",
                           len(created)).format(n=len(created), files=escape(", ".join(created))))
    if kept:
        out.print(ngettext("  kept {n} file you already had, untouched: {files}",
                           "  kept {n} files you already had, untouched: {files}",
                           len(kept)).format(n=len(kept), files=escape(", ".join(kept))))
    if workspace.root == Path.cwd().resolve():
        out.print(_("Next: open [bold]{file}[/], then [bold]learn exercise check[/].").format(
            file=escape(_first_file(workspace))))
    else:
        out.print(_("Next: [bold]cd {folder}[/], open [bold]{file}[/], then [bold]learn exercise check[/].").format(
            folder=escape(str(directory)), file=escape(_first_file(workspace))))


def _first_file(workspace: Any) -> str:

    following = workspace.next_unfinished()
    return following.file_name if following else _("any file")


@app.command("list", help=_("Every exercise in order, with your progress: done, pending or not started."))
def list_exercises(workspace: WorkspaceOption = None) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from lessons.exercises.catalog import EXERCISES, HINT_TIERS
    from lessons.exercises.workspace import DONE, NOT_STARTED, PENDING

    space = open_workspace(workspace)
    styles = {DONE: "green", PENDING: "yellow", NOT_STARTED: "dim"}
    table = Table(title=_("Exercises in {name}").format(name=escape(str(space.root))), title_justify="left",
                  box=None if is_plain() else box.SIMPLE)
    for column in ("#", _("exercise"), _("lesson"), _("status"), _("hints"), _("file")):
        table.add_column(column)
    for number, exercise in enumerate(EXERCISES, 1):
        status = space.status(exercise)
        record = space.progress.get(exercise.id)
        hints = f"{record.hints_shown}/{len(HINT_TIERS)}" if record and record.hints_shown else ""
        table.add_row(str(number), exercise.id, exercise.lesson, f"[{styles[status]}]{_(status)}[/]",
                      hints, exercise.file_name)
    out = console()
    out.print(table)
    done = sum(space.status(exercise) == DONE for exercise in EXERCISES)
    following = space.next_unfinished()
    tail = _(" Next: [bold]learn exercise check {id}[/]").format(id=following.id) if following else _(" All done!")
    out.print(_("{done} of {total} done.").format(done=done, total=len(EXERCISES)) + tail)


# ----- check and watch ---------------------------------------------------------------------


@app.command(help=_("Run the checks of one exercise against your file (default: the next unfinished one)."))
def check(
    name: OptionalName = None,
    workspace: WorkspaceOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=_("Also show pytest's own output."))] = False,
    time_limit: Annotated[
        Optional[float], typer.Option("--time-limit", min=1, help=_("Seconds before everything is stopped."))
    ] = None,
) -> None:
    space = open_workspace(workspace)
    exercise = exercise_named(name) if name else space.next_unfinished()
    if exercise is None:
        console().print(_("Every exercise is done. `learn exercise list` shows them all."))
        return
    try:
        passed = run_and_report(space, exercise, verbose, time_limit)
    except KeyboardInterrupt:
        stopped_by_ctrl_c(exercise)
    raise typer.Exit(0 if passed else 1)


def stopped_by_ctrl_c(exercise: Any) -> None:
    """One calm line on a fresh line (not glued to the echoed ^C), exit 130: the run did not finish."""

    fresh = "\n" if sys.stderr.isatty() else ""
    sys.stderr.write(fresh + _("Check of {id} stopped; everything it had started was stopped too.").format(
        id=exercise.id) + "\n")
    raise typer.Exit(130)


def run_and_report(space: Any, exercise: Any, verbose: bool = False, time_limit: float | None = None) -> bool:
    """Check one exercise, record the result, print it; True if it passed."""
    from rich.markup import escape

    from lessons.toolkit.common import UserError, platform_name
    from lessons.exercises import report
    from lessons.exercises.progress import CheckProgress
    from lessons.exercises.runner import run_check

    if platform_name() != "linux":
        raise UserError(_("the checks run on Linux only: they watch processes and sockets through /proc."))
    path = space.existing_file(exercise)
    out = console()
    out.print(_("Checking [bold]{id}[/] ({file}) ...").format(id=escape(exercise.id), file=escape(path.name)))
    with CheckProgress(out, plain=is_plain()) as progress:
        result = run_check(exercise, path, time_limit, progress=progress, language=space.speaking)
    space.record_check(exercise, result.passed)
    out.print(report.render(result, exercise, path.name, plain=is_plain(), verbose=verbose,
                            width=max(60, min(out.width, 110))))
    if result.passed:
        following = space.next_unfinished()
        if following is not None:
            out.print(_("Next: [bold]{name}[/] ({title}), in {file}: `learn exercise check`.").format(
                name=escape(following.id), title=escape(_(following.title)), file=escape(following.file_name)))
        else:
            out.print(_("[bold]That was the last one: every exercise is done.[/]"))
    return result.passed


@app.command(help=_("Re-check an exercise every time you save its file (Ctrl-C stops)."))
def watch(
    workspace: WorkspaceOption = None,
    interval: Annotated[float, typer.Option(min=0.05, help=_("Seconds between looks at your files."))] = 0.5,
) -> None:
    from rich.markup import escape

    from lessons.exercises.catalog import EXERCISES

    space = open_workspace(workspace)
    out = console()
    seen = file_stamps(space, EXERCISES)  # before saying so: a save right after the message counts
    out.print(_("Watching {name} for saved changes (Ctrl-C to stop).").format(name=escape(str(space.root))))
    try:
        while True:
            time.sleep(interval)  # polling mtimes: portable, no dependency, cheap for 7 files
            now = file_stamps(space, EXERCISES)
            changed = [exercise for exercise in EXERCISES if now.get(exercise.id) != seen.get(exercise.id)
                       and exercise.id in now]
            seen = now
            for exercise in changed:
                run_and_report(space, exercise)
            if changed:  # saves made during the check are seen at the next look
                out.print(_("Watching {path} ...").format(path=escape(str(space.root))))
    except KeyboardInterrupt:
        out.print(_("Stopped watching."))


def file_stamps(space: Any, exercises: Any) -> dict[str, tuple[int, int]]:
    stamps = {}
    for exercise in exercises:
        try:
            info = space.file_of(exercise).stat()
        except OSError:
            continue
        stamps[exercise.id] = (info.st_mtime_ns, info.st_size)
    return stamps


# ----- hint, reset, solution ------------------------------------------------------------


@app.command(help=_("The next hint for an exercise: a nudge, then the approach, then nearly the code."))
def hint(name: OptionalName = None, workspace: WorkspaceOption = None) -> None:
    from rich.markdown import Markdown

    from lessons.exercises.catalog import HINT_TIERS

    space = open_workspace(workspace)
    exercise = exercise_named(name) if name else space.next_unfinished()
    if exercise is None:
        console().print(_("Every exercise is done; no hint needed."))
        return
    hints = exercise.hints(space.speaking)
    record = space.of(exercise)
    tier = min(record.hints_shown, len(hints) - 1)
    record.hints_shown = min(record.hints_shown + 1, len(hints))
    space.save()
    out = console(soft_wrap=False)  # hints are prose: wrap them to the screen
    out.print(_("[bold]Hint {number} of {total} ({tier}) for {id}:[/]").format(
        number=tier + 1, total=len(hints), tier=_(HINT_TIERS[tier]), id=exercise.id))
    out.print(Markdown(hints[tier]))
    if tier + 1 < len(hints):
        out.print(_("Still stuck? Ask again: `learn exercise hint {id}`.").format(id=exercise.id))
    else:
        out.print(_("That was the last hint. Once you pass, `learn exercise solution {id}` shows "
                    "the reference solution (or now, with --give-up).").format(id=exercise.id))


@app.command(help=_("Start an exercise over from its stub (your version is backed up first)."))
def reset(name: NameArgument, yes: YesOption = False, workspace: WorkspaceOption = None) -> None:

    space = open_workspace(workspace)
    exercise = exercise_named(name)
    question = _("Replace {path} with the stub? Your version is kept in .backup/").format(
        path=space.file_of(exercise))
    if not (yes or confirmed(question)):
        console().print(_("Nothing changed."), markup=False)
        return  # saying no is an answer, not a failure: exit 0
    backup = space.reset(exercise)
    kept = _(" Your version is in {path}.").format(path=backup) if backup else ""
    console().print(_("{file} is the stub again.").format(file=exercise.file_name) + kept, markup=False)


def confirmed(question: str) -> bool:
    """Ask yes or no; no answer at all (Ctrl-D, no terminal) is a no."""
    try:
        return typer.confirm(question)
    except typer.Abort:
        return False


@app.command(help=_("The reference solution, as a diff against your file: after you pass, or with --give-up."))
def solution(
    name: NameArgument,
    give_up: Annotated[bool, typer.Option("--give-up", help=_("Show it before you have passed."))] = False,
    yes: YesOption = False,
    workspace: WorkspaceOption = None,
) -> None:
    from lessons.toolkit.common import UserError

    space = open_workspace(workspace)
    exercise = exercise_named(name)
    record = space.of(exercise)
    if not record.passed_at and not give_up:
        raise UserError(_("the solution of {id} is shown once your code passes its checks; stuck? "
                          "`learn exercise hint {id}`, or see it now with --give-up.").format(id=exercise.id))
    if not record.passed_at and not yes:
        question = _("Show the reference solution of {id} before you have passed?").format(id=exercise.id)
        if not confirmed(question):
            console().print(_("Nothing shown."), markup=False)
            return
    record.solution_seen = True
    space.save()
    show_diff(space.existing_file(exercise), exercise.solution_in(space.language))


def show_diff(yours: Path, reference: Path) -> None:
    """Unified diff from the learner's file to the reference: what to change, in their file's terms."""
    import difflib

    from rich.syntax import Syntax


    diff = "".join(difflib.unified_diff(
        yours.read_text(encoding="utf-8").splitlines(keepends=True),
        reference.read_text(encoding="utf-8").splitlines(keepends=True),
        fromfile=_("{name} (yours)").format(name=yours.name), tofile=_("{name} (reference solution)").format(name=yours.name)))
    out = console()
    if not diff:
        out.print(_("Your file is the reference solution, byte for byte."))
    elif is_plain():
        out.out(diff, highlight=False)
    else:
        out.print(Syntax(diff, "diff", theme="ansi_dark"))
