"""Checks for unix-server: your serve(path, stop) in a fresh temporary directory, against
the shared echo-server checks, then stale, live and foreign files at its path, the file's
permissions (tested as another user when the check runs as root) and its removal.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

from lessons.exercises import peers
from lessons.exercises.echo_battery import *  # noqa: F401,F403 - the shared echo-server checks
from lessons.exercises.echo_battery import STOP_SECONDS, EchoServer, expect_echo, holding_accepted
from lessons.exercises.harness import LearnerThread, fresh_dir
from lessons.toolkit.i18n import N_, _

NOBODY = 65534  # the unprivileged user a root check connects as
DENIED = "denied"  # what connect_as_another_user() says when the file's mode kept the user out


def start(learner: ModuleType, path: Path, situation: str = "") -> EchoServer:
    """Start serve(path, stop) and wait until it accepts connections (or has died); `situation`: translated."""
    stop = threading.Event()
    server = EchoServer(str(path), LearnerThread(learner.serve, str(path), stop), stop)
    server.thread.start()
    deadline = time.monotonic() + peers.DEADLINE
    while time.monotonic() < deadline:
        if accepts(path):
            return server
        if server.stopped():
            server.fail_if_crashed(" " + _("before it was listening{situation}").format(situation=situation))
            pytest.fail(_("your serve() returned before it was listening on the socket file."), pytrace=False)
        time.sleep(0.01)
    server.stop.set()
    pytest.fail(_("nothing was accepting connections on {file} {seconds} s after serve() started: bind() the "
                  "path, then listen().").format(file=path.name, seconds=f"{peers.DEADLINE:g}"), pytrace=False)


def accepts(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    finally:
        probe.close()


def stale_socket_file(path: Path) -> None:
    """What a crashed server leaves: a socket file that nobody listens on."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


@pytest.fixture
def server(learner: ModuleType) -> Iterator[EchoServer]:
    accepted: list[socket.socket] = []
    with holding_accepted(accepted):
        running = start(learner, fresh_dir() / "echo.sock")
        running.accepted = accepted
        yield running
        running.shut_down()


def expect_refusal(learner: ModuleType, path: Path, what: str) -> None:
    """serve() must raise at once for `what` (translated) at `path`, and not take the path over."""
    stop = threading.Event()
    thread = LearnerThread(learner.serve, str(path), stop).start()
    ended = thread.join(STOP_SECONDS)
    stop.set()
    thread.join(STOP_SECONDS)
    if thread.error is not None and not isinstance(thread.error, OSError):
        if isinstance(thread.error, NotImplementedError):
            raise thread.error
        pytest.fail(_("with {what} at the path, {crash}; raise FileExistsError instead.").format(
            what=what, crash=thread.crash_text()), pytrace=False)
    assert ended and thread.error is not None, _(
        "with {what} at the path, serve() went on instead of raising FileExistsError: "
        "that file is not yours to replace.").format(what=what)


@pytest.mark.title(N_("Replaces a stale socket file (left by a server that crashed)"))
def test_replaces_a_stale_socket_file(learner: ModuleType) -> None:
    path = fresh_dir() / "stale.sock"
    stale_socket_file(path)
    ours = os.lstat(path).st_ino
    try:
        running = start(learner, path, _(", with a stale socket file at its path (bind() fails on any "
                                         "existing file: find out whether anyone listens, and remove it if not)"))
        client = running.connect()
        client.sendall(b"after the crash")
        expect_echo(running, client, b"after the crash", _("on a path where a stale socket file had been"))
        running.shut_down()
    finally:
        if path.exists() and os.lstat(path).st_ino == ours:
            path.unlink()  # still the check's own stale file: not the learner's leftover


@pytest.mark.title(N_("Refuses a socket file another server is listening on, and leaves it working"))
def test_refuses_a_socket_file_another_server_listens_on(learner: ModuleType) -> None:
    path = fresh_dir() / "taken.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    other.listen()
    try:
        expect_refusal(learner, path, _("a live socket file (another server listening)"))
        assert accepts(path), _("serve() raised, but the other server's socket file no longer accepts "
                                "connections: you removed or replaced a live socket file.")
    finally:
        other.close()
        path.unlink(missing_ok=True)


@pytest.mark.title(N_("Refuses a path that holds an ordinary file, and does not delete it"))
def test_refuses_to_delete_a_file_that_is_not_a_socket(learner: ModuleType) -> None:
    path = fresh_dir() / "notes.txt"
    path.write_text("someone's notes\n")
    expect_refusal(learner, path, _("an ordinary file"))
    assert path.is_file() and path.read_text() == "someone's notes\n", _(
        "serve() deleted or changed an ordinary file at its path: only a stale *socket* file may go.")


@pytest.mark.title(N_("The socket file has mode 0600: another user cannot connect"))
def test_socket_file_is_private(server: EchoServer) -> None:
    path = Path(str(server.address))
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    assert mode == 0o600, _("the socket file has mode {mode}; make it 0600 (set os.umask(0o177) around bind(), "
                            "so it is never open to others, even for a moment).").format(mode=f"{mode:04o}")
    if os.geteuid() != 0:
        return  # only root can become another user; the mode above is what keeps them out
    verdict = connect_as_another_user(path)
    assert verdict == DENIED, _("user {user} could connect to your socket file ({verdict}); "
                                "the file's mode must keep other users out.").format(user=NOBODY, verdict=verdict)


def connect_as_another_user(path: Path) -> str:
    """Fork, drop to an unprivileged user, try to connect; the child's exit code says what happened."""
    pid = os.fork()
    if pid == 0:  # the child: never return into the check
        code = 3
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = probe(path)
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return {0: DENIED, 1: _("it connected"), 2: _("it failed for another reason"),
            4: _("the check's own directories kept it out, so the check proves nothing here")}.get(
        os.waitstatus_to_exitcode(status), _("the test child failed"))


def probe(path: Path) -> int:
    try:
        os.stat(path)  # the directories let this user through: a refusal below is the file's mode
    except PermissionError:
        return 4
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return 1
    except PermissionError:
        return 0
    except OSError as err:
        return 0 if err.errno == errno.EACCES else 2
    finally:
        sock.close()


@pytest.mark.title(N_("Removes its socket file when stopped"))
def test_removes_the_socket_file_when_stopped(server: EchoServer) -> None:
    path = Path(str(server.address))
    server.stop.set()
    assert server.thread.join(STOP_SECONDS), _("serve() was still running {seconds} s after stop was set.").format(
        seconds=f"{STOP_SECONDS:g}")
    server.fail_if_crashed(" " + _("while stopping"))
    assert not path.exists(), _("serve() returned but left {file} behind: remove the socket file "
                                "when the server stops, or the next start finds a stale one.").format(file=path.name)
