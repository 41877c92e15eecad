"""Run one exercise's checks against a learner's file, isolated, with a hard time limit.

    run_check(exercise, path) -> CheckResult

The checks run in pytest, in a process tree of their own:

    learn (this module) ── sandbox (child subreaper, own session) ── pytest ── learner's code

The sandbox (sandbox.py) kills the whole tree when time is up and reports whatever
outlived pytest: processes, what they listen on. Ports in the checks are always
ephemeral (bound to port 0) and socket files live in a fresh temporary directory that
is searched for leftovers and removed afterwards, so two checks never collide and a
learner's mistake never outlives the check.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lessons
from lessons.exercises import harness
from lessons.exercises.catalog import Exercise

GRACE = 20.0  # seconds the sandbox gets, beyond the check's limit, to sweep and report
PACKAGE_ROOT = Path(lessons.__file__).resolve().parent.parent


@dataclass
class CheckOutcome:
    """One check (one pytest test): did it pass, and if not, why in the lesson's terms."""

    name: str
    title: str
    outcome: str  # passed, failed, skipped
    message: str = ""
    todo: bool = False  # failed only because the stub's NotImplementedError is still there
    file_error: bool = False  # the learner's file does not even import

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass
class LeakedProcess:
    pid: int
    ppid: int
    state: str
    command: str
    own_session: bool  # it called setsid(): no signal to our group would reach it
    listening: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    exercise_id: str
    checks: list[CheckOutcome]
    exit_code: int | None  # pytest's; None when it was killed at the time limit
    timed_out: bool
    interrupted: bool
    time_limit: float
    elapsed: float
    leaked: list[LeakedProcess]
    leftover_files: list[str]
    running_at_timeout: str | None
    raw_output: str
    runner_problem: str = ""  # the sandbox itself failed (a bug or a broken installation)
    collected: int = 0  # how many checks there are; more than len(checks) when the run was cut short
    followed_orphans: bool = True  # the sandbox became a subreaper, so daemons could not slip away

    @property
    def passed(self) -> bool:
        return (self.exit_code == 0 and bool(self.checks) and all(c.outcome != "failed" for c in self.checks)
                and not (self.timed_out or self.interrupted or self.leaked or self.leftover_files
                         or self.runner_problem))

    @property
    def untouched(self) -> bool:
        """Every failure is a TODO: the learner has not started yet."""
        failed = [check for check in self.checks if check.outcome == "failed"]
        return bool(failed) and all(check.todo for check in failed)


def pytest_argv(exercise: Exercise, workdir: Path) -> list[str]:
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\naddopts =\n", encoding="utf-8")
    return [sys.executable, "-m", "pytest", "-p", "lessons.exercises.plugin", "-p", "no:cacheprovider",
            "-c", str(ini), "--rootdir", str(workdir), "--import-mode=importlib", "-q", "--color=no",
            "-o", "console_output_style=classic", str(exercise.check)]


def check_environment(learner_file: Path, workdir: Path, sockets: Path, report: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        harness.FILE_VARIABLE: str(learner_file.resolve()),
        harness.TEMP_VARIABLE: str(sockets),
        harness.REPORT_VARIABLE: str(report),
        "PYTHONDONTWRITEBYTECODE": "1",  # never write __pycache__ into the installed package
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # only our plugin: fast start, nothing surprising
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])),
    })
    return env


def run_check(exercise: Exercise, learner_file: Path, time_limit: float | None = None) -> CheckResult:
    """Run the exercise's checks against `learner_file`; never raises for the learner's faults."""
    limit = time_limit if time_limit is not None else exercise.time_limit
    with tempfile.TemporaryDirectory(prefix="learn-check-", ignore_cleanup_errors=True) as temp:
        workdir = Path(temp)
        workdir.chmod(0o711)  # others may pass through (a check connects as another user), not list
        sockets = workdir / "s"
        sockets.mkdir()
        sockets.chmod(0o711)
        paths = {name: workdir / name for name in ("report.jsonl", "pytest.out", "sandbox.json", "sandbox.out")}
        config = {"argv": pytest_argv(exercise, workdir), "time_limit": limit, "runner_pid": os.getpid(),
                  "output": str(paths["pytest.out"]), "result": str(paths["sandbox.json"])}
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        env = check_environment(learner_file, workdir, sockets, paths["report.jsonl"])
        runner_problem = supervise(config_path, env, workdir, paths["sandbox.out"], limit)
        return gather(exercise, limit, paths, sockets, runner_problem)


