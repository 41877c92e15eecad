"""The `learn` command: list, show and run lessons; the chat, exercise and bench groups.

Start-up stays fast (`learn list` in about 0.3 s): lesson modules are imported only when
their command runs, and every group module imports only typer at its top.
"""

from __future__ import annotations

import re
import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from lessons import __version__, catalog, pages
from lessons.toolkit import exits, i18n
from lessons.toolkit.widewrap import allow_breaks_between_wide_characters
from lessons.toolkit.common import RunFailure, UserError, unknown_name
from lessons.toolkit.i18n import _
from lessons.typer_words import speak_typer_words, translate_completion_help, usage_problem

try:  # recent typer vendors its own click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer depends on click
    from click import ClickException, UsageError  # type: ignore[no-redef]


def show_flags_as_flags() -> None:
    """typer 0.2x prints `<bool>` after a flag in its help, as if `--demo` took a value: it does not."""
    option_class = getattr(typer.core, "TyperOption", None)
    type_shown = getattr(option_class, "display_type_rich", None)
    if type_shown is None or getattr(type_shown, "flags_fixed", False):
        return

    def display_type_rich(option: Any, ctx: Any) -> Optional[str]:
        if getattr(option, "is_flag", False) or getattr(option, "count", False):
            return None
        return type_shown(option, ctx)

    display_type_rich.flags_fixed = True  # type: ignore[attr-defined]
    option_class.display_type_rich = display_type_rich  # type: ignore[union-attr]


show_flags_as_flags()
allow_breaks_between_wide_characters()  # Chinese pages wrap between characters, not only at spaces
# The language comes first: the help texts below are translated when Python defines them,
# before Click has parsed `--lang`, so the root option is looked for in argv by hand.
i18n.use_language(i18n.language_from_argv(sys.argv[1:]))
speak_typer_words()


class LearnGroup(typer.core.TyperGroup):
    """The root group: every command ends here, by the rules in docs/style.md (lessons.toolkit.exits).

    A lesson's UserError/RunFailure becomes one sentence and its exit code; a usage mistake
    Click finds becomes one plain sentence too (no boxes), exit 2; Ctrl-C one line, exit 130;
    and a closed stdout (`| head -1`) ends any command quietly with exit 0.
    """

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        self.command_words = " ".join(["learn", *command_words(args)])
        self.output = exits.OutputWatch()
        undo_thread_hook = exits.quiet_broken_pipes_in_threads(self.output)
        try:
            code = self.run_to_exit_code(args, prog_name, complete_var, **extra)
        finally:
            undo_thread_hook()
        if self.output.closed():  # whatever happened after that, the reader has gone
            exits.silence_closed_output()
            code = exits.DONE
        if standalone_mode:
            sys.exit(code)
        return code

    def run_to_exit_code(self, args: list[str], prog_name: Optional[str], complete_var: Optional[str],
                         **extra: Any) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as err:
            if type(err).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
                self.report(lambda: exits.print_error(usage_sentence(err)))
            return exits.USAGE
        except ClickException as err:
            self.report(lambda: exits.print_error(err.format_message()))
            return err.exit_code
        except typer.Abort:
            self.report(lambda: exits.print_notice(_("cancelled.")))
            return exits.FAILED
        except SystemExit as end:  # rich's own EPIPE handling raises SystemExit(1)
            return end.code if isinstance(end.code, int) else exits.FAILED
        except BrokenPipeError:
            if self.output.closed():
                return exits.DONE
            raise
        return result if isinstance(result, int) and not isinstance(result, bool) else exits.DONE

    def get_params(self, ctx: Any) -> list[Any]:
        return translate_completion_help(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (UserError, RunFailure) as err:
            self.report(lambda: exits.print_error(str(err)))
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            self.report(self.say_interrupted)
            raise typer.Exit(exits.INTERRUPTED) from None

    def report(self, say: Any) -> None:
        """Say it, unless the output is closed: then the failure is probably its echo."""
        if not self.output.closed():
            say()

    def say_interrupted(self) -> None:
        exits.start_fresh_line()
        exits.print_notice(_("stopped `{command}` with Ctrl-C before it finished.").format(command=self.command_words))


def command_words(args: list[str]) -> list[str]:
    """`run struct-recv` out of `run struct-recv --demo`: the words that name the command."""
    words = []
    for word in args:
        if word.startswith("-"):
            break
        words.append(word)
    return words[:3]


def usage_sentence(err: Any) -> str:
    """Click's usage message as one sentence that says where the options are listed."""
    message = re.sub(r"\.?\s*Did you mean (.+?)\?$", r" (did you mean \1?)", usage_problem(err))
    ctx = getattr(err, "ctx", None)
    if ctx is None:
        return message
    return _("{problem}; see `{command} --help`.").format(problem=exits.as_sentence(message).rstrip(".。"),
                                                         command=ctx.command_path)


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
            raise UserError(no_such_lesson(name, _("there is no lesson called {name!r}")))
        return super().resolve_command(ctx, args)


def no_such_lesson(name: str, problem: str, choices: tuple[str, ...] | None = None) -> str:
    """The sentence for a wrong lesson name, with the closest real names when some are close."""
    return unknown_name(problem.format(name=name), catalog.closest_ids(name, choices), "learn list")


def lesson_command(lesson: catalog.Lesson) -> Any:
    import importlib

    module = importlib.import_module(f"lessons.{lesson.module}")
    single = typer.Typer(add_completion=False, rich_markup_mode="rich")
    single.command(name=lesson.id, help=_("{title}: {summary}").format(
        title=_(lesson.title), summary=_(lesson.summary)))(module.main)
    return typer.main.get_command(single)


app = typer.Typer(
    cls=LearnGroup,
    help=_("Learn Linux network and process programming by running it.\n\n"
           "Language: --lang zh or --lang en; without it LEARN_LANG, then the locale "
           "(LANGUAGE, LC_ALL, LC_MESSAGES, LANG: zh* means Chinese), else English."),
    no_args_is_help=True,
    rich_markup_mode="rich",
)
run_app = typer.Typer(
    cls=LessonGroup,
    help=_("Run a lesson: `learn run LESSON --help` shows its options."),
    no_args_is_help=True,
)
app.add_typer(run_app, name="run")


COMMAND_GROUPS = "learn.commands"  # the entry-point group in pyproject.toml


def _register_groups() -> None:
    """Mount `learn chat`, `learn exercise`, `learn bench`: declared as entry points in
    pyproject.toml (the way pytest finds its plugins), so this package never imports the
    capstone that stands on it. Each group module imports only typer at its top."""
    from importlib.metadata import entry_points

    for group in sorted(entry_points(group=COMMAND_GROUPS), key=lambda point: point.name):
        app.add_typer(group.load(), name=group.name)


class Language(str, Enum):
    en = "en"
    zh = "zh"


def version_callback(value: bool) -> None:
    if value:
        print(f"learn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=version_callback, is_eager=True, help=_("Print the version and exit.")),
    ] = None,
    lang: Annotated[
        Optional[Language],
        typer.Option("--lang", case_sensitive=False, show_default=False,
                     help=_("Language of every command: zh (中文) or en (English).")),
    ] = None,
) -> None:
    if lang is not None:  # argv was scanned for it already; this is for app(...) called with args
        i18n.use_language(lang.value)
        speak_typer_words()


@app.command("list", help=_("List the lessons, what each teaches, and where it runs."))
def list_lessons() -> None:
    from rich.console import Console
    from rich.table import Table

    from lessons.toolkit.common import platform_name
    from lessons.exercises.workspace import exercise_statuses

    here = platform_name()
    progress = exercise_statuses()  # None unless an exercise workspace is found from here
    table = Table(title=_("Lessons"), title_justify="left")
    table.add_column("id", style="bold cyan", no_wrap=True)
    # fold: Chinese has no spaces, so a long run of it breaks between characters, never cut with "…"
    table.add_column(_("topic"), style="dim", overflow="fold")
    table.add_column(_("what it teaches"), overflow="fold")
    table.add_column(_("runs on"), overflow="fold")
    if progress is not None:
        table.add_column(_("exercise"))
    for lesson in catalog.LESSONS:
        # TRANSLATORS: what stands between the items of a list
        platforms = _(", ").join(lesson.platforms)
        if here not in lesson.platforms:
            platforms += " [red]" + _("(not {platform})").format(platform=here) + "[/]"
        row = [lesson.id, _(lesson.topic), f"[bold]{_(lesson.title)}[/]\n{_(lesson.summary)}", platforms]
        if progress is not None:
            row.append(f"{lesson.exercise}: {_(progress.get(lesson.exercise, '?'))}" if lesson.exercise else "")
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(_("Next: [bold]learn show poll-server[/], then [bold]learn run poll-server --demo[/]."))


@app.command("show", help=_(
    "Show a lesson's page (rendered Markdown) or, with --source, its code.\n\n"
    "On a terminal it goes through your pager ($PAGER, else less), long lines wrapped; "
    "piped, it comes out whole: `learn show poll-server --source > copy.py` is the file, "
    "after one `# path` comment line."))
def show(
    lesson_id: Annotated[str, typer.Argument(metavar="LESSON", help=_(
        "A lesson id, or a page: capstone, protocol, irc, scale-out, exercises, benchmarks, architecture."))],
    source: Annotated[bool, typer.Option("--source", help=_("Show the lesson's code instead of its page."))] = False,
) -> None:
    lesson = catalog.find(lesson_id)
    if lesson is None and lesson_id not in catalog.EXTRA_PAGES:
        choices = tuple(item.id for item in catalog.LESSONS) + catalog.EXTRA_PAGES
        raise UserError(no_such_lesson(lesson_id, _("there is no lesson or page called {name!r}"), choices))
    if source:
        if lesson is None:
            raise UserError(_("{name!r} is a page, not a lesson: it has no --source.").format(name=lesson_id))
        show_source(lesson.source_path())
        return
    path = catalog.doc_path(lesson_id)
    if not path.is_file():
        raise RunFailure(_("the page {path} is missing from this installation.").format(path=path))
    show_page(pages.page_to_show(path))


def show_source(path: Any) -> None:
    """On a terminal: coloured, numbered, wrapped, paged. Piped: the file as it is, behind its path."""
    code = path.read_text(encoding="utf-8")
    if not sys.stdout.isatty():
        sys.stdout.write(f"# {path}\n{code}")
        return
    from rich.console import Console
    from rich.syntax import Syntax

    from lessons.toolkit.pager import paged

    console = Console()
    with paged(console):
        console.print(f"[dim]{path}[/]")
        console.print(Syntax(code, "python", line_numbers=True, word_wrap=True))


def show_page(page: pages.Page) -> None:
    """The page in the chosen language, after a line for each note (no translation yet, or an old one)."""
    from rich.console import Console
    from rich.markdown import Markdown

    from lessons.toolkit.pager import paged

    console = Console()
    with paged(console):
        for note in page.notes:
            console.print(note, style="dim", markup=False)
        console.print(Markdown(page.markdown))  # Chinese wraps between characters: lessons.toolkit.widewrap


_register_groups()


def main() -> None:
    app(prog_name="learn")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
