"""The pytest plugin every check runs with (`pytest -p lessons.exercises.plugin`).

It gives checks the `learner` fixture (the learner's file, imported by path), puts a
time limit on each check (SIGALRM interrupts learner code stuck in recv() or a loop),
and writes one JSON line per check result for the runner, with the failure already in
the lesson's terms: the check's own message, or where in the learner's file the code
raised. The runner never has to parse pytest's text output.
"""

from __future__ import annotations

import errno
import json
import os
import signal
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator

import pytest

from lessons.exercises import harness
from lessons.toolkit.i18n import _

DEFAULT_LIMIT = 20.0  # seconds one check may take on a busy machine; @pytest.mark.limit(s) overrides

_loaded: ModuleType | harness.LearnerFileError | None = None


class CheckTimeout(BaseException):
    """Raised inside the running code when a check's time is up.

    A BaseException, like KeyboardInterrupt, so that a learner's `except Exception:`
    in a retry loop cannot swallow it and spin on until the hard time limit.
    """


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "limit(seconds): how long this check may run")
    config.addinivalue_line("markers", "if_hangs(text): what to tell the learner when their code hangs here")
    config.addinivalue_line("markers", "title(text): the check's name as the learner reads it")


@pytest.fixture
def learner() -> ModuleType:
    """The learner's module, imported once; a file that does not import fails every check."""
    global _loaded
    if _loaded is None:
        try:
            _loaded = harness.load_learner_module(harness.learner_path())
        except harness.LearnerFileError as err:
            _loaded = err
    if isinstance(_loaded, harness.LearnerFileError):
        pytest.fail(str(_loaded), pytrace=False)
    return _loaded


# ----- a time limit on every phase of every check -------------------------------------


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout(_("still running after {seconds} s").format(seconds=f"{seconds:g}"))

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def limit_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("limit")
    return harness.patience(float(marker.args[0]) if marker else DEFAULT_LIMIT)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    write_line({"event": "start", "nodeid": item.nodeid, "name": item.name, "title": title_of(item)})
    with time_limit(limit_of(item)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with time_limit(limit_of(item)):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Any:
    with time_limit(limit_of(item)):
        return (yield)


# ----- the report the runner reads ----------------------------------------------------


def write_line(record: dict[str, Any]) -> None:
    path = os.environ.get(harness.REPORT_VARIABLE)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def title_of(item: pytest.Item) -> str:
    """The check's title marker in the learner's language (its function's name if it has none)."""
    marker = item.get_closest_marker("title")
    title = _(marker.args[0]) if marker else getattr(item, "originalname", item.name)
    callspec = getattr(item, "callspec", None)
    return f"{title} [{callspec.id}]" if callspec else title


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    write_line({"event": "finish", "nodeid": nodeid})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed or report.skipped or call.when == "call":  # setup/teardown only when they fail
        record = {"event": "result", "nodeid": item.nodeid, "name": item.name, "title": title_of(item),
                  "when": call.when, "outcome": report.outcome, "message": "", "todo": False}
        if call.excinfo is not None and report.failed:
            record.update(explain(call.excinfo.value, item))
        elif report.skipped and isinstance(report.longrepr, tuple):
            record["message"] = str(report.longrepr[2]).removeprefix("Skipped: ")
        write_line(record)
    return report


def explain(error: BaseException, item: pytest.Item | None = None) -> dict[str, Any]:
    """A failure in the lesson's terms, and whether it is just an untouched TODO."""
    if isinstance(error, pytest.fail.Exception):
        file_error = isinstance(_loaded, harness.LearnerFileError) and str(error.msg) == str(_loaded)
        return {"message": str(error.msg), "file_error": file_error}
    if isinstance(error, AssertionError):
        text = str(error).split("\nassert ")[0].strip()
        return {"message": text or _("a check failed without saying why (a bug in the check).")}
    over = over_a_limit(error)
    if over:
        return {"message": over}
    if harness.is_todo(error):
        return {"message": harness.todo_text(error), "todo": True}
    if isinstance(error, harness.NotStarted):
        return {"message": str(error), "todo": True}
    if isinstance(error, CheckTimeout):
        return took_too_long(error, item)
    if harness.learner_frame(error.__traceback__) is not None:
        return {"message": _("your code raised {error}").format(error=harness.describe_exception(error))}
    return {"message": _("the check could not go on: {error}").format(error=harness.describe_exception(error))}


def took_too_long(error: CheckTimeout, item: pytest.Item | None) -> dict[str, Any]:
    """'this check took longer than 10 s: your code was still running, at frames.py line 12: ...'."""
    limit = limit_of(item) if item is not None else harness.patience(DEFAULT_LIMIT)
    place = harness.where(error.__traceback__)
    if place:
        marker = item.get_closest_marker("if_hangs") if item is not None else None
        advice = _(marker.args[0]) if marker else _("Something waits forever: a blocking call with no data "
                                                 "coming, or a loop that never ends.")
        reason = _("your code was still running, at {place}. {advice}").format(place=place, advice=advice)
    else:
        reason = _("it gave up waiting for your code.")
    return {"message": _("this check took longer than {limit} s: {reason}").format(limit=f"{limit:g}", reason=reason),
            "timed_out": True, "limit": limit, "reason": reason}


def over_a_limit(error: BaseException) -> str:
    """The sandbox's limits, in the learner's words; '' if `error` is not about one."""
    if isinstance(error, MemoryError):
        return _("your code used more than {size} of memory (the check's limit){place}: is something "
                 "growing without end, or reading a whole stream into memory?").format(
            size=harness.human_size(os.environ.get("LEARN_MEMORY_LIMIT")), place=_at(error))
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        return _("your code wrote a file larger than {size} (the check's limit){place}.").format(
            size=harness.human_size(os.environ.get("LEARN_FILE_LIMIT")), place=_at(error))
    return ""


def _at(error: BaseException) -> str:
    place = harness.where(error.__traceback__)
    return _(", at {place}").format(place=place) if place else ""


def pytest_collection_finish(session: pytest.Session) -> None:
    write_line({"event": "collected", "count": len(session.items)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    write_line({"event": "session", "collected": session.testscollected, "exitstatus": int(exitstatus)})
