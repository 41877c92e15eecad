"""The `learn` command: list, show and run lessons; the chat, exercise and bench groups.

Start-up stays fast (`learn list` in about 0.3 s): lesson modules are imported only when
their command runs, and every group module imports only typer at its top.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from lessons import __version__, catalog
from lessons.common import RunFailure, UserError

try:  # recent typer vendors its own click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer depends on click
    from click import UsageError  # type: ignore[no-redef]


def print_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")


class LearnGroup(typer.core.TyperGroup):
    """The root group: turns a lesson's UserError/RunFailure into one sentence and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, RunFailure) as err:
            print_error(str(err))
            raise typer.Exit(err.exit_code) from None


class LessonGroup(typer.core.TyperGroup):
    """`learn run LESSON`: one sub-command per catalog entry, imported only when used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [lesson.id for lesson in catalog.LESSONS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        lesson = catalog.find(cmd_name)
        if lesson is None:
            return None
        return lesson_command(lesson)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0]
        if catalog.find(name) is None and not name.startswith("-"):
            close = catalog.closest_ids(name)
            hint = f" Did you mean {' or '.join(close)}?" if close else " See `learn list`."
            raise UsageError(f"There is no lesson called {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)


def lesson_command(lesson: catalog.Lesson) -> Any:
    import importlib

    module = importlib.import_module(f"lessons.{lesson.module}")
    single = typer.Typer(add_completion=False, rich_markup_mode="rich")
    single.command(name=lesson.id, help=f"{lesson.title}: {lesson.summary}")(module.main)
    return typer.main.get_command(single)


app = typer.Typer(
    cls=LearnGroup,
    help="Learn Linux network and process programming by running it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
run_app = typer.Typer(
    cls=LessonGroup,
    help="Run a lesson: `learn run LESSON --help` shows its options.",
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")


def _register_groups() -> None:
    from capstone.bench.cli import app as bench_app
    from capstone.cli import app as chat_app
    from lessons.exercises.cli import app as exercise_app

    app.add_typer(chat_app, name="chat")
    app.add_typer(exercise_app, name="exercise")
    app.add_typer(bench_app, name="bench")


def version_callback(value: bool) -> None:
    if value:
        print(f"learn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Learn Linux network and process programming by running it."""


@app.command("list")
def list_lessons() -> None:
    """List the lessons, what each teaches, and where it runs."""
    from rich.console import Console
    from rich.table import Table

    from lessons.common import platform_name
    from lessons.exercises.workspace import exercise_statuses

    here = platform_name()
    progress = exercise_statuses()  # None unless an exercise workspace is found from here
    table = Table(title="Lessons", title_justify="left")
    table.add_column("id", style="bold cyan", no_wrap=True)
    table.add_column("topic", style="dim")
    table.add_column("what it teaches")
    table.add_column("runs on")
    if progress is not None:
        table.add_column("exercise")
    for lesson in catalog.LESSONS:
        platforms = ", ".join(lesson.platforms)
        if here not in lesson.platforms:
            platforms += f" [red](not {here})[/]"
        row = [lesson.id, lesson.topic, f"[bold]{lesson.title}[/]\n{lesson.summary}", platforms]
        if progress is not None:
            row.append(f"{lesson.exercise}: {progress.get(lesson.exercise, '?')}" if lesson.exercise else "")
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print("Next: [bold]learn show poll-server[/], then [bold]learn run poll-server --demo[/].")


@app.command("show")
def show(
    lesson_id: Annotated[str, typer.Argument(metavar="LESSON", help="A lesson id, or capstone/protocol/exercises/benchmarks.")],
    source: Annotated[bool, typer.Option("--source", help="Show the lesson's code instead of its page.")] = False,
) -> None:
    """Show a lesson's page (rendered Markdown) or, with --source, its code."""
    from rich.console import Console

    lesson = catalog.find(lesson_id)
    if lesson is None and lesson_id not in catalog.EXTRA_PAGES:
        choices = tuple(item.id for item in catalog.LESSONS) + catalog.EXTRA_PAGES
        close = catalog.closest_ids(lesson_id, choices)
        hint = f" Did you mean {' or '.join(close)}?" if close else " See `learn list`."
        raise UserError(f"There is no lesson or page called {lesson_id!r}.{hint}")
    console = Console()
    if source:
        if lesson is None:
            raise UserError(f"{lesson_id!r} is a page, not a lesson: it has no --source.")
        from rich.syntax import Syntax

        path = lesson.source_path()
        console.print(f"[dim]{path}[/]")
        console.print(Syntax(path.read_text(encoding="utf-8"), "python", line_numbers=True))
        return
    from rich.markdown import Markdown

    path = catalog.doc_path(lesson_id)
    if not path.is_file():
        raise RunFailure(f"the page {path} is missing from this installation.")
    console.print(Markdown(path.read_text(encoding="utf-8")))


_register_groups()


def main() -> None:
    app(prog_name="learn")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
