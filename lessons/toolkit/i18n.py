"""Where every user-visible string is translated: stdlib gettext, one catalog "learn".

Write new text as `_("refused {count} connections").format(count=n)`, never as an
f-string inside `_()`: the catalog needs the template, not the filled-in sentence.
`ngettext(singular, plural, n)` picks "1 answer" / "2 answers". A string that must be
defined before the language is known (a table at module level) is marked with `N_()`
and translated with `_()` where it is shown.

The language: `learn --lang`, else `LEARN_LANG`, else the locale variables
(`LANGUAGE`, `LC_ALL`, `LC_MESSAGES`, `LANG`; any `zh*` means Chinese), else English.
Compiled catalogs live in `lessons/locale/<lang>/LC_MESSAGES/learn.mo`; how to update
them after changing a string: lessons/locale/README.md.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

DOMAIN = "learn"
LOCALE_DIR = Path(__file__).parent.parent / "locale"
LANGUAGES = ("en", "zh")
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
CHOICE_VARIABLE = "LEARN_LANG"  # set once chosen, so the processes a lesson starts speak the same language

_translation: gettext.NullTranslations | None = None
_language: str | None = None


def language_from_environment(environ: dict[str, str] | None = None) -> str:
    """`LEARN_LANG` first, then the locale; `zh*` anywhere in it means Chinese."""
    env = os.environ if environ is None else environ
    explicit = env.get(CHOICE_VARIABLE, "").strip().lower()
    if explicit:
        return "zh" if explicit.startswith("zh") else "en"
    for name in LOCALE_VARIABLES:
        value = env.get(name, "")
        if value:  # the first one set wins, as the C library decides
            first = value.split(":")[0].lower()
            return "zh" if first.startswith("zh") else "en"
    return "en"


def language_from_argv(args: list[str]) -> str | None:
    """The value of a root `--lang X` / `--lang=X` (before the first command word), else None.

    The root command needs the language before it builds its commands: their help texts
    are translated when Python defines them, long before Click parses the options.
    """
    for index, word in enumerate(args):
        if word == "--lang" and index + 1 < len(args):
            return args[index + 1]
        if word.startswith("--lang="):
            return word.split("=", 1)[1]
        if not word.startswith("-"):
            return None  # a command word: a later --lang belongs to that command
    return None


def translation_for(language: str) -> gettext.NullTranslations:
    """The catalog of one language (English: the text as written)."""
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def use_language(language: str | None) -> str:
    """Choose the language for the rest of this process; None means 'from the environment'.

    An explicit choice is also put in `LEARN_LANG`, so child processes inherit it.
    """
    global _translation, _language
    chosen = language or language_from_environment()
    _language = chosen if chosen in LANGUAGES else "en"
    if language:
        os.environ[CHOICE_VARIABLE] = _language
    _translation = translation_for(_language)
    return _language


def current_language() -> str:
    if _language is None:
        use_language(None)
    return _language  # type: ignore[return-value]


def N_(message: str) -> str:
    """Marks a string for the catalog without translating it yet (see the module doc)."""
    return message


def _(message: str) -> str:
    if _translation is None:
        use_language(None)
    return _translation.gettext(message)  # type: ignore[union-attr]


def ngettext(singular: str, plural: str, count: int) -> str:
    if _translation is None:
        use_language(None)
    return _translation.ngettext(singular, plural, count)  # type: ignore[union-attr]
