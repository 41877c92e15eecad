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

import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lessons
from lessons.exercises import harness
from lessons.exercises.containment import Containment
from lessons.toolkit.i18n import _
from lessons.exercises.catalog import Exercise

GRACE = 20.0  # seconds the sandbox gets, beyond the check's limit, to sweep and report
MEMORY_LIMIT = 1 << 30  # bytes of address space for the checks and the learner's code (RLIMIT_AS)
FILE_LIMIT = 64 << 20  # bytes: the largest file the checks and the learner's code may write (RLIMIT_FSIZE)
MEMORY_VARIABLE = "LEARN_MEMORY_LIMIT"  # tell the plugin, so that it can say which limit was hit
FILE_VARIABLE = "LEARN_FILE_LIMIT"
_runs = itertools.count(1)
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
    runner_killed_by: int | None = None  # the signal that ended the sandbox: the learner's code sent it?
    escaped: list[int] = field(default_factory=list)  # pids the runner itself had to kill (after the sandbox died)
    memory_limit: int = MEMORY_LIMIT
    file_limit: int = FILE_LIMIT
    collected: int = 0  # how many checks there are; more than len(checks) when the run was cut short
    followed_orphans: bool = True  # the sandbox became a subreaper, so daemons could not slip away

    @property
    def passed(self) -> bool:
        return (self.exit_code == 0 and bool(self.checks) and all(c.outcome != "failed" for c in self.checks)
                and not (self.timed_out or self.interrupted or self.leaked or self.leftover_files
                         or self.runner_problem or self.runner_killed_by or self.escaped))

    @property
    def untouched(self) -> bool:
        """Every failure is a TODO: the learner has not started yet."""
        failed = [check for check in self.checks if check.outcome == "failed"]
        return bool(failed) and all(check.todo for check in failed)


def pytest_argv(exercise: Exercise, workdir: Path, only: str | None = None) -> list[str]:
    """pytest on the exercise's checks; `only` names one check (a test function) to run alone."""
    ini = workdir / "pytest.ini"
    ini.write_text("[pytest]\naddopts =\n", encoding="utf-8")
    target = f"{exercise.check}::{only}" if only else str(exercise.check)
    return [sys.executable, "-m", "pytest", "-p", "lessons.exercises.plugin", "-p", "no:cacheprovider",
            "-c", str(ini), "--rootdir", str(workdir), "--import-mode=importlib", "-q", "--color=no",
            "-o", "console_output_style=classic", target]


def check_environment(learner_file: Path, workdir: Path, sockets: Path, report: Path,
                      limits: tuple[int, int] = (MEMORY_LIMIT, FILE_LIMIT),
                      language: str | None = None, patience: float | None = None) -> dict[str, str]:
    """The checks' environment; `language` (zh, en) is what their messages are written in."""
    env = dict(os.environ)
    if language:
        env["LEARN_LANG"] = language  # the checks' _() follows the language rule, LEARN_LANG first
    if patience is not None:
        env[harness.PATIENCE_VARIABLE] = str(patience)
    env.update({
        MEMORY_VARIABLE: str(limits[0]),
        FILE_VARIABLE: str(limits[1]),
        harness.FILE_VARIABLE: str(learner_file.resolve()),
        harness.TEMP_VARIABLE: str(sockets),
        harness.REPORT_VARIABLE: str(report),
        "PYTHONDONTWRITEBYTECODE": "1",  # never write __pycache__ into the installed package
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # only our plugin: fast start, nothing surprising
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])),
    })
    return env


Progress = Callable[[dict], None]


