"""The translation catalog is complete and in step with the code (lessons/locale/README.md).

Every string the code marks (`_()`, `N_()`, `ngettext()`) has a Chinese translation that is
neither empty nor fuzzy, keeps the same `{placeholders}`, and the committed learn.mo is
exactly what compiling learn.po gives (bytes, not file times: a clone does not keep them).
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("babel")

from babel.messages.catalog import Catalog  # noqa: E402
from babel.messages.pofile import write_po  # noqa: E402

from lessons.toolkit import catalog_tool  # noqa: E402

LANGUAGES = catalog_tool.TRANSLATED


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    return catalog_tool.extract()


def placeholders(text: str) -> Counter:
    """`{name!r:>4}` -> (name, r, >4): what str.format fills in, with how."""
    fields = Counter()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is not None:
            fields[(name, conversion, spec)] += 1
    return fields


def forms(message) -> list[str]:  # noqa: ANN001
    return list(message.string) if isinstance(message.string, (tuple, list)) else [message.string]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_string_of_the_code_is_translated(extracted: Catalog, language: str) -> None:
    translated = catalog_tool.read(catalog_tool.po_path(language), language)
    missing = []
    for message in extracted:
        if not message.id:
            continue
        found = translated.get(message.id)
        if found is None or found.fuzzy or not all(forms(found)):
            where = ", ".join(f"{file}:{line}" for file, line in message.locations[:2])
            missing.append(f"{message.id!r} ({where})")
    assert missing == [], f"{len(missing)} strings without a {language} translation " \
                          f"(python -m lessons.toolkit.catalog_tool update, then translate):\n" + "\n".join(missing)


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language: str) -> None:
    wrong = []
    for message in catalog_tool.read(catalog_tool.po_path(language), language):
        if not message.id:
            continue
        source = message.id[-1] if isinstance(message.id, (tuple, list)) else message.id  # plural: the plural form
        for form in forms(message):
            if form and placeholders(form) != placeholders(source):
                wrong.append(f"{source!r} -> {form!r}")
    assert wrong == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_committed_mo_is_the_compiled_po(language: str) -> None:
    compiled = catalog_tool.compiled(catalog_tool.read(catalog_tool.po_path(language), language))
    assert catalog_tool.mo_path(language).read_bytes() == compiled, \
        "learn.mo is older than learn.po: python -m lessons.toolkit.catalog_tool compile"


def test_placeholders_are_compared_with_their_conversion_and_format() -> None:
    assert placeholders("{name!r} has {count:,} {count:,}") == Counter({("name", "r", ""): 1, ("count", None, ","): 2})
    assert placeholders("{name}") != placeholders("{name!r}")
    assert placeholders("50%, {{literal}}") == Counter()


def test_parts_fill_and_overrule_the_catalog(tmp_path: Path) -> None:
    catalog = Catalog(locale="zh")
    catalog.add("joined", "")
    catalog.add("left", "旧的说法")
    catalog.add("kept", "不动")
    part = Catalog(locale="zh")
    part.add("joined", "进入了")
    part.add("left", "离开了")
    part.add("kept", "猜的", flags=["fuzzy"])  # unchecked: ignored
    part.add("not in the code", "多余")  # not used by the code: not taken
    with (tmp_path / "helper.po").open("wb") as out:
        write_po(out, part)
    catalog_tool.take_parts(catalog, "zh", tmp_path)
    assert [(m.id, m.string) for m in catalog if m.id] == [("joined", "进入了"), ("left", "离开了"), ("kept", "不动")]
