"""Which page `learn show` renders: the chosen language's twin of an English page, or the English page.

The Chinese pages live in docs/zh/ at the English page's path (`docs/lessons/X.md` ->
`docs/zh/lessons/X.md`). Line 1 of each names the English page it was translated from
and the first 12 hex digits of the sha256 of that page's bytes:

    <!-- translated-from: docs/lessons/poll-server.md sha256:0123456789ab -->

When the English page changes, its hash no longer matches, and `learn show` says so in
one line above the page. A page with no twin yet is shown in English, also with one line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lessons import catalog
from lessons.toolkit import i18n
from lessons.toolkit.i18n import _

ENGLISH = "en"
HEADER = re.compile(r"<!-- translated-from: (?P<source>\S+) sha256:(?P<digest>[0-9a-f]{12}) -->")

@dataclass(frozen=True)
class Page:
    markdown: str  # what to render: the header line, if any, is taken off
    notes: tuple[str, ...] = ()  # one line each, printed above the page


def short_hash(path: Path) -> str:
    """What a translation records of its English page: 12 hex digits of the sha256 of its bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def header_of(markdown: str) -> re.Match[str] | None:
    """The `translated-from` header if line 1 is exactly one, else None."""
    first_line = markdown.split("\n", 1)[0]
    return HEADER.fullmatch(first_line)


def twin_of(english: Path, language: str) -> Path:
    """`docs/lessons/X.md` -> `docs/zh/lessons/X.md` (under whatever docs_root() is)."""
    root = catalog.docs_root()
    return root / language / english.relative_to(root)


def page_to_show(english: Path, language: str | None = None) -> Page:
    language = language or i18n.current_language()
    if language == ENGLISH:
        return Page(english.read_text(encoding="utf-8"))
    twin = twin_of(english, language)
    if not twin.is_file():
        note = _("This page has no translation in your language yet; here is the English page.")
        return Page(english.read_text(encoding="utf-8"), (note,))
    markdown = twin.read_text(encoding="utf-8")
    header = header_of(markdown)
    if header is None:  # tests/test_docs_zh.py makes sure every page has one
        return Page(markdown)
    without_header = markdown.partition("\n")[2]
    if header["digest"] == short_hash(english):
        return Page(without_header)
    note = _("The English page has changed since this page was translated; LEARN_LANG=en shows the newest text.")
    return Page(without_header, (note,))