def run_check(exercise: Exercise, learner_file: Path, time_limit: float | None = None,
              progress: Progress | None = None, memory_limit: int = MEMORY_LIMIT,
              file_limit: int = FILE_LIMIT, only: str | None = None, language: str | None = None,
              patience: float | None = None) -> CheckResult:
    """Run the exercise's checks against `learner_file`; never raises for the learner's faults.

    `progress`, if given, is called with each record the checks write (a check started,
    a result) while they run: the CLI shows them live. `language` is the language of the
    checks' messages (default: the language rule, in the checks' own process). `patience`
    scales how long the checks wait before giving up on a hang (harness.patience); the
    project's tests pass less than 1 for files that hang on purpose.
    """
    limit = time_limit if time_limit is not None else exercise.time_limit
    with tempfile.TemporaryDirectory(prefix="learn-check-", ignore_cleanup_errors=True) as temp:
        workdir = Path(temp)
        workdir.chmod(0o711)  # others may pass through (a check connects as another user), not list
        sockets = workdir / "s"
        sockets.mkdir()
        sockets.chmod(0o711)
        paths = {name: workdir / name for name in ("report.jsonl", "pytest.out", "sandbox.json", "sandbox.out")}
        hold = Containment(f"{harness.TEMP_VARIABLE}={sockets}", f"learn-check-{os.getpid()}-{next(_runs)}")
        config = {"argv": pytest_argv(exercise, workdir, only), "time_limit": limit, "runner_pid": os.getpid(),
                  "output": str(paths["pytest.out"]), "result": str(paths["sandbox.json"]),
                  "cgroup": str(hold.cgroup) if hold.cgroup else None,
                  "memory_limit": memory_limit, "file_limit": file_limit}
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        env = check_environment(learner_file, workdir, sockets, paths["report.jsonl"], (memory_limit, file_limit),
                                language, patience)
        started = time.monotonic()
        try:
            ended = supervise(config_path, env, workdir, paths, limit, hold, progress)
        finally:
            escaped = hold.kill_all()  # whatever the sandbox could not: its own killers, their daemons
            hold.close()
        result = gather(exercise, limit, paths, sockets, ended)
        result.escaped = sorted(set(ended.escaped) | set(escaped))
        result.memory_limit, result.file_limit = memory_limit, file_limit
        result.elapsed = result.elapsed or time.monotonic() - started
        return result


@dataclass
class SandboxEnd:
    """How the sandbox process ended, as the runner saw it."""

    problem: str = ""  # '' when it ended as planned
    killed_by: int | None = None  # a signal nobody here sent: the learner's code killed it
    escaped: list[int] = field(default_factory=list)  # what was left of the run then, killed by us


def supervise(config_path: Path, env: dict[str, str], workdir: Path, paths: dict[str, Path], limit: float,
              hold: Containment, progress: Progress | None = None) -> SandboxEnd:
    """Start the sandbox in a session of its own and wait for it, passing on progress."""
    with open(paths["sandbox.out"], "wb") as out:
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "lessons.exercises.sandbox", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, cwd=workdir, start_new_session=True)
    hold.session = sandbox.pid
    follower = RecordFollower(paths["report.jsonl"], progress)
    try:
        finished = wait_following(sandbox, limit + GRACE, follower)
    except KeyboardInterrupt:
        sandbox.send_signal(signal.SIGTERM)  # the sandbox sweeps and reports, then we re-raise
        _wait_or_kill(sandbox)
        raise
    if not finished:
        _wait_or_kill(sandbox, 0)
        return SandboxEnd(_("the check runner itself did not finish in time and was killed."))
    if sandbox.returncode < 0:
        escaped = hold.kill_all()  # first stop what is left, so that no check reports after this moment
        follower.poll()
        return SandboxEnd(killed_by=-sandbox.returncode, escaped=escaped)
    if sandbox.returncode != 0:
        tail = paths["sandbox.out"].read_text(errors="replace")[-2000:]
        return SandboxEnd(_("the check runner failed (exit code {code}): {tail}").format(
            code=sandbox.returncode, tail=tail))
    follower.poll()
    return SandboxEnd()


