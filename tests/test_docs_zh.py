"""The Chinese pages keep step with the English ones (issue 14).

Every English page has a twin in docs/zh/ (README.md has README.zh.md). A twin says the
same things in Chinese, so what a learner copies from it must be what the English page
has: the same code blocks, the same `learn ...` commands, in the same order, under the
same headings. Line 1 records the English page's hash; when the English page changes
since, the twin is stale: a warning here and a note in `learn show`, never a failure.
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from lessonrun import child_env
from markdown_it import MarkdownIt
from rich.cells import cell_len
from rich.console import Console
from rich.markdown import Markdown
from typer.testing import CliRunner

from lessons import catalog, pages
from lessons.cli import app
from lessons.toolkit import i18n, widewrap

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
ZH = DOCS / "zh"
ZH_ONLY = {ZH / "glossary.md"}  # the translators' word list has no English original
# Other helpers translate pages in parallel; the lead sets this to False when all are merged.
MISSING_TWINS_ARE_EXPECTED = False


def english_pages() -> list[Path]:
    return [REPO / "README.md", *sorted(path for path in DOCS.rglob("*.md") if ZH not in path.parents)]


def twin(english: Path) -> Path:
    if english == REPO / "README.md":
        return REPO / "README.zh.md"
    return ZH / english.relative_to(DOCS)


def source_name(english: Path) -> str:
    """How a header names the English page: its path in the repository."""
    return str(english.relative_to(REPO))


PAIRS = [(english, twin(english)) for english in english_pages() if twin(english).is_file()]
PAIR_IDS = [source_name(english) for english, _ in PAIRS]


def test_every_english_page_has_a_chinese_twin():
    missing = [str(twin(english).relative_to(REPO)) for english in english_pages() if not twin(english).is_file()]
    if missing and MISSING_TWINS_ARE_EXPECTED:
        pytest.xfail(f"{len(missing)} pages not translated yet: {', '.join(missing)}")
    assert not missing, f"pages with no Chinese twin: {', '.join(missing)}"


def test_every_chinese_page_has_an_english_original():
    twins = {zh for _, zh in PAIRS}
    orphans = [str(path.relative_to(REPO)) for path in sorted(ZH.rglob("*.md")) if path not in twins | ZH_ONLY]
    assert not orphans, f"Chinese pages with no English page at the same path: {orphans}"


# ---------------------------------------------------------------- what a pair must share

PARSER = MarkdownIt("commonmark")


def code_blocks(markdown: str) -> list[str]:
    """Fenced and indented code blocks, in order."""
    return [token.content for token in PARSER.parse(markdown) if token.type in ("fence", "code_block")]


def learn_commands(markdown: str) -> list[str]:
    """Every `learn ...` a learner could copy: inline code, and code-block lines (after a `$ `)."""
    found = []
    for token in PARSER.parse(markdown):
        if token.type == "inline":
            found += [child.content for child in token.children or [] if child.type == "code_inline"
                      and child.content.startswith("learn ")]
        elif token.type in ("fence", "code_block"):
            lines = (line.strip().removeprefix("$ ") for line in token.content.splitlines())
            found += [line for line in lines if line.startswith("learn ")]
    return found


def heading_levels(markdown: str) -> list[str]:
    return [token.tag for token in PARSER.parse(markdown) if token.type == "heading_open"]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=PAIR_IDS)
def test_the_code_blocks_are_identical_and_in_order(english: Path, chinese: Path) -> None:
    ours, theirs = code_blocks(read(chinese)), code_blocks(read(english))
    assert len(ours) == len(theirs), f"{chinese.name}: {len(ours)} code blocks, the English page has {len(theirs)}"
    for number, (block, original) in enumerate(zip(ours, theirs), start=1):
        assert block == original, f"{chinese.name}: code block {number} differs from the English one"


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=PAIR_IDS)
def test_the_learn_commands_are_identical_and_in_order(english: Path, chinese: Path) -> None:
    ours, theirs = learn_commands(read(chinese)), learn_commands(read(english))
    missing = [command for command in theirs if theirs.count(command) > ours.count(command)]
    extra = [command for command in ours if ours.count(command) > theirs.count(command)]
    assert not missing and not extra, f"{chinese.name}: missing {sorted(set(missing))}, extra {sorted(set(extra))}"
    assert ours == theirs, f"{chinese.name}: the same commands, in another order"


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=PAIR_IDS)
def test_the_headings_have_the_same_structure(english: Path, chinese: Path) -> None:
    assert heading_levels(read(chinese)) == heading_levels(read(english))


@pytest.mark.parametrize(("english", "chinese"), PAIRS, ids=PAIR_IDS)
def test_line_one_records_the_english_page(english: Path, chinese: Path) -> None:
    header = pages.header_of(read(chinese))
    first_line = read(chinese).partition("\n")[0]
    assert header is not None, (f"{chinese.name}: line 1 should be "
                                f"`<!-- translated-from: {source_name(english)} sha256:<12 hex digits> -->`, "
                                f"not {first_line!r}")
    assert header["source"] == source_name(english)


def stale(pairs: list[tuple[Path, Path]]) -> list[Path]:
    """The English pages that changed since their twin was translated from them."""
    return [english for english, chinese in pairs
            if (header := pages.header_of(read(chinese))) and header["digest"] != pages.short_hash(english)]


def test_stale_translations_are_reported_not_failed():
    """A twin of a changed page is listed in a warning; the lead decides when to bring it up to date."""
    changed = [source_name(english) for english in stale(PAIRS)]
    if changed:
        warnings.warn(f"the English page changed since it was translated: {', '.join(changed)}", stacklevel=1)


def test_a_changed_english_page_makes_its_twin_stale(tmp_path: Path) -> None:
    english, chinese = tmp_path / "page.md", tmp_path / "zh.md"
    english.write_text("# A page\n", encoding="utf-8")
    chinese.write_text(f"<!-- translated-from: docs/page.md sha256:{pages.short_hash(english)} -->\n# 一页\n",
                       encoding="utf-8")
    assert stale([(english, chinese)]) == []
    english.write_text("# A page, changed\n", encoding="utf-8")
    assert stale([(english, chinese)]) == [english]


def test_the_checks_see_what_they_compare():
    """The extraction itself works: on poll-server it finds the blocks, commands and headings there are."""
    page = read(DOCS / "lessons" / "poll-server.md")
    assert "learn run poll-server --demo\n" in code_blocks(page)
    assert learn_commands(page)[:2] == ["learn run poll-server --demo", "learn run poll-server --notes-bug --demo"]
    assert "learn show poll-server --source" in learn_commands(page)
    assert heading_levels(page)[:2] == ["h1", "h2"]
    assert code_blocks("text\n\n    indented\n\n```\nfenced\n```\n") == ["indented\n", "fenced\n"]


# ---------------------------------------------------------------- `learn show` in Chinese

def shown(language_variable: str) -> str:
    env = {key: value for key, value in child_env().items()
           if key not in ("LEARN_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    env["LANG"] = language_variable
    done = subprocess.run([sys.executable, "-m", "lessons", "show", "poll-server"], cwd=REPO, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def title(page: Path) -> str:
    return next(line for line in read(page).splitlines() if line.startswith("# ")).removeprefix("# ")


def test_show_in_a_chinese_locale_is_the_chinese_page():
    output = shown("zh_CN.UTF-8")
    assert title(ZH / "lessons" / "poll-server.md") in output
    assert title(DOCS / "lessons" / "poll-server.md") not in output
    assert "translated-from" not in output  # the header is for the tests, not the learner


def test_show_in_the_c_locale_is_the_english_page():
    output = shown("C.UTF-8")
    assert title(DOCS / "lessons" / "poll-server.md") in output
    assert title(ZH / "lessons" / "poll-server.md") not in output


@pytest.fixture
def chinese_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A docs tree of our own, with `learn show` in Chinese: poll-server has a twin, epoll-server none."""
    (tmp_path / "lessons").mkdir()
    (tmp_path / "zh" / "lessons").mkdir(parents=True)
    for lesson in ("poll-server", "epoll-server"):
        (tmp_path / "lessons" / f"{lesson}.md").write_text(f"# {lesson} in English\n", encoding="utf-8")
    monkeypatch.setattr(catalog, "docs_root", lambda: tmp_path)
    with monkeypatch.context() as environment:
        def choose(language: str) -> None:
            environment.setenv("LEARN_LANG", language)
            i18n.use_language(language)

        choose("zh")
        yield tmp_path, choose
    i18n.use_language(None)  # back to what the real environment says


