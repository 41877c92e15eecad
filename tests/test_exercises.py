"""The exercises, checked the way a maintainer must (rustlings' `dev check`, and more).

- every untouched stub fails its checks, and fails them as "not started" (the TODOs);
- every reference solution passes them, and so does the capstone's own Room for the
  chat-room checks: one set of rules for the learner and the real server;
- a learner's server that hangs, or forks a daemon into its own session, is killed and
  reported, and the check returns within its time limit, leaving no process behind;
- the CLI flow a new learner goes through: init, a failing check (exit 1), hints in
  tiers, the solution refused, a passing check, progress in `list`.

All checks run through the same runner the CLI uses (lessons.exercises.runner), in
temporary workspaces, several at a time: the module's runs are started together once
and each test looks at the result it needs.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from lessons import catalog as lesson_catalog
from lessons.cli import app
from lessons.exercises import catalog
from lessons.exercises.catalog import EXERCISES, Exercise
from lessons.exercises.harness import PATIENCE_VARIABLE
from lessons.exercises.runner import CheckResult, run_check
from lessons.exercises.workspace import Workspace, find_root
from lessonrun import as_nobody

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 240  # the whole batch of concurrent checks, on a busy 2-core machine
HANG_LIMIT = 8.0  # the time limit given to the deliberately hanging solution
PATIENCE = 0.4  # runs that wait out a check's own limit on purpose wait 40% of it (harness.patience)
HANGING_CHECK = f"took longer than {10 * PATIENCE:g} s"  # frames' EOF check has a 10 s limit
NOBODY = 65534
cli = CliRunner()

# A learner's poll-echo that forks a daemon (double fork, setsid: out of reach of any
# process group) listening on a TCP port, then hangs and never looks at `stop`.
HANGING_DAEMON = '''
import os, signal, socket, threading

def serve(listener, stop):
    if os.fork() == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        hideout = socket.socket()
        hideout.bind(("127.0.0.1", 0))
        hideout.listen()
        while True:
            signal.pause()
    threading.Event().wait()
'''

# Appended to the reference poll-echo (its serve renamed good_serve): a daemon is left
# behind, every check passes, and the leak must still fail the exercise.
FORKS_AWAY = '''

def serve(listener, stop):
    import os, signal
    if os.fork() == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        while True:
            signal.pause()
    good_serve(listener, stop)
'''


def learn_command(*args: str) -> list[str]:
    """`python -m lessons ARGS`, with Ctrl-C working even if this test run ignores SIGINT
    (a shell starts background jobs that way, and children inherit it)."""
    restore = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "sys.argv = ['learn', *sys.argv[1:]]; runpy.run_module('lessons', run_name='__main__')")
    return [sys.executable, "-c", restore, *args]


def copy_of(exercise: Exercise, source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / exercise.file_name
    shutil.copyfile(source, target)
    return target


def processes_mentioning(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment holds `marker`: what a check left running."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and "Z" not in _state(entry):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)


def _state(entry: Path) -> str:
    return (entry / "stat").read_text().rpartition(")")[2].split()[0]


def variant(exercise: Exercise, folder: Path, text: str) -> Path:
    """A learner's file for `exercise` with the given text, in a folder of its own."""
    folder.mkdir(parents=True)
    path = folder / exercise.file_name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[CheckResult]]:
    """Start every check of this module at once, three at a time (and the two that wait); tests wait for theirs."""
    base = tmp_path_factory.mktemp("runs")
    stubs, _, _ = Workspace.init(base / "stubs")
    poll_echo, unix, chat_room = (catalog.find(name) for name in ("poll-echo", "unix-server", "chat-room"))
    unix_solution = unix.solution.read_text()
    jobs = {f"stub:{exercise.id}": (exercise, stubs.file_of(exercise)) for exercise in EXERCISES}
    jobs |= {f"solution:{exercise.id}": (exercise, copy_of(exercise, exercise.solution, base / "solutions"))
             for exercise in EXERCISES}
    jobs["capstone-room"] = (chat_room, variant(chat_room, base / "capstone",
                                                "from capstone.room import Room  # noqa: F401\n"))
    jobs["hanging"] = (poll_echo, variant(poll_echo, base / "hanging", HANGING_DAEMON), HANG_LIMIT)
    jobs["forks-away"] = (poll_echo, variant(poll_echo, base / "away", poll_echo.solution.read_text().replace(
        "def serve(", "def good_serve(") + FORKS_AWAY))
    jobs["untidy-unix"] = (unix, variant(unix, base / "untidy", unix_solution.replace(
        "        os.unlink(path)\n\n\ndef echo_once", "\n\ndef echo_once")))
    jobs["unix-given-away"] = (unix, variant(unix, base / "given-away", unix_solution.replace(
        "    sock.listen()\n", f"    os.chown(path, {NOBODY}, {NOBODY})\n    sock.listen()\n")))
    frames = catalog.find("frames")
    jobs["frames-spins"] = (frames, variant(frames, base / "spins", frames.solution.read_text().replace(
        "        if not chunk:\n", "        if False:  # b'' forever: recv_exact spins\n")))
    waiting = ("hanging", "frames-spins")  # they mostly wait out a time limit: threads of their own
    busy, idle = ThreadPoolExecutor(max_workers=3), ThreadPoolExecutor(max_workers=len(waiting))
    futures = {key: (idle if key in waiting else busy).submit(
        run_check, *arguments, patience=PATIENCE if key in waiting else None) for key, arguments in jobs.items()}
    busy.shutdown(wait=False)
    idle.shutdown(wait=False)
    return futures