def wait_following(process: subprocess.Popen, timeout: float, follower: "RecordFollower") -> bool:
    """Wait for `process`, reading new records as they come; False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            process.wait(FOLLOW_SECONDS)
            return True
        except subprocess.TimeoutExpired:
            follower.poll()
    return False


FOLLOW_SECONDS = 0.1


class RecordFollower:
    """Reads the plugin's JSON lines as they are appended and hands each whole one on."""

    def __init__(self, path: Path, progress: Progress | None) -> None:
        self.path, self.progress, self.offset, self.partial = path, progress, 0, b""

    def poll(self) -> None:
        if self.progress is None:
            return
        try:
            with open(self.path, "rb") as source:
                source.seek(self.offset)
                data = source.read()
        except OSError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            try:
                self.progress(json.loads(line))
            except json.JSONDecodeError:
                continue


def _wait_or_kill(process: subprocess.Popen, timeout: float = GRACE) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def gather(exercise: Exercise, limit: float, paths: dict[str, Path], sockets: Path,
           ended: SandboxEnd) -> CheckResult:
    """Merge the plugin's JSON lines, the sandbox's sweep and the leftover files into one result."""
    records = read_records(paths["report.jsonl"])
    sandbox = _read_json(paths["sandbox.json"])
    runner_problem = ended.problem
    if ended.killed_by is not None:
        return killed_from_inside(exercise, limit, records, paths, sockets, ended.killed_by)
    if not sandbox and not runner_problem:
        runner_problem = _("the check runner left no result: {output}").format(
            output=_read_text(paths["sandbox.out"])[-2000:])
    session = next((r for r in records if r["event"] == "session"), None)
    exit_code = sandbox.get("exit_code")
    timed_out = bool(sandbox.get("timed_out"))
    checks = merge_checks(records)
    running = unfinished(records) if (timed_out or session is None) else None
    if running is not None:
        checks = cut_off(checks, running, cut_short(timed_out, exit_code))
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


def killed_from_inside(exercise: Exercise, limit: float, records: list[dict], paths: dict[str, Path],
                       sockets: Path, signal_number: int) -> CheckResult:
    """The sandbox died of a signal nobody here sent: the learner's code killed the check runner."""
    checks = merge_checks(records)
    running = unfinished(records)
    name = signal_name(signal_number)
    if running is not None:
        checks = cut_off(checks, running, _("the process running the checks was killed ({signal}) during "
                                            "this check.").format(signal=name))
    problem = _("your code killed the process that runs the checks ({signal}): never signal a parent "
                "process or a process group you did not make. The checks after that did not run.").format(
        signal=name)
    return CheckResult(
        exercise_id=exercise.id, checks=checks, exit_code=None, timed_out=False, interrupted=False,
        time_limit=limit, elapsed=0.0, leaked=[], leftover_files=leftover_sockets(sockets),
        running_at_timeout=None, raw_output=_read_text(paths["pytest.out"]), runner_problem=problem,
        collected=next((r["count"] for r in records if r["event"] == "collected"), len(checks)),
        runner_killed_by=signal_number)


def signal_name(number: int) -> str:
    try:
        return _("{name}, signal {number}").format(name=signal.Signals(number).name, number=number)
    except ValueError:
        return _("signal {number}").format(number=number)


def cut_off(checks: list[CheckOutcome], running: dict, why: str) -> list[CheckOutcome]:
    """The check that was running failed with `why`, in place of anything it reported before: one line."""
    failed = CheckOutcome(running["name"], running["title"], "failed", message=why)
    kept = [check for check in checks if check.name != running["name"]]
    return kept + [failed]


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
        return _("still running when the time limit was reached: it was stopped.")
    if exit_code is not None and exit_code < 0:
        return _("the process running the checks was killed by signal {number} during this check "
                 "(did your code signal its own process group, or exhaust the memory?).").format(number=-exit_code)
    return _("the process running the checks ended during this check (exit code {code}): "
             "os._exit() or exec()?").format(code=exit_code)


def unfinished(records: list[dict]) -> dict | None:
    """The check that had started and not finished: the one running when time was up."""
    finished = {r["nodeid"] for r in records if r["event"] == "finish"}
    pending = [r for r in records if r["event"] == "start" and r["nodeid"] not in finished]
    return pending[-1] if pending else None


def _collection_problem(exit_code: int) -> str:
    return _("pytest stopped before running the checks (exit code {code}); see --verbose.").format(code=exit_code)


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
