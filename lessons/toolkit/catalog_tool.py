"""Keep the translation catalog in step with the code (a maintainer's tool; needs Babel, the `test` extra).

    python -m lessons.toolkit.catalog_tool update    # after adding or changing a string
    python -m lessons.toolkit.catalog_tool compile   # after translating in the .po

`update` extracts every `_()`, `N_()` and `ngettext()` string of lessons/ and capstone/
into lessons/locale/learn.pot, brings lessons/locale/zh/LC_MESSAGES/learn.po in step
with it (new strings arrive untranslated, strings gone from the code are dropped), takes
the translations other helpers wrote in lessons/locale/zh/LC_MESSAGES/parts/*.po (they
win over learn.po for their strings), and compiles learn.mo. `compile` only compiles.
The learner's `learn` never needs Babel: it reads the committed learn.mo with stdlib gettext.
tests/test_catalog.py fails when a string lacks a translation or learn.mo is stale.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from lessons.toolkit.i18n import DOMAIN, LOCALE_DIR

ROOT = LOCALE_DIR.parent.parent
SOURCES = ("lessons", "capstone")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
TRANSLATED = ("zh",)
PROJECT = "learn-netprog"


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str) -> Path:
    return po_path(language).with_suffix(".mo")


def extract() -> Catalog:
    """Every marked string of the code, with where it is used."""
    template = Catalog(project=PROJECT, domain=DOMAIN, fuzzy=False)
    for folder in SOURCES:
        found = extract_from_dir(ROOT / folder, method_map=[("**.py", "python")], keywords=KEYWORDS,
                                 comment_tags=("TRANSLATORS:",), strip_comment_tags=True)
        for filename, lineno, message, comments, context in found:
            template.add(message, None, [(f"{folder}/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def read(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=language, domain=DOMAIN)


def write(path: Path, catalog: Catalog) -> None:
    with path.open("wb") as target:
        write_po(target, catalog, width=100, ignore_obsolete=True, include_previous=False)


def compiled(catalog: Catalog) -> bytes:
    """The .mo bytes of a catalog; fuzzy (unchecked) translations stay out."""
    out = io.BytesIO()
    write_mo(out, catalog, use_fuzzy=False)
    return out.getvalue()


def parts_folder(language: str) -> Path:
    return po_path(language).parent / "parts"


def take_parts(catalog: Catalog, language: str, folder: Path | None = None) -> None:
    """Other helpers' translations (parts/*.po) for the strings the code uses."""
    for part in sorted((folder or parts_folder(language)).glob("*.po")):
        for message in read(part, language):
            if message.id and message.string and not message.fuzzy and message.id in catalog:
                target = catalog[message.id]
                target.string = message.string
                target.flags.discard("fuzzy")


def update() -> None:
    template = extract()
    write(LOCALE_DIR / f"{DOMAIN}.pot", template)
    for language in TRANSLATED:
        path = po_path(language)
        catalog = read(path, language) if path.exists() else Catalog(locale=language, project=PROJECT, domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)  # a guessed translation is worse than none
        take_parts(catalog, language)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, catalog)
    compile_all()


def compile_all() -> None:
    for language in TRANSLATED:
        mo_path(language).write_bytes(compiled(read(po_path(language), language)))


def main(argv: list[str]) -> int:
    commands = {"update": update, "compile": compile_all}
    if len(argv) != 1 or argv[0] not in commands:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    commands[argv[0]]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
