"""What every check needs: the learner's code, its place in a traceback, byte dumps.

Checks talk in the lesson's terms, so a failure says *where in the learner's file*
things went wrong and *what bytes* were expected, not a raw traceback. The runner
tells the check process where the learner's file is and where socket files may go
through two environment variables.
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import os
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Callable

from lessons.toolkit.i18n import _

FILE_VARIABLE = "LEARN_EXERCISE_FILE"  # the learner's .py file
TEMP_VARIABLE = "LEARN_CHECK_TMP"  # a private directory for socket files, one per check run
REPORT_VARIABLE = "LEARN_REPORT"  # where the plugin writes its JSON lines for the runner
PATIENCE_VARIABLE = "LEARN_CHECK_PATIENCE"  # a factor on how long checks wait before giving up (default 1)
_counter = itertools.count(1)


class LearnerFileError(Exception):
    """The learner's file could not be loaded (syntax error, crash at import)."""


class NotStarted(Exception):
    """A TODO was hit somewhere the plugin cannot see it (in a forked child): report it as one."""


def patience(seconds: float) -> float:
    """`seconds` of waiting for the learner's code, times LEARN_CHECK_PATIENCE.

    A check gives up on a hang only after a wait long enough for a busy machine. The
    project's own tests run files that hang on purpose; they set a factor below 1 so
    that they do not wait out every one of those hangs in full."""
    try:
        factor = float(os.environ.get(PATIENCE_VARIABLE, "1"))
    except ValueError:
        factor = 1.0
    return seconds * factor if factor > 0 else seconds


def learner_path() -> Path:
    return Path(os.environ[FILE_VARIABLE]).resolve()


def load_learner_module(path: Path) -> ModuleType:
    """Import the learner's file by path, under a name of its own."""
    name = f"learner_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LearnerFileError(_("{file} cannot be loaded as Python.").format(file=path.name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise LearnerFileError(syntax_error_text(path, err)) from None
    except BaseException as err:  # noqa: BLE001 - anything at import is the learner's to see
        raise LearnerFileError(_("importing {file} failed: {error}").format(
            file=path.name, error=describe_exception(err))) from None
    return module


def syntax_error_text(path: Path, err: SyntaxError) -> str:
    """'frames.py does not compile: line 3: expected ':'.' and that line, with a caret under the place."""
    text = _("{file} does not compile: line {line}: {problem}.").format(
        file=path.name, line=err.lineno, problem=err.msg)
    source = (err.text or "").rstrip("\n")
    if not source.strip():
        return text
    shown = source.expandtabs(4)
    indent = len(shown) - len(shown.lstrip())
    column = max(indent, min(len(shown), len(source[:max(0, (err.offset or 1) - 1)].expandtabs(4))))
    return f"{text}\n    {shown.strip()}\n    {' ' * (column - indent)}^"


def human_size(value: str | None) -> str:
    """'1073741824' -> '1 GiB'; unknown -> 'the limit'."""
    try:
        size = float(value or "")
    except ValueError:
        return _("the limit")
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:g} {unit}"
        size /= 1024
    return f"{size:g} GiB"


def fresh_dir(label: str = "t") -> Path:
    """A new, short directory for one check's socket files (Unix paths are limited to 107 bytes)."""
    if not os.environ.get(TEMP_VARIABLE):  # a check run by hand, without the runner
        os.environ[TEMP_VARIABLE] = own = tempfile.mkdtemp(prefix="learn-check-")
        os.chmod(own, 0o711)  # as the runner makes it: passable, not listable
        atexit.register(shutil.rmtree, own, ignore_errors=True)
    path = Path(os.environ[TEMP_VARIABLE]) / f"{label}{next(_counter)}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)  # the umask must not decide; some checks connect as another user
    return path


# ----- where in the learner's file ----------------------------------------------------


def learner_frame(tb: TracebackType | None) -> traceback.FrameSummary | None:
    """The deepest traceback entry inside the learner's file (None if none is)."""
    try:
        mine = str(learner_path())
    except KeyError:
        return None
    found = None
    for entry in traceback.extract_tb(tb):
        if os.path.realpath(entry.filename) == mine:
            found = entry
    return found