def result_of(runs: dict[str, Future[CheckResult]], key: str) -> CheckResult:
    return runs[key].result(timeout=RUN_TIMEOUT)


def summary(result: CheckResult) -> str:
    lines = [f"{check.outcome}: {check.title}: {check.message}" for check in result.checks]
    lines += [f"leaked {leak}" for leak in result.leaked] + [f"left {name}" for name in result.leftover_files]
    return "\n".join(lines + [result.runner_problem, result.raw_output[-3000:]])


# ----- the maintainer check: stubs fail, solutions pass -------------------------------


@pytest.mark.timeout(RUN_TIMEOUT)
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_the_untouched_stub_fails_every_check_as_not_started(runs, exercise: Exercise) -> None:
    result = result_of(runs, f"stub:{exercise.id}")
    assert result.checks and not result.passed, summary(result)
    assert all(check.outcome == "failed" for check in result.checks), summary(result)
    assert result.untouched, "a stub must fail at its TODOs (NotImplementedError):\n" + summary(result)
    assert not (result.timed_out or result.leaked or result.leftover_files), summary(result)
    assert result.elapsed < 30, f"the stub took {result.elapsed:.1f} s to fail; it must fail at once"


@pytest.mark.timeout(RUN_TIMEOUT)
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_the_reference_solution_passes_every_check(runs, exercise: Exercise) -> None:
    result = result_of(runs, f"solution:{exercise.id}")
    assert result.passed, summary(result)
    assert len(result.checks) >= 5, f"{exercise.id} has only {len(result.checks)} checks"


@pytest.mark.timeout(RUN_TIMEOUT)
def test_the_capstone_room_passes_the_chat_room_checks(runs) -> None:
    result = result_of(runs, "capstone-room")
    assert result.passed, summary(result)


# ----- a learner's code that hangs or forks away ---------------------------------------


@pytest.mark.timeout(RUN_TIMEOUT)
def test_a_hanging_server_with_a_daemon_is_killed_and_reported(runs) -> None:
    result = result_of(runs, "hanging")
    assert result.timed_out and not result.passed, summary(result)
    assert result.elapsed < HANG_LIMIT + 5, f"the check ran {result.elapsed:.1f} s; its limit was {HANG_LIMIT} s"
    assert result.running_at_timeout, "the report must say which check was running at the time limit"
    daemons = [leak for leak in result.leaked if leak.own_session]
    assert daemons, "the daemon in its own session was not found:\n" + summary(result)
    assert any(address.startswith("tcp 127.0.0.1:") for leak in daemons for address in leak.listening), (
        "the daemon's listening socket was not reported:\n" + summary(result))
    for leak in result.leaked:
        assert not Path(f"/proc/{leak.pid}").exists() or _state(Path(f"/proc/{leak.pid}")) == "Z", (
            f"process {leak.pid} is still alive after the check")


