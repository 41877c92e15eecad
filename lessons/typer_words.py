"""Typer's and Click's own words ("Usage:", "Options", "[default: 8888]", "missing argument")
in the chosen language.

Typer 0.2x vendors its Click and writes most of these words as plain English literals;
only typer.core and typer.rich_utils ask the stdlib `gettext` (the "messages" domain, which
follows the C locale, not `learn --lang`). So for a language other than English,
`speak_typer_words()` points those two modules at our catalog, sets the panel titles that
rich_utils computed at import, wraps the two places that write "Usage:" and "Show this
message and exit.", and lets help text fold between characters (Chinese has no spaces). Usage mistakes become one sentence in `lessons.cli.usage_sentence`,
through `usage_problem()` below. English needs none of it: the words are English already.
"""

from __future__ import annotations

import re
from typing import Any

from lessons.toolkit.i18n import N_, _, current_language

# The words typer.core and typer.rich_utils pass to gettext (so they are in our catalog too).
TYPER_GETTEXT_WORDS = (
    N_("default: {default}"), N_("required"), N_("env var: {var}"), N_("(dynamic)"), N_("Aborted!"),
    N_("Missing command."), N_("No such command {name!r}."),
)
# rich_utils computes these module constants once, at import.
RICH_PANEL_WORDS = {
    "ARGUMENTS_PANEL_TITLE": N_("Arguments"),
    "OPTIONS_PANEL_TITLE": N_("Options"),
    "COMMANDS_PANEL_TITLE": N_("Commands"),
    "ERRORS_PANEL_TITLE": N_("Error"),
    "DEFAULT_STRING": N_("[default: {}]"),
    "ENVVAR_STRING": N_("[env var: {}]"),
    "REQUIRED_LONG_STRING": N_("[required]"),
    "DEPRECATED_STRING": N_("(deprecated) "),
    "ABORTED_TEXT": N_("Aborted."),
}
# The root command's completion options: Typer writes their help as plain English.
COMPLETION_HELP = {
    "install_completion": N_("Install completion for the current shell."),
    "show_completion": N_("Show completion for the current shell, to copy it or customize the installation."),
}
USAGE_PREFIX = N_("Usage: ")
HELP_OPTION_HELP = N_("Show this message and exit.")


def speak_typer_words() -> None:
    """Make Typer and Click speak the current language (a no-op for English).

    The help panels are set up only when a help page is formatted: typer.rich_utils
    imports rich's Markdown, a tenth of a second that `learn list` need not pay.
    """
    if current_language() == "en":
        return
    import typer.core

    try:  # recent typer vendors its own click
        from typer._click import core as click_core
        from typer._click import formatting
    except ImportError:  # pragma: no cover - older typer depends on click
        from click import core as click_core  # type: ignore[no-redef]
        from click import formatting  # type: ignore[no-redef]

    typer.core._ = _  # type: ignore[attr-defined]
    patch_once(formatting.HelpFormatter, "write_usage", lambda write_usage: (
        lambda self, prog, args="", prefix=None: write_usage(self, prog, args, _(USAGE_PREFIX) if prefix is None else prefix)))
    patch_once(click_core.Command, "get_help_option", lambda get_help_option: (
        lambda self, ctx: with_help(get_help_option(self, ctx), _(HELP_OPTION_HELP))))
    for command_class in (typer.core.TyperCommand, typer.core.TyperGroup):
        patch_once(command_class, "format_help", lambda format_help: (
            lambda self, ctx, formatter: (speak_in_help_panels(), format_help(self, ctx, formatter))[1]))


def patch_once(owner: Any, name: str, wrap: Any) -> None:
    """Replace `owner.name` by `wrap(original)`, once however often the language is chosen."""
    original = getattr(owner, name)
    if getattr(original, "translated", False):
        return
    replacement = wrap(original)
    replacement.translated = True
    setattr(owner, name, replacement)


def with_help(option: Any, text: str) -> Any:
    if option is not None:
        option.help = text
    return option


def speak_in_help_panels() -> None:
    """rich_utils' words, computed once at its import, and help text that folds Chinese."""
    import typer.rich_utils as rich_utils

    rich_utils._ = _  # type: ignore[attr-defined]
    for name, words in RICH_PANEL_WORDS.items():
        setattr(rich_utils, name, _(words))
    usage = f"(?P<usage>{re.escape(_(USAGE_PREFIX))})"
    if usage not in rich_utils.highlighter.highlights:
        rich_utils.highlighter.highlights.append(usage)
    # A run of Chinese has no spaces to break at: without "fold", rich cuts it with "…" at the column's end.
    patch_once(rich_utils, "_make_rich_text", lambda make_rich_text: (
        lambda **options: folding(make_rich_text(**options))))


def folding(text: Any) -> Any:
    if hasattr(text, "overflow"):
        text.overflow = "fold"
    return text


def translate_completion_help(params: list[Any]) -> list[Any]:
    """The root command's parameters, with the completion options' help in the current language."""
    for param in params:
        if param.name in COMPLETION_HELP:
            param.help = _(COMPLETION_HELP[param.name])
    return params


# Typer's value checks, as it words them, and ours.
VALUE_PROBLEMS = (
    (re.compile(r"Input should be a valid integer"), N_("it must be a whole number")),
    (re.compile(r"Input should be a valid number"), N_("it must be a number")),
    (re.compile(r"Input should be less than or equal to (?P<limit>\S+)"), N_("it must be at most {limit}")),
    (re.compile(r"Input should be less than (?P<limit>\S+)"), N_("it must be less than {limit}")),
    (re.compile(r"Input should be greater than or equal to (?P<limit>\S+)"), N_("it must be at least {limit}")),
    (re.compile(r"Input should be greater than (?P<limit>\S+)"), N_("it must be more than {limit}")),
    (re.compile(r"(?P<value>.+?) is not one of (?P<choices>.+?)\.?$"), N_("{value} is not one of {choices}")),
)


def usage_problem(err: Any) -> str:
    """What a usage mistake Click found is, in the current language (English: Click's own words)."""
    message = err.format_message().strip().rstrip(".")
    if current_language() == "en":
        return message.replace("(Possible options", "(possible options")
    kind = type(err).__name__
    if kind == "NoSuchOption":
        problem = _("no such option: {option}").format(option=err.option_name)
        if err.possibilities:
            problem += _(" (possible options: {options})").format(options=", ".join(sorted(err.possibilities)))
        return problem
    if kind == "MissingParameter" and err.param is not None:
        name = err.param.get_error_hint()
        if err.param.param_type_name == "argument":
            return _("missing argument {name}").format(name=name)
        return _("missing option {name}").format(name=name)
    if kind == "BadParameter" and err.param is not None:
        return _("invalid value for {name}: {problem}").format(name=err.param.get_error_hint(),
                                                              problem=value_problem(err.message))
    requires = re.fullmatch(r"Option (?P<name>'\S+') requires an? argument", message)
    if requires:
        return _("option {name} needs a value").format(name=requires["name"])
    extra = re.fullmatch(r"Got unexpected extra arguments? \((?P<words>.*)\)", message)
    if extra:
        return _("unexpected extra arguments: {words}").format(words=extra["words"])
    close = re.fullmatch(r"(?P<problem>.+?)\.? Did you mean (?P<names>.+?)\?", message)
    if close:  # typer's "No such command 'lis'. Did you mean 'list'?": its first part is translated already
        return _("{problem} (did you mean {names}?)").format(problem=close["problem"], names=close["names"])
    return message


def value_problem(message: str) -> str:
    for pattern, words in VALUE_PROBLEMS:
        found = pattern.search(message)
        if found:
            return _(words).format(**found.groupdict())
    return message