def where(tb: TracebackType | None) -> str:
    """'poll_echo.py line 41: `sock = fdmap[fd]`', or '' when the learner's file is not involved."""
    entry = learner_frame(tb)
    if entry is None:
        return ""
    code = (entry.line or "").strip()
    place = _("{file} line {line}").format(file=Path(entry.filename).name, line=entry.lineno)
    return place + (f": `{code}`" if code else "")


def describe_exception(err: BaseException) -> str:
    """'KeyError: 7, raised at poll_echo.py line 41: `...`' (the place only if it is theirs)."""
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    text = text.removeprefix(f"{type(err).__module__}.") if type(err).__module__.startswith("learner_") else text
    place = where(err.__traceback__)
    return _("{error}, raised at {place}").format(error=text, place=place) if place else text


def is_todo(err: BaseException) -> bool:
    """True for the stub's NotImplementedError: the learner has not started this part."""
    return isinstance(err, NotImplementedError) and learner_frame(err.__traceback__) is not None


def todo_text(err: BaseException) -> str:
    entry = learner_frame(err.__traceback__)
    if entry is None:
        return _("this part still raises NotImplementedError: {todo}").format(todo=err or _("the TODO is not done yet"))
    return _("{function}() still raises NotImplementedError: {todo}").format(
        function=entry.name, todo=err or _("the TODO is not done yet"))


# ----- running the learner's server --------------------------------------------------


class LearnerThread:
    """Runs a learner's function (a server loop) in a daemon thread and keeps what it raised.

    A daemon thread: if the learner's loop never returns, the check still ends, and the
    runner's time limit and process sweep take care of anything it started.
    """

    def __init__(self, target: Callable[..., Any], *args: Any, name: str = "serve") -> None:
        self.name = name
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target, *args), daemon=True)

    def _run(self, target: Callable[..., Any], *args: Any) -> None:
        try:
            target(*args)
        except BaseException as err:  # noqa: BLE001 - reported by the check
            self.error = err

    def start(self) -> "LearnerThread":
        self.thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def crash_text(self) -> str | None:
        if self.error is None:
            return None
        return _("your {function}() raised {error}").format(function=self.name, error=describe_exception(self.error))

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


# ----- bytes, shown so a learner can compare them -------------------------------------


def hexdump(data: bytes, width: int = 16, limit: int = 256) -> str:
    """Offset, hex and printable ASCII, like `xxd`; long data is cut after `limit` bytes."""
    if not data:
        return "    " + _("(no bytes)")
    lines = []
    for offset in range(0, min(len(data), limit), width):
        chunk = data[offset:offset + width]
        hex_part = " ".join(f"{byte:02x}" for byte in chunk)
        text = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in chunk)
        lines.append(f"    {offset:04x}  {hex_part:<{width * 3 - 1}}  {text}")
    if len(data) > limit:
        lines.append("    ... " + _("{n} more bytes").format(n=len(data) - limit))
    return "\n".join(lines)


def compare_bytes(expected: bytes, received: bytes) -> str:
    """Both dumps, and where they first differ: the heart of a framing failure message."""
    first = next((i for i, (a, b) in enumerate(zip(expected, received)) if a != b),
                 min(len(expected), len(received)))
    return "\n".join([_("expected {n} bytes:").format(n=len(expected)), hexdump(expected),
                      _("received {n} bytes:").format(n=len(received)), hexdump(received),
                      _("they first differ at offset {offset} (0x{offset:x}).").format(offset=first)])


def short(data: bytes, limit: int = 40) -> str:
    return repr(data) if len(data) <= limit else _("{start}... ({n} bytes)").format(start=repr(data[:limit]), n=len(data))


def listener_on_loopback() -> socket.socket:
    """A TCP listener on 127.0.0.1, port 0: the kernel picks a free port, never a fixed one."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener
