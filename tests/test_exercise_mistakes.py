"""Every check earns its place: a wrong solution a learner would plausibly write fails it.

tests/exercise_mistakes/<exercise module>/<mistake>.py is one learner's file with one
mistake; its docstring names the check that must catch it (`Caught by: test_name`).
Each is run through the same runner `learn exercise check` uses, several at a time,
with that check alone (the whole set would take minutes), and that check must fail it. A check no mistake fails, or a
mistake no check fails, is a hole a learner's wrong answer slips through.
"""

from __future__ import annotations

import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from lessons.exercises import catalog
from lessons.exercises.catalog import EXERCISES
from lessons.exercises.runner import CheckResult, run_check

MISTAKES = Path(__file__).resolve().parent / "exercise_mistakes"
RUN_TIMEOUT = 600  # every mistake of every exercise, three at a time, on a busy 2-core machine
TIME_LIMIT = 60.0  # per run: a mistake that hangs is stopped by its check's own limit well before
# Most mistakes hang or stay silent, and the check gives up after its deadline: a mistake
# fails the check as surely after 40% of each wait, and the module ends in half the time.
PATIENCE = 0.4
CAUGHT_BY = re.compile(r"^Caught by: (test_\w+)\s*$", re.MULTILINE)
# Runs that mostly wait out a deadline of their check (four workers in turn each wait for the
# others; a second client waits for an answer): they get threads of their own, so
# the other runs use the cores meanwhile instead of queueing behind them.
WAITING_RUNS = ("fork_workers/waits_after_each_fork", "poll_echo/serves_one_client_at_a_time")


def mistake_files() -> list[Path]:
    return sorted(MISTAKES.glob("*/*.py"))


def run_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def expected_check(path: Path) -> str:
    found = CAUGHT_BY.search(path.read_text(encoding="utf-8"))
    assert found, f"{path.name}: its docstring needs a line 'Caught by: test_name'"
    return found.group(1)


@pytest.fixture(scope="module")
def runs() -> dict[Path, Future[CheckResult]]:
    busy, waiting = ThreadPoolExecutor(max_workers=3), ThreadPoolExecutor(max_workers=len(WAITING_RUNS))
    futures = {}
    for path in mistake_files():
        pool = waiting if run_id(path) in WAITING_RUNS else busy
        futures[path] = pool.submit(run_check, catalog.find(path.parent.name), path, TIME_LIMIT,
                                    only=expected_check(path), patience=PATIENCE)
    busy.shutdown(wait=False)
    waiting.shutdown(wait=False)
    return futures


@pytest.mark.timeout(RUN_TIMEOUT)
@pytest.mark.parametrize("path", mistake_files(), ids=run_id)
def test_the_named_check_fails_the_mistake(runs, path: Path) -> None:
    wanted = expected_check(path)
    result = runs[path].result(timeout=RUN_TIMEOUT)
    failed = {check.name.split("[")[0]: check.message for check in result.checks if check.outcome == "failed"}
    assert result.checks, f"{wanted} did not run for {path.name}:\n{result.raw_output[-2000:]}"
    assert not result.passed, f"{path.name} passes {wanted}: a hole.\n{result.raw_output[-2000:]}"
    assert wanted in failed, (f"{path.name} must fail {wanted}; it failed {sorted(failed) or 'nothing'}"
                              f"{' (' + result.runner_problem + ')' if result.runner_problem else ''}")
    assert not any(check.todo or check.file_error for check in result.checks), (
        f"{path.name} failed for another reason (a TODO, or it does not load): {failed}")


def test_every_exercise_has_mistakes_and_every_mistake_names_a_real_check() -> None:
    for exercise in EXERCISES:
        paths = [path for path in mistake_files() if path.parent.name == exercise.module]
        assert len(paths) >= 3, f"{exercise.id} has {len(paths)} recorded mistakes; each check needs one"
        source = exercise.check.read_text(encoding="utf-8")
        if "echo_battery import *" in source:  # the shared echo-server checks count as its own
            source += (exercise.check.parent.parent / "echo_battery.py").read_text(encoding="utf-8")
        checks = set(re.findall(r"^def (test_\w+)", source, re.MULTILINE))
        for path in paths:
            assert expected_check(path) in checks, f"{path.name} names {expected_check(path)}, not a check"