@pytest.mark.timeout(RUN_TIMEOUT)
def test_a_hang_in_the_learners_code_is_reported_at_their_line(runs) -> None:
    """The per-check time limit interrupts a loop on recv() and names the learner's line."""
    result = result_of(runs, "frames-spins")
    stuck = {check.title: check.message for check in result.checks if not check.passed}
    message = stuck["recv_exact() raises EOFError when the peer half-closes mid-frame (no hang, no short read)"]
    assert f"this check {HANGING_CHECK}: your code was still running, at frames.py line" in message, message
    assert "raise EOFError" in message, message
    assert result.elapsed < 60 and not result.timed_out


@pytest.mark.timeout(RUN_TIMEOUT)
def test_passing_checks_with_a_leaked_daemon_is_a_failure(runs) -> None:
    result = result_of(runs, "forks-away")
    assert result.checks and all(check.passed for check in result.checks), summary(result)
    assert not result.passed, "a check that leaves a daemon behind must not count as passed"
    assert any(leak.own_session for leak in result.leaked), summary(result)


@pytest.mark.timeout(RUN_TIMEOUT)
def test_no_process_of_any_check_outlives_it(runs, tmp_path_factory) -> None:
    for key in runs:
        result_of(runs, key)
    base = str(tmp_path_factory.getbasetemp())
    assert processes_mentioning(base) == [], "a check left a process running"


@pytest.mark.timeout(RUN_TIMEOUT)
def test_a_socket_file_left_behind_is_reported(runs) -> None:
    result = result_of(runs, "untidy-unix")
    assert not result.passed
    assert result.leftover_files and all(name.endswith(".sock") for name in result.leftover_files), summary(result)
    failed = [check.title for check in result.checks if not check.passed]
    assert failed == ["Removes its socket file when stopped"], summary(result)


