"""The learner's workspace: one file per exercise, and progress.json beside them.

    learn-exercises/
        progress.json       what was checked, passed, hinted, and the workspace's language
        README.md           the commands, for when you forget them
        poll_echo.py ...    your code, copied from the stubs once and never overwritten

Commands find the workspace the way git finds a repository: from the current directory
upwards, looking for a progress.json that says it belongs to us (or in ./learn-exercises,
or where --workspace says). Only the standard library here: `learn list` imports it.

A workspace speaks the language it was created in (`learn exercise init --lang zh`, or
the language rule): its stubs are copied in that language, and later commands on it
(check, hint, list...) answer in it, unless LEARN_LANG (`learn --lang`) asks for another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lessons.toolkit.common import UserError
from lessons.toolkit.i18n import CHOICE_VARIABLE, LANGUAGES, N_, _, language_from_environment, use_language
from lessons.exercises.catalog import EXERCISES, Exercise

PROGRESS_FILE = "progress.json"
MARKER = "learn-exercises"  # the "workspace" value in progress.json: not some other tool's file
DEFAULT_DIR = "learn-exercises"
FORMAT = 1

DONE, PENDING, NOT_STARTED = N_("done"), N_("pending"), N_("not started")  # stored as is, shown through _()



def readme() -> str:
    """The workspace's README.md, in the language spoken now."""
    return _("""\
# Your exercises

Each .py file here is one exercise: open it, do its TODOs, then check it.

    learn exercise list            where you are
    learn exercise check           check the next unfinished exercise (or: check NAME)
    learn exercise hint NAME       a hint; ask again for the next, more direct one
    learn exercise watch           re-check every time you save
    learn exercise reset NAME      start an exercise over (your file is backed up first)
    learn exercise solution NAME   the reference solution, once you have passed

progress.json records what you did; `learn exercise list` reads it.
""")


@dataclass
class ExerciseProgress:
    checks: int = 0  # how many times it was checked
    last_result: str | None = None  # "pass" or "fail"
    passed_at: str | None = None  # first pass, ISO time; set means done
    hints_shown: int = 0  # tiers seen, 0..3
    solution_seen: bool = False


@dataclass
class Workspace:
    root: Path
    progress: dict[str, ExerciseProgress] = field(default_factory=dict)
    language: str = "en"  # of its stubs, hints and check messages; a workspace from before it had one is English

    # ----- finding and creating ---------------------------------------------------------

    @classmethod
    def find(cls, explicit: Path | None = None, start: Path | None = None) -> Workspace:
        """The workspace at `explicit`, or the nearest one above `start`; else one sentence."""
        if explicit is not None:
            if not is_workspace(explicit):
                raise UserError(_("{explicit} is not an exercise workspace (it has no "
                                  "{record} of ours); create one with `learn exercise init "
                                  "{explicit}`.").format(explicit=explicit, record=PROGRESS_FILE))
            return cls.load(explicit)
        found = find_root(start or Path.cwd())
        if found is None:
            raise UserError(_("no exercise workspace here or above; create one with `learn "
                              "exercise init` (or point at it with --workspace DIR)."))
        return cls.load(found)

    @classmethod
    def load(cls, root: Path) -> Workspace:
        path = root / PROGRESS_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = data.get("exercises", {})
            progress = {key: ExerciseProgress(**value) for key, value in entries.items()}
            language = data.get("language", "en")
        except (json.JSONDecodeError, TypeError, AttributeError) as err:
            raise UserError(_("{path} is damaged ({err}); fix it, or delete it and run `learn "
                              "exercise init {root}` to start the record afresh.").format(path=path, err=err, root=root)) from None
        return cls(root.resolve(), progress, language if language in LANGUAGES else "en")

    @classmethod
    def init(cls, root: Path, language: str | None = None) -> tuple[Workspace, list[str], list[str]]:
        """Create the workspace or complete it; returns (files created, files kept as they were).

        `language` None keeps an existing workspace's language; a new one gets the language rule's.
        """
        if root.exists() and not root.is_dir():
            raise UserError(_("{root} exists and is not a directory; choose another place.").format(root=root))
        try:
            return cls._fill(root, language)
        except PermissionError as err:
            raise UserError(_("not allowed to write {path}; choose a folder of "
                              "your own (learn exercise init DIR).").format(path=err.filename or root)) from None

    @classmethod
    def _fill(cls, root: Path, language: str | None) -> tuple[Workspace, list[str], list[str]]:
        root.mkdir(parents=True, exist_ok=True)
        workspace = cls.load(root) if is_workspace(root) else cls(root.resolve(), language=language_from_environment())
        workspace.language = language or workspace.language
        workspace.speak()
        created, kept = [], []
        for exercise in EXERCISES:
            target = root / exercise.file_name
            if target.exists():
                kept.append(exercise.file_name)
            else:
                shutil.copyfile(exercise.stub_in(workspace.language), target)
                created.append(exercise.file_name)
        if not (root / "README.md").exists():
            (root / "README.md").write_text(readme(), encoding="utf-8")
        workspace.save()
        return workspace, created, kept

    @property
    def speaking(self) -> str:
        """The language its commands answer in: LEARN_LANG if set, else the workspace's own."""
        return chosen_language() or self.language

    def speak(self) -> str:
        """From now on, this process's messages are in the workspace's language.

        use_language() records a choice in LEARN_LANG for child processes; the workspace's
        language is no such choice (the next workspace keeps its own), so it is taken back.
        """
        before = os.environ.get(CHOICE_VARIABLE)
        spoken = use_language(self.speaking)
        if before is None:
            os.environ.pop(CHOICE_VARIABLE, None)
        else:
            os.environ[CHOICE_VARIABLE] = before
        return spoken

    # ----- the learner's files ----------------------------------------------------------

    def file_of(self, exercise: Exercise) -> Path:
        return self.root / exercise.file_name

    def existing_file(self, exercise: Exercise) -> Path:
        path = self.file_of(exercise)
        if not path.is_file():
            raise UserError(_("{file_name} is missing from {root}; `learn exercise reset {id}` "
                              "puts the stub back.").format(file_name=exercise.file_name, root=self.root, id=exercise.id))
        return path

    def is_untouched(self, exercise: Exercise) -> bool:
        path = self.file_of(exercise)
        return path.is_file() and path.read_bytes() in {stub.read_bytes() for stub in exercise.stubs()}

    def reset(self, exercise: Exercise) -> Path | None:
        """Put the stub back; the learner's version is kept in .backup/ (returned)."""
        path = self.file_of(exercise)
        backup = None
        if path.is_file() and not self.is_untouched(exercise):
            backup_dir = self.root / ".backup"
            backup_dir.mkdir(exist_ok=True)
            backup = backup_dir / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}.py"
            shutil.copyfile(path, backup)
        shutil.copyfile(exercise.stub_in(self.language), path)
        record = self.of(exercise)
        record.passed_at, record.last_result = None, None  # the pass was of the code now in .backup/
        self.save()
        return backup

    # ----- progress ---------------------------------------------------------------------

    def of(self, exercise: Exercise) -> ExerciseProgress:
        return self.progress.setdefault(exercise.id, ExerciseProgress())

    def status(self, exercise: Exercise) -> str:
        """The one place progress is decided: the stub is never done, whatever the record says."""
        if self.is_untouched(exercise):
            return NOT_STARTED
        record = self.progress.get(exercise.id, ExerciseProgress())
        return DONE if record.passed_at else PENDING

    def next_unfinished(self) -> Exercise | None:
        return next((item for item in EXERCISES if self.status(item) != DONE), None)

    def record_check(self, exercise: Exercise, passed: bool) -> None:
        record = self.of(exercise)
        record.checks += 1
        record.last_result = "pass" if passed else "fail"
        if passed and not record.passed_at:
            record.passed_at = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.save()

    def save(self) -> None:
        """Write progress.json whole or not at all (a temporary file, then rename)."""
        try:
            self._write_progress()
        except PermissionError:
            raise UserError(_("not allowed to write {path}; the workspace belongs "
                              "to another user (see --workspace).").format(path=self.root / PROGRESS_FILE)) from None

    def _write_progress(self) -> None:
        data = {"workspace": MARKER, "format": FORMAT, "language": self.language,
                "exercises": {key: asdict(value) for key, value in sorted(self.progress.items())}}
        handle, temp = tempfile.mkstemp(dir=self.root, prefix=".progress-", suffix=".json")
        os.chmod(temp, 0o644)  # an ordinary readable file, like the exercise files beside it
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.replace(temp, self.root / PROGRESS_FILE)


def chosen_language() -> str | None:
    """The language LEARN_LANG asks for (`learn --lang` sets it), or None: then the workspace's own."""
    return language_from_environment() if os.environ.get(CHOICE_VARIABLE, "").strip() else None


def is_workspace(path: Path) -> bool:
    try:
        data = json.loads((path / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("workspace") == MARKER


def find_root(start: Path) -> Path | None:
    """The nearest workspace at or above `start`, or ./learn-exercises below it."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if is_workspace(folder):
            return folder
    default = start / DEFAULT_DIR
    return default if is_workspace(default) else None


def exercise_statuses(start: Path | None = None) -> dict[str, str] | None:
    """exercise id -> done / pending / not started, for `learn list`; None without a workspace.

    Never raises: a listing must not fail because of a damaged progress file.
    """
    try:
        root = find_root(start or Path.cwd())
        if root is None:
            return None
        workspace = Workspace.load(root)
        return {exercise.id: workspace.status(exercise) for exercise in EXERCISES}
    except (OSError, UserError):
        return None
