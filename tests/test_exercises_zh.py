"""The exercises in Chinese: twin stubs and hints that cannot drift, a workspace that keeps
its language, and check messages that reach the learner in it.

A zh stub must be the English stub with only its comments, docstrings and TODO texts
translated: both parse to the same tree once those are taken out. A zh hints file has the
same tiers and the very same code blocks. The messages come from the gettext catalog
(learn.po; tests/test_catalog.py makes sure the compiled learn.mo says the same).
"""

from __future__ import annotations

import ast
import io
import json

import re
import tokenize
from pathlib import Path
from typing import Iterator

import pytest
from babel.messages.pofile import read_po
from typer.testing import CliRunner

from lessons.cli import app
from lessons.exercises import catalog
from lessons.exercises.catalog import EXERCISES, Exercise
from lessons.exercises.runner import run_check
from lessons.exercises.workspace import Workspace
from lessons.toolkit import i18n

MESSAGES = Path(i18n.LOCALE_DIR) / "zh" / "LC_MESSAGES"
CATALOG = MESSAGES / "learn.po"
MISTAKES = Path(__file__).resolve().parent / "exercise_mistakes"
HAN = re.compile(r"[\u4e00-\u9fff]")
FIELD = re.compile(r"\{[^{}]*\}")
ENGLISH_RUN = re.compile(r"\b[A-Za-z]+(?:'[a-z]+)?(?:[ ,]+[A-Za-z]+(?:'[a-z]+)?){2,}\b")
cli = CliRunner()


# ----- the stubs: the same code, in two languages --------------------------------------


def code_only(source: str) -> str:
    """The parsed tree without docstrings, and with every TODO text of a NotImplementedError blanked."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and getattr(node.exc.func, "id", "") == "NotImplementedError":
            for argument in node.exc.args:
                if isinstance(argument, ast.Constant) and str(argument.value).startswith("TODO"):
                    argument.value = "TODO"
    return ast.dump(tree)


def test_code_only_sees_code_and_nothing_else() -> None:
    english = 'def f():\n    """Doc."""\n    # a comment\n    raise NotImplementedError("TODO: write f()")\n'
    chinese = 'def f():\n    """文档。"""\n    # 注释\n    raise NotImplementedError("TODO：写出 f()")\n'
    assert code_only(english) == code_only(chinese)
    assert code_only(english) != code_only(english.replace("raise", "x = 1\n    raise"))
    assert code_only(english) != code_only(english.replace('"TODO: write f()"', '"write f()"'))


@pytest.mark.parametrize("kind", ["stub", "solution"])
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_the_zh_file_is_the_english_file_translated(exercise: Exercise, kind: str) -> None:
    in_language = exercise.stub_in if kind == "stub" else exercise.solution_in
    english, chinese = in_language("en"), in_language("zh")
    assert chinese.is_file(), f"{exercise.id} has no {chinese.name}"
    text = chinese.read_text(encoding="utf-8")
    assert code_only(text) == code_only(english.read_text(encoding="utf-8")), (
        f"{chinese.name} of {exercise.id} differs from {english.name} in its code, not only in comments, "
        "docstrings and TODO texts")
    assert HAN.search(ast.get_docstring(ast.parse(text)) or ""), f"{chinese.name}: its docstring is not Chinese"
    for comment in comments(text):
        assert HAN.search(comment) or is_code(comment), f"{chinese.name}: an untranslated comment: {comment}"
    assert text.count("TODO") == english.read_text(encoding="utf-8").count("TODO")


def comments(source: str) -> list[str]:
    return [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]


def is_code(comment: str) -> bool:
    """A comment line that continues code written in a TODO (`#   [Send(conn, ...)),`)."""
    return bool(re.fullmatch(r"#\s+[\w\[(].*[,)\]。]", comment)) and "(" in comment


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```.*?^```", text, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_the_zh_hints_have_the_same_tiers_and_code(exercise: Exercise) -> None:
    english, chinese = exercise.hints("en"), exercise.hints("zh")
    assert len(chinese) == len(english) == len(catalog.HINT_TIERS), f"{exercise.id}: tiers differ"
    prose = [re.sub(r"^```.*?^```", "", tier, flags=re.MULTILINE | re.DOTALL).strip() for tier in chinese]
    assert all(HAN.search(text) for text in prose if text), f"{exercise.id}: a zh hint tier is not Chinese"
    for number, (en_tier, zh_tier) in enumerate(zip(english, chinese), 1):
        assert code_blocks(zh_tier) == code_blocks(en_tier), f"{exercise.id}: tier {number} changed its code"


# ----- the catalog ---------------------------------------------------------------------


def test_every_message_is_translated_into_chinese_with_the_same_fields() -> None:
    with open(CATALOG, "rb") as source:
        part = read_po(source)
    assert part.locale and str(part.locale) == "zh"
    for message in part:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings) and not message.fuzzy, f"untranslated: {ids[0]!r}"
        for string in strings:
            assert sorted(FIELD.findall(ids[-1])) == sorted(FIELD.findall(string)), (
                f"the translation of {ids[0]!r} has other {{fields}}: {string!r}")
            assert HAN.search(string) or not ENGLISH_RUN.search(ids[0]), f"not Chinese: {string!r}"


def check_markers(exercise: Exercise) -> list[tuple[str, str, str | None]]:
    """(check, marker, its text) for the title and if_hangs markers of every check of `exercise`."""
    source = exercise.check.read_text(encoding="utf-8")
    if "echo_battery import *" in source:
        source += (Path(catalog.__file__).parent / "echo_battery.py").read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            markers = {decorator.func.attr: decorator.args[0] for decorator in node.decorator_list
                       if isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)}
            for name in ("title", "if_hangs"):
                if name in markers or name == "title":
                    marker = markers.get(name)
                    is_marked = isinstance(marker, ast.Call) and getattr(marker.func, "id", "") == "N_"
                    found.append((node.name, name, ast.literal_eval(marker.args[0]) if is_marked else None))
    return found


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_every_check_has_a_title_the_catalog_translates(exercise: Exercise) -> None:
    """Titles and if_hangs advice are N_() marked, so that extraction finds them, and translated."""
    with open(CATALOG, "rb") as source:
        part = read_po(source)
    for check, marker, text in check_markers(exercise):
        assert text is not None, f"{exercise.id}: {check} needs @pytest.mark.{marker}(N_(\"...\"))"
        assert part.get(text) is not None and part.get(text).string, f"{exercise.id}: no zh for {text!r}"
    assert part.get(exercise.title) is not None, f"no zh for the title of {exercise.id}"


# ----- the learner's language, in this process and in the checks' processes -----------------


@pytest.fixture
def in_chinese(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The language comes from the workspace (or LEARN_LANG), never from a test before."""
    monkeypatch.delenv("LEARN_LANG", raising=False)
    yield Path(i18n.LOCALE_DIR)
    i18n.use_language("en")  # the next test starts in English, as from a fresh `learn`