@pytest.mark.timeout(RUN_TIMEOUT)
def test_the_privacy_check_can_tell_another_user_got_in(runs) -> None:
    """As root the unix check connects as user 65534; a socket that user may open must fail it."""
    if os.geteuid() != 0:
        pytest.skip("only root can connect as another user")
    result = result_of(runs, "unix-given-away")
    failed = {check.title: check.message for check in result.checks if not check.passed}
    assert list(failed) == ["The socket file has mode 0600: another user cannot connect"], summary(result)
    assert "could connect" in next(iter(failed.values()))


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory another user can enter (pytest's own tmp_path sits in a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="learn-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unprivileged_learner_gets_a_workspace_or_one_sentence(open_tmp: Path) -> None:
    """The workspace as a normal user: created where it may write, one sentence where it may not."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become an unprivileged user")
    tmp_path = open_tmp
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    not_theirs = tmp_path / "not-theirs"
    not_theirs.mkdir(mode=0o755)

    invoke("exercise", "init", str(tmp_path / "warm-up"))  # every import happens now, as root:
    invoke("exercise", "init", str(tmp_path / "warm-up" / "poll_echo.py"))  # the stdlib may be closed to 65534

    def attempt() -> dict:
        made = invoke("exercise", "init", str(theirs / "ws"))
        refused = invoke("exercise", "init", str(not_theirs / "ws"))
        Workspace.init(theirs / "ws")[0].record_check(catalog.find("frames"), False)
        return {"made": made.exit_code, "refused": refused.exit_code, "refused_text": refused.output,
                "progress": json.loads((theirs / "ws" / "progress.json").read_text())}

    answer = as_nobody(attempt)
    assert answer["made"] == 0, answer
    assert answer["refused"] == 2 and "not allowed to write" in answer["refused_text"], answer
    assert "Traceback" not in answer["refused_text"]
    assert answer["progress"]["exercises"]["frames"]["checks"] == 1
    assert (theirs / "ws" / "progress.json").stat().st_uid == NOBODY
    assert not (not_theirs / "ws").exists()


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_stopping_learn_mid_check_leaves_nothing_behind(open_tmp: Path, how: str) -> None:
    """Ctrl-C: the runner has the sandbox sweep first. SIGKILL: the sandbox learns it from the kernel."""
    space = open_tmp / "ws"
    Workspace.init(space)
    (space / "poll_echo.py").write_text(HANGING_DAEMON)
    marker = str(space / "poll_echo.py")
    learn = subprocess.Popen(learn_command("exercise", "check", "poll-echo", "--workspace", str(space)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert "Checking" in read_until(learn, "Checking", 30)
        assert wait_until(lambda: len(processes_mentioning(marker)) >= 3, 30), "the check never got going"
        check_dir = Path(environment_of(processes_mentioning(marker)[0])["LEARN_CHECK_TMP"]).parent
        learn.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        learn.wait(40)
        assert wait_until(lambda: not processes_mentioning(marker), 30), (
            f"processes of the check outlived `learn` stopped by {how}: {processes_mentioning(marker)}")
        assert wait_until(lambda: not check_dir.exists(), 30), f"{check_dir} was left behind"
    finally:
        if learn.poll() is None:
            learn.kill()
            learn.wait()
    if how == "sigkill":
        assert learn.returncode == -signal.SIGKILL
        return
    said = learn.stdout.read().decode(errors="replace")
    assert learn.returncode == 130, said
    assert said.count("Check of poll-echo stopped") == 1 and "Traceback" not in said, said
    assert "Abort" not in said and "error:" not in said, said


def test_check_shows_each_check_as_it_runs_and_why_one_hit_its_limit(tmp_path: Path) -> None:
    """Piped: a line as each check starts and ends; a check stopped at its limit says so at once."""
    space = tmp_path / "ws"
    Workspace.init(space)
    spinning = catalog.find("frames").solution.read_text().replace(
        "        if not chunk:\n", "        if False:  # b'' forever: recv_exact spins\n")
    (space / "frames.py").write_text(spinning)
    learn = subprocess.Popen(learn_command("exercise", "check", "frames", "--workspace", str(space)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=os.environ | {PATIENCE_VARIABLE: str(PATIENCE)})
    try:
        early = read_until(learn, "raises EOFError when the peer half-closes", 30)
        assert "[1/15] PASS recv_exact() collects bytes" in early, early
        assert learn.poll() is None, "the line came only once the whole check had finished"
        late = read_until(learn, "took longer than", 60)
        assert re.search(r"check 'recv_exact\(\) raises EOFError.*' " + re.escape(HANGING_CHECK)
                         + r": your code was still running, at frames.py line \d+", late), late
        rest = learn.stdout.read().decode()
        assert learn.wait(60) == 1
        assert "frames: 13 of 15 checks pass" in rest or "frames: 14 of 15 checks pass" in rest, rest
    finally:
        if learn.poll() is None:
            learn.kill()
            learn.wait()


def wait_until(condition, timeout: float) -> bool:
    """Poll `condition` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


# ----- the catalog, the files, the docs ------------------------------------------------


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_every_exercise_has_its_files_hints_todo_and_doc(exercise: Exercise) -> None:
    for path in (exercise.stub, exercise.solution, exercise.check, exercise.hints_file):
        assert path.is_file(), f"{exercise.id} is missing {path.name}"
    hints = exercise.hints()
    assert len(hints) == len(catalog.HINT_TIERS) and all(hint.strip() for hint in hints), (
        f"{exercise.id} needs {len(catalog.HINT_TIERS)} hint tiers")
    stub = exercise.stub.read_text(encoding="utf-8")
    assert "TODO" in stub and "NotImplementedError" in stub
    assert "TODO" not in exercise.solution.read_text(encoding="utf-8")
    docs = (ROOT / "docs" / "exercises.md").read_text(encoding="utf-8")
    assert re.search(rf"^### .*\b{re.escape(exercise.id)}\b", docs, re.MULTILINE), (
        f"docs/exercises.md has no section for {exercise.id}")


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda exercise: exercise.id)
def test_stub_and_solution_offer_the_same_names(exercise: Exercise) -> None:
    """The learner's file must keep the interface the checks call."""
    pattern = re.compile(r"^(?:def|class) (\w+)", re.MULTILINE)
    stub = set(pattern.findall(exercise.stub.read_text(encoding="utf-8")))
    solution = set(pattern.findall(exercise.solution.read_text(encoding="utf-8")))
    assert stub <= solution, f"the solution lacks {stub - solution}"