def supervise(config_path: Path, env: dict[str, str], workdir: Path, output: Path, limit: float) -> str:
    """Start the sandbox in a session of its own and wait for it; '' if all went as planned."""
    with open(output, "wb") as out:
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "lessons.exercises.sandbox", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=workdir, start_new_session=True)
    try:
        sandbox.wait(limit + GRACE)
    except KeyboardInterrupt:
        sandbox.send_signal(signal.SIGTERM)  # the sandbox sweeps and reports, then we re-raise
        _wait_or_kill(sandbox)
        raise
    except subprocess.TimeoutExpired:
        _wait_or_kill(sandbox, 0)
        return "the check runner itself did not finish in time and was killed"
    if sandbox.returncode != 0:
        tail = output.read_text(errors="replace")[-2000:]
        return f"the check runner failed (exit code {sandbox.returncode}): {tail}"
    return ""


def _wait_or_kill(process: subprocess.Popen, timeout: float = GRACE) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def gather(exercise: Exercise, limit: float, paths: dict[str, Path], sockets: Path,
           runner_problem: str) -> CheckResult:
    """Merge the plugin's JSON lines, the sandbox's sweep and the leftover files into one result."""
    records = read_records(paths["report.jsonl"])
    sandbox = _read_json(paths["sandbox.json"])
    if not sandbox and not runner_problem:
        runner_problem = "the check runner left no result: " + _read_text(paths["sandbox.out"])[-2000:]
    session = next((r for r in records if r["event"] == "session"), None)
    exit_code = sandbox.get("exit_code")
    timed_out = bool(sandbox.get("timed_out"))
    checks = merge_checks(records)
    running = unfinished(records) if (timed_out or session is None) else None
    if running is not None:
        checks.append(CheckOutcome(running["name"], running["title"], "failed",
                                   message=cut_short(timed_out, exit_code)))
    return CheckResult(
        exercise_id=exercise.id,
        checks=checks,
        exit_code=exit_code,
        timed_out=timed_out,
        interrupted=bool(sandbox.get("interrupted")),
        time_limit=limit,
        elapsed=float(sandbox.get("elapsed", 0.0)),
        leaked=[LeakedProcess(**leak) for leak in sandbox.get("leaked", [])],
        leftover_files=leftover_sockets(sockets),
        running_at_timeout=running["title"] if running and timed_out else None,
        collected=next((r["count"] for r in records if r["event"] == "collected"), len(checks)),
        followed_orphans=bool(sandbox.get("subreaper", True)),
        raw_output=_read_text(paths["pytest.out"]),
        runner_problem=runner_problem or ("" if session or timed_out or running or exit_code is None
                                          else _collection_problem(exit_code)),
    )


def merge_checks(records: list[dict]) -> list[CheckOutcome]:
    """One outcome per test: the first failing phase wins (setup, call, teardown)."""
    checks: dict[str, CheckOutcome] = {}
    for record in records:
        if record["event"] != "result":
            continue
        current = checks.get(record["nodeid"])
        if current is not None and current.outcome == "failed":
            continue
        checks[record["nodeid"]] = CheckOutcome(
            name=record["name"], title=record["title"], outcome=record["outcome"],
            message=record.get("message", ""), todo=bool(record.get("todo")),
            file_error=bool(record.get("file_error")))
    return list(checks.values())


def read_records(path: Path) -> list[dict]:
    records = []
    for line in _read_text(path).splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
    return records


def leftover_sockets(root: Path) -> list[str]:
    """Socket files still in the check's directory: a server that did not clean up."""
    found = []
    for path in sorted(root.rglob("*")):
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                found.append(str(path.relative_to(root)))
        except OSError:
            continue
    return found


def cut_short(timed_out: bool, exit_code: int | None) -> str:
    """Why the check that was running never reported."""
    if timed_out:
        return "still running when the time limit was reached: it was stopped."
    if exit_code is not None and exit_code < 0:
        return (f"the process running the checks was killed by signal {-exit_code} during this check "
                "(did your code signal its own process group, or exhaust the memory?).")
    return f"the process running the checks ended during this check (exit code {exit_code}): os._exit() or exec()?"


def unfinished(records: list[dict]) -> dict | None:
    """The check that had started and not finished: the one running when time was up."""
    finished = {r["nodeid"] for r in records if r["event"] == "finish"}
    pending = [r for r in records if r["event"] == "start" and r["nodeid"] not in finished]
    return pending[-1] if pending else None


def _collection_problem(exit_code: int) -> str:
    return f"pytest stopped before running the checks (exit code {exit_code}); see --verbose."


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