def invoke(*args: str):
    return cli.invoke(app, list(args), prog_name="learn", env={"COLUMNS": "200"})


def test_a_zh_workspace_has_zh_stubs_hints_and_list(in_chinese: Path, tmp_path: Path) -> None:
    space = tmp_path / "ws"
    created = invoke("exercise", "init", "--lang", "zh", str(space))
    assert created.exit_code == 0, created.output
    assert "工作区" in created.output
    assert json.loads((space / "progress.json").read_text())["language"] == "zh"
    for exercise in EXERCISES:
        assert (space / exercise.file_name).read_bytes() == exercise.stub_in("zh").read_bytes()
    assert HAN.search((space / "README.md").read_text(encoding="utf-8"))

    hint = invoke("exercise", "hint", "frames", "-w", str(space))
    assert hint.exit_code == 0, hint.output
    assert "点拨" in hint.output and "最多 n 个字节" in hint.output, hint.output
    listed = invoke("exercise", "list", "-w", str(space))
    assert "未开始" in listed.output and "not started" not in listed.output, listed.output

    shown = invoke("exercise", "solution", "proc-reader", "--give-up", "--yes", "-w", str(space))
    added = [line for line in shown.output.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added, shown.output
    assert all(HAN.search(line.partition("#")[2]) for line in added if "#" in line), (
        "the diff from a zh stub to the solution brings English comments:\n" + shown.output)

    (space / "frames.py").write_text("# mine\n", encoding="utf-8")
    assert invoke("exercise", "reset", "frames", "--yes", "-w", str(space)).exit_code == 0
    assert (space / "frames.py").read_bytes() == catalog.find("frames").stub_in("zh").read_bytes()


def test_the_workspace_keeps_its_language_unless_learn_lang_says_otherwise(
        in_chinese: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    space, _created, _kept = Workspace.init(tmp_path / "ws")
    assert space.language == "zh", "a new workspace takes the language rule's language"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert Workspace.load(space.root).speaking == "zh", "later commands keep the workspace's language"
    again, _created, _kept = Workspace.init(space.root)
    assert again.language == "zh", "init without --lang keeps an existing workspace's language"
    monkeypatch.setenv("LEARN_LANG", "en")
    assert Workspace.load(space.root).speaking == "en"
    assert invoke("exercise", "hint", "proc-reader", "-w", str(space.root)).output.startswith("Hint 1 of 3")
    shown = Workspace.load(space.root)
    assert shown.status(catalog.find("frames")) == "not started"
    (space.root / "frames.py").write_bytes(catalog.find("frames").stub_in("en").read_bytes())
    assert shown.status(catalog.find("frames")) == "not started", "either language's stub is untouched"


def test_a_wrong_language_is_one_sentence(tmp_path: Path) -> None:
    refused = invoke("exercise", "init", "--lang", "fr", str(tmp_path / "ws"))
    assert refused.exit_code == 2 and "fr" in refused.output and "Traceback" not in refused.output


def english_runs(text: str) -> list[str]:
    """Runs of three or more English words, outside `code`, identifiers, paths and hexdumps."""
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\b[\w./-]*[_./()\[\]][\w./()\[\]-]*", " ", text)  # identifiers, calls, files
    return [run for run in ENGLISH_RUN.findall(text) if not re.fullmatch(r"(?:[A-Z_]+[ ,]*)+", run)]


def test_a_fresh_zh_stub_is_reported_in_chinese(in_chinese: Path, tmp_path: Path) -> None:
    space = tmp_path / "ws"
    assert invoke("exercise", "init", "--lang", "zh", str(space)).exit_code == 0
    checked = invoke("exercise", "check", "frames", "-w", str(space))
    assert checked.exit_code == 1, checked.output
    assert "还没开始" in checked.output and "TODO：写出 recv_exact()" in checked.output, checked.output
    assert english_runs(checked.output) == [], checked.output


# ----- wrong answers, told in Chinese ---------------------------------------------------

# mistake file -> words its Chinese message must contain
REPRESENTATIVE = {
    "frames/recv_returns_short_at_eof.py": "抛出 EOFError",
    "proc_reader/splits_the_whole_line.py": "最后一个 ')'",
    "fork_workers/forgets_to_wait.py": "僵尸进程",
    "poll_echo/the_notes_keyerror.py": "讲义里的那个错误",
}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_a_wrong_answer_is_told_in_chinese(in_chinese: Path, name: str) -> None:
    path = MISTAKES / name
    assert path.is_file(), f"no recorded mistake {name}"
    wanted = re.search(r"^Caught by: (test_\w+)", path.read_text(encoding="utf-8"), re.MULTILINE).group(1)
    result = run_check(catalog.find(path.parent.name), path, 60.0, only=wanted, language="zh")
    failed = {check.name.split("[")[0]: check for check in result.checks if check.outcome == "failed"}
    assert wanted in failed, f"{name} must fail {wanted}: {result.raw_output[-2000:]}"
    check = failed[wanted]
    assert HAN.search(check.title), f"the check's title is not Chinese: {check.title}"
    assert REPRESENTATIVE[name] in check.message, check.message
    assert english_runs(check.message) == [], check.message


def test_chinese_report_lines_wrap_by_terminal_cells() -> None:
    """A Chinese character takes two columns: the report wraps by cells, never before a closing ，。"""
    from rich.cells import cell_len

    from lessons.exercises.report import wrap

    message = "read_process() 返回了 state='Z'；/proc 里写的是 state='S'（从最后一个 ')' 往后数字段，" * 3
    lines = wrap(message, 40, "  ")
    assert len(lines) > 3 and all(cell_len(line) <= 40 and line.startswith("  ") for line in lines), lines
    assert not any(line.strip()[0] in "，。）" for line in lines), lines
    assert "".join(lines).replace(" ", "") == message.replace(" ", ""), "nothing lost"
    english = "the check did not finish within 90 s and was stopped; everything it had started was killed."
    assert wrap(english, 40) == __import__("textwrap").wrap(english, 40, break_on_hyphens=False)
