"""Choosing the language: `learn --lang`, then LEARN_LANG, then the locale, else English."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lessons.toolkit import i18n


def test_the_root_option_is_found_before_the_command_word() -> None:
    assert i18n.language_from_argv(["--lang", "zh", "list"]) == "zh"
    assert i18n.language_from_argv(["--lang=en", "run", "fork-demo"]) == "en"
    assert i18n.language_from_argv(["list"]) is None
    assert i18n.language_from_argv(["chat", "join", "--lang", "zh"]) is None  # that one is join's own option
    assert i18n.language_from_argv(["--lang"]) is None


def test_an_explicit_choice_is_passed_on_to_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEARN_LANG", "")  # recorded, so undo() removes what use_language sets
    monkeypatch.setenv("LANG", "C.UTF-8")
    try:
        assert i18n.use_language("zh") == "zh"
        assert i18n._("error:") == "错误："
        child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['LEARN_LANG'])"],
                               capture_output=True, text=True, check=True)
        assert child.stdout.strip() == "zh"
    finally:
        monkeypatch.undo()
        i18n.use_language(None)
    assert os.environ.get("LEARN_LANG") != "zh"


def test_the_environment_decides_when_no_option_is_given() -> None:
    assert i18n.language_from_environment({"LANG": "zh_TW.UTF-8"}) == "zh"
    assert i18n.language_from_environment({"LANG": "zh_CN.UTF-8", "LEARN_LANG": "en"}) == "en"
    assert i18n.language_from_environment({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}) == "en"
    assert i18n.language_from_environment({"LANG": "en_US.UTF-8"}) == "en"