def test_catalogs_point_at_each_other() -> None:
    lesson_ids = {lesson.id for lesson in lesson_catalog.LESSONS}
    exercise_ids = {exercise.id for exercise in EXERCISES}
    assert len(exercise_ids) == len(EXERCISES)
    for exercise in EXERCISES:
        assert exercise.lesson in lesson_ids | {"capstone"}, exercise.id
    for lesson in lesson_catalog.LESSONS:
        assert lesson.exercise is None or lesson.exercise in exercise_ids, lesson.id
    assert EXERCISES[-1].lesson == "capstone", "the chat room is the final exercise"
    assert catalog.find("poll_echo.py") is catalog.find("poll-echo") is EXERCISES[0]


def test_hint_tiers_parse_in_order() -> None:
    text = "# Hints\n\n## Nudge\none\n\n## Approach\ntwo\n\n## Nearly the code\n```python\n## not a heading\n```\n"
    assert catalog.parse_hints(text) == ["one", "two", "```python\n## not a heading\n```"]


# ----- the CLI, as a new learner uses it -----------------------------------------------


def invoke(*args: str, input: str | None = None):
    return cli.invoke(app, list(args), prog_name="learn", input=input)


def test_the_learner_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = tmp_path / "learn-exercises"
    created = invoke("exercise", "init", str(space))
    assert created.exit_code == 0, created.output
    assert all((space / exercise.file_name).is_file() for exercise in EXERCISES)
    monkeypatch.chdir(space)

    failed = invoke("exercise", "check", "proc-reader")
    assert failed.exit_code == 1, failed.output
    assert "Not started yet" in failed.output and "TODO" in failed.output
    assert "Traceback" not in failed.output

    tiers = [invoke("exercise", "hint", "proc-reader") for _ in range(4)]
    assert all(result.exit_code == 0 for result in tiers)
    assert [re.search(r"Hint (\d) of 3", result.output).group(1) for result in tiers] == ["1", "2", "3", "3"]
    assert "last hint" in tiers[3].output

    refused = invoke("exercise", "solution", "proc-reader")
    assert refused.exit_code == 2 and "--give-up" in refused.output

    shutil.copyfile(catalog.find("proc-reader").solution, space / "proc_reader.py")
    passed = invoke("exercise", "check", "proc-reader")
    assert passed.exit_code == 0, passed.output
    assert "passes every check" in passed.output

    listed = invoke("exercise", "list")
    assert listed.exit_code == 0
    assert re.search(r"proc-reader\s+process-states\s+done\s+3/3", listed.output), listed.output
    assert re.search(r"poll-echo\s+poll-server\s+not started", listed.output), listed.output

    shown = invoke("exercise", "solution", "proc-reader")
    assert shown.exit_code == 0 and "reference solution, byte for byte" in shown.output
    progress = json.loads((space / "progress.json").read_text())
    record = progress["exercises"]["proc-reader"]
    assert record["passed_at"] and record["checks"] == 2 and record["solution_seen"]

    lessons = cli.invoke(app, ["list"], prog_name="learn", env={"COLUMNS": "200"})
    assert "proc-reader: done" in lessons.output and "poll-echo: not started" in lessons.output

    assert invoke("exercise", "reset", "proc-reader", "--yes").exit_code == 0
    listed = invoke("exercise", "list")
    assert re.search(r"proc-reader\s+process-states\s+not started", listed.output), listed.output
    assert "learn exercise check poll-echo" in listed.output  # still the first one not done
    lessons = cli.invoke(app, ["list"], prog_name="learn", env={"COLUMNS": "200"})
    assert "proc-reader: not started" in lessons.output, lessons.output


