"""Where every user-visible string is translated: stdlib gettext, one catalog "learn".

Write new text as `_("refused {count} connections").format(count=n)`, never as an
f-string inside `_()`: the catalog needs the template, not the filled-in sentence.
`ngettext(singular, plural, n)` picks "1 answer" / "2 answers".

The language: `learn --lang`, else `LEARN_LANG`, else the locale variables
(`LANGUAGE`, `LC_ALL`, `LC_MESSAGES`, `LANG`; any `zh*` means Chinese), else English.
Compiled catalogs live in `lessons/locale/<lang>/LC_MESSAGES/learn.mo`; until one exists
for a language, its text falls back to English.
"""

from __future__ import annotations

import gettext
import os
from pathlib import Path

DOMAIN = "learn"
LOCALE_DIR = Path(__file__).parent.parent / "locale"
LANGUAGES = ("en", "zh")
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_translation: gettext.NullTranslations | None = None
_language: str | None = None


def language_from_environment(environ: dict[str, str] | None = None) -> str:
    """`LEARN_LANG` first, then the locale; `zh*` anywhere in it means Chinese."""
    env = os.environ if environ is None else environ
    explicit = env.get("LEARN_LANG", "").strip().lower()
    if explicit:
        return "zh" if explicit.startswith("zh") else "en"
    for name in LOCALE_VARIABLES:
        value = env.get(name, "")
        if value:  # the first one set wins, as the C library decides
            first = value.split(":")[0].lower()
            return "zh" if first.startswith("zh") else "en"
    return "en"


def use_language(language: str | None) -> str:
    """Choose the language for the rest of this process; None means 'from the environment'."""
    global _translation, _language
    chosen = language or language_from_environment()
    _language = chosen if chosen in LANGUAGES else "en"
    _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[_language], fallback=True)
    return _language


def _(message: str) -> str:
    if _translation is None:
        use_language(None)
    return _translation.gettext(message)  # type: ignore[union-attr]


def ngettext(singular: str, plural: str, count: int) -> str:
    if _translation is None:
        use_language(None)
    return _translation.ngettext(singular, plural, count)  # type: ignore[union-attr]