def translate(root: Path, lesson: str, digest: str) -> None:
    header = f"<!-- translated-from: docs/lessons/{lesson}.md sha256:{digest} -->"
    (root / "zh" / "lessons" / f"{lesson}.md").write_text(f"{header}\n# {lesson} 中文版\n", encoding="utf-8")


def show(lesson: str) -> str:
    """What `learn show` prints, without the spaces and line breaks rich wraps it with."""
    result = CliRunner().invoke(app, ["show", lesson])
    assert result.exit_code == 0, result.output
    return "".join(result.output.split())


def note(message: str) -> str:
    return "".join(i18n._(message).split())


NO_TWIN = "This page has no translation in your language yet; here is the English page."
CHANGED = "The English page has changed since this page was translated; LEARN_LANG=en shows the newest text."


def test_a_page_without_a_twin_is_english_after_one_note(chinese_docs) -> None:
    assert show("epoll-server") == note(NO_TWIN) + "epoll-serverinEnglish"


def test_an_up_to_date_twin_is_shown_without_its_header_or_a_note(chinese_docs) -> None:
    root, _ = chinese_docs
    translate(root, "poll-server", pages.short_hash(root / "lessons" / "poll-server.md"))
    assert show("poll-server") == "poll-server中文版"


def test_a_twin_of_a_changed_page_is_shown_after_one_note(chinese_docs) -> None:
    root, _ = chinese_docs
    translate(root, "poll-server", "0123456789ab")
    assert show("poll-server") == note(CHANGED) + "poll-server中文版"


def test_english_is_english_even_where_a_twin_exists(chinese_docs) -> None:
    root, choose = chinese_docs
    translate(root, "poll-server", "0123456789ab")
    choose("en")
    assert show("poll-server") == "poll-serverinEnglish"


# ---------------------------------------------------------------- Chinese lines wrap like Chinese

def rendered(markdown: str, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    widewrap.allow_breaks_between_wide_characters()  # what `learn` does at start-up
    console.print(Markdown(markdown))
    return [line.rstrip() for line in console.export_text().splitlines() if line.strip()]


def test_chinese_lines_are_full_and_never_start_with_a_comma():
    paragraph = ("一个客户端只发不读，会先填满自己的接收缓冲区（receive buffer），再填满服务器的发送缓冲区"
                 "（send buffer）。从这时起，`send()` 只能发出回答的一部分。")
    lines = rendered(paragraph, 30)
    assert "".join("".join(lines).split()) == "".join(paragraph.replace("`", "").split())  # nothing lost
    assert not [line for line in lines if line[0] in widewrap.CLOSING], lines
    assert all(cell_len(line) >= 30 - 12 for line in lines[:-1]), lines  # no ragged gap wider than one Latin word