def test_init_never_overwrites_and_reset_asks_first(tmp_path: Path) -> None:
    space = tmp_path / "ws"
    invoke("exercise", "init", str(space))
    mine = space / "frames.py"
    mine.write_text("# my work\n")
    again = invoke("exercise", "init", str(space))
    assert again.exit_code == 0 and "kept 7 files" in again.output
    assert mine.read_text() == "# my work\n"

    declined = invoke("exercise", "reset", "frames", "--workspace", str(space), input="n\n")
    assert declined.exit_code == 0 and mine.read_text() == "# my work\n", declined.output
    assert "Nothing changed." in declined.output and "Abort" not in declined.output, declined.output
    done = invoke("exercise", "reset", "frames", "--workspace", str(space), "--yes")
    assert done.exit_code == 0, done.output
    assert mine.read_bytes() == catalog.find("frames").stub.read_bytes()
    backups = list((space / ".backup").glob("frames-*.py"))
    assert len(backups) == 1 and backups[0].read_text() == "# my work\n"


def test_giving_up_shows_the_solution_as_a_diff(tmp_path: Path) -> None:
    space = tmp_path / "ws"
    invoke("exercise", "init", str(space))
    declined = invoke("exercise", "solution", "frames", "--give-up", "--workspace", str(space), input="n\n")
    assert declined.exit_code == 0 and "+++" not in declined.output and "Nothing shown." in declined.output
    shown = invoke("exercise", "solution", "frames", "--give-up", "--workspace", str(space), input="y\n")
    assert shown.exit_code == 0, shown.output
    assert "--- frames.py (yours)" in shown.output and "+++ frames.py (reference solution)" in shown.output
    assert "+    data = bytearray()" in shown.output


def test_the_workspace_is_found_from_below_or_beside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Workspace.init(tmp_path / "learn-exercises")
    (tmp_path / "learn-exercises" / "deep" / "er").mkdir(parents=True)
    assert find_root(tmp_path / "learn-exercises" / "deep" / "er") == (tmp_path / "learn-exercises").resolve()
    assert find_root(tmp_path) == (tmp_path / "learn-exercises").resolve()
    monkeypatch.chdir(tmp_path / "learn-exercises" / "deep")
    assert invoke("exercise", "list").exit_code == 0


def test_mistakes_are_one_sentence_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nowhere = invoke("exercise", "list")
    assert nowhere.exit_code == 2 and "learn exercise init" in nowhere.output
    Workspace.init(tmp_path / "learn-exercises")
    typo = invoke("exercise", "check", "pol-echo")
    assert typo.exit_code == 2 and "poll-echo" in typo.output
    (tmp_path / "learn-exercises" / "frames.py").unlink()
    missing = invoke("exercise", "check", "frames")
    assert missing.exit_code == 2 and "reset frames" in missing.output
    (tmp_path / "learn-exercises" / "progress.json").write_text('{"workspace": "learn-exercises", "exercises": [')
    damaged = invoke("exercise", "list", "--workspace", str(tmp_path / "learn-exercises"))
    assert damaged.exit_code == 2
    for result in (nowhere, typo, missing, damaged):
        assert "Traceback" not in result.output and result.output.count("error:") == 1


def test_a_file_that_does_not_compile_is_one_message(tmp_path: Path) -> None:
    frames = catalog.find("frames")
    broken = tmp_path / "frames.py"
    broken.write_text("def recv_exact(sock, count)\n    pass\n")
    result = run_check(frames, broken)
    assert not result.passed and all(check.file_error for check in result.checks)
    message = result.checks[0].message
    assert "does not compile: line 1: expected ':'." in message, message
    assert message.splitlines()[1:] == ["    def recv_exact(sock, count)", " " * 31 + "^"], message


def test_watch_checks_on_save_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    space = tmp_path / "ws"
    Workspace.init(space)
    watcher = subprocess.Popen(learn_command("exercise", "watch", "--workspace", str(space), "--interval", "0.1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = read_until(watcher, "Watching", 30)
        assert "Watching" in seen, seen
        shutil.copyfile(catalog.find("frames").solution, space / "frames.py")
        seen = read_until(watcher, "frames passes every check", 60)
        assert "frames passes every check" in seen, seen
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(30) == 0
        assert "Stopped watching" in watcher.stdout.read().decode()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def read_until(process: subprocess.Popen, text: str, timeout: float) -> str:
    """Read the process's output until `text` shows up or the deadline passes (no sleeping)."""
    deadline = time.monotonic() + timeout
    data = b""
    fd = process.stdout.fileno()
    while text.encode() not in data and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace")
