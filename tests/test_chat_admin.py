"""`learn chat admin` and the admin socket's path: the rule, then the command on a real server.

The path rule is unit-tested with XDG_RUNTIME_DIR set, unset and empty, and with a
private directory that someone else planted. Permissions are also tested on the
unprivileged path (we run as root, which would pass any permission check): a forked
child drops to uid/gid 65534 after the imports and reports back through a pipe.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import pytest
from chatserver import ServerProcess, OutputPipe, world_readable_dir

from capstone.admin import admin_socket_path, run_admin
from capstone.codec import ErrorCode, Kind
from capstone.paths import default_admin_socket
from lessons.toolkit.common import UserError

NOBODY = 65534
TIMEOUT = 30.0


def admin_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lessons", "chat", "admin", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def env_without_xdg() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}


def as_nobody(action: Callable[[], str]) -> str:
    """Run `action` in a forked child as uid/gid 65534; its result (or error) as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, act, report, and never return into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                report = "ok " + action()
            except BaseException as err:  # noqa: BLE001 - the parent checks what it was
                report = f"{type(err).__name__} {err}"
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    return report


@pytest.fixture
def private_tmp(monkeypatch):
    """tempfile.gettempdir() is a fresh sticky, world-writable directory (like /tmp), no XDG.

    Not pytest's tmp_path: that lives below a 0700 directory the unprivileged child cannot enter.
    """
    directory = Path(tempfile.mkdtemp(prefix="learn-paths-test-", dir="/tmp"))
    directory.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield directory
    shutil.rmtree(directory)


# ----- the path rule ------------------------------------------------------------------------------

def test_xdg_runtime_dir_is_used_when_set(monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_admin_socket(5000) == Path("/run/user/1000/learn-chat-5000.sock")
    assert default_admin_socket() == Path("/run/user/1000/learn-chat-8888.sock")


@pytest.mark.parametrize("xdg", [None, ""], ids=["unset", "empty"])
def test_private_directory_when_xdg_is_unset_or_empty(monkeypatch, private_tmp, xdg) -> None:
    if xdg is not None:
        monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    path = default_admin_socket(5000)
    assert path == private_tmp / f"learn-{os.geteuid()}" / "chat-5000.sock"
    info = os.lstat(path.parent)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert default_admin_socket(5000) == path  # the second time the directory exists


def test_a_unix_chat_has_its_admin_socket_beside_it(monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_admin_socket(unix_path="/srv/chat.sock") == Path("/srv/chat.sock.admin")
    assert admin_socket_path(port=1, unix="/srv/chat.sock") == Path("/srv/chat.sock.admin")
    assert admin_socket_path(port=1, socket_path="/x/admin.sock") == Path("/x/admin.sock")


def test_a_planted_private_directory_is_refused(private_tmp) -> None:
    """The admin path goes through private_dir's check (its whole matrix: test_unix_lessons.py)."""
    planted = private_tmp / f"learn-{os.geteuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(UserError, match="not a private directory"):
        default_admin_socket(5000)


def test_an_unprivileged_user_gets_a_private_directory_of_its_own(private_tmp) -> None:
    report = as_nobody(lambda: str(default_admin_socket(5000)))
    expected = private_tmp / f"learn-{NOBODY}" / "chat-5000.sock"
    assert report == f"ok {expected}"
    info = os.lstat(expected.parent)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o700)


def test_an_unprivileged_user_refuses_a_directory_planted_by_another(private_tmp) -> None:
    (private_tmp / f"learn-{NOBODY}").mkdir(mode=0o700)  # owned by root, not by 65534
    report = as_nobody(lambda: str(default_admin_socket(5000)))
    assert report.startswith("UserError ") and "not a private directory" in report


# ----- the command on a real server ---------------------------------------------------------------

@pytest.fixture
def server():
    with ServerProcess.start("--port", "0") as running:
        yield running


def test_list_say_and_kick(server) -> None:
    port = ("--port", str(server.port))
    empty = admin_cli("list", *port)
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "the room is empty.\n")
    alice, bob = server.connect("alice"), server.connect("bob")
    try:
        alice.join("alice")
        bob.join("bob")
        alice.expect(Kind.JOINED, "bob")
        listed = admin_cli("list", *port)
        assert (listed.returncode, listed.stdout) == (0, "alice\nbob\n")

        said = admin_cli("say", "back", "in 5 minutes", *port)
        assert said.returncode == 0, said.stderr
        alice.expect(Kind.ANNOUNCE, "back in 5 minutes")
        bob.expect(Kind.ANNOUNCE, "back in 5 minutes")

        kicked = admin_cli("kick", "ALICE", *port)  # names compare as JOIN compares them
        assert kicked.returncode == 0, kicked.stderr
        assert alice.expect_error(ErrorCode.KICKED)
        alice.expect_closed(allow_reset=True)
        bob.expect(Kind.LEFT, "alice")
        assert admin_cli("list", *port).stdout == "bob\n"

        nobody = admin_cli("kick", "alice", *port)
        assert nobody.returncode == 1
        assert one_error_line(nobody) == "error: the server refused: nobody is called alice (NO_SUCH_MEMBER)."
    finally:
        alice.close()
        bob.close()


def test_a_kicked_pipe_client_exits_1_with_one_sentence(server) -> None:
    client = subprocess.Popen(
        [sys.executable, "-m", "lessons", "chat", "join", "--name", "carol", "--port", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = OutputPipe(client.stdout), OutputPipe(client.stderr)
    try:
        assert stdout.lines(1, TIMEOUT) == ["you are in the room as carol"], stderr.text
        assert admin_cli("kick", "carol", "--port", str(server.port)).returncode == 0
        assert client.wait(TIMEOUT) == 1
        assert stderr.wait_ended(TIMEOUT)
        assert stderr.text == "the administrator removed you from the room.\n"  # a notice, not an error (issue 10, 13)
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(10)
        for stream in (client.stdin, client.stdout, client.stderr):
            stream.close()


def test_missing_arguments_are_exit_2(server) -> None:
    for args in (["say"], ["kick"], ["list", "extra"]):
        result = admin_cli(*args, "--port", str(server.port))
        assert result.returncode == 2, args
        one_error_line(result)


def test_discovery_with_xdg_runtime_dir(tmp_path) -> None:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    with ServerProcess.start("--port", "0", env=env) as running:
        assert running.admin_path == str(tmp_path / f"learn-chat-{running.port}.sock")
        assert admin_cli("list", "--port", str(running.port), env=env).returncode == 0
        elsewhere = admin_cli("list", "--port", str(running.port), env=env_without_xdg())
        assert elsewhere.returncode == 2  # another rule, another place: nothing there
        assert "does not exist" in one_error_line(elsewhere)


def test_discovery_without_xdg_runtime_dir(monkeypatch) -> None:
    env = env_without_xdg()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with ServerProcess.start("--port", "0", env=env) as running:
        assert running.admin_path == str(default_admin_socket(running.port))
        result = admin_cli("list", "--port", str(running.port), env=env)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "the room is empty.\n")


def test_discovery_for_a_unix_chat_and_an_explicit_socket(tmp_path) -> None:
    chat = tmp_path / "chat.sock"
    with ServerProcess.start("--unix", str(chat)) as running:
        assert running.admin_path == f"{chat}.admin"
        assert admin_cli("list", "--unix", str(chat)).returncode == 0
    custom = tmp_path / "custom-admin.sock"
    with ServerProcess.start("--port", "0", "--admin-socket", str(custom)) as running:
        assert running.admin_path == str(custom)
        assert admin_cli("say", "hello", "--socket", str(custom)).returncode == 0


def test_no_server_is_exit_2(tmp_path) -> None:
    missing = admin_cli("list", "--socket", str(tmp_path / "none.sock"))
    assert missing.returncode == 2
    assert "does not exist" in one_error_line(missing)

    stale = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(stale))  # a socket file nobody listens on, as a crashed server leaves it
    leftover.close()
    refused = admin_cli("list", "--socket", str(stale))
    assert refused.returncode == 2
    assert "nothing answers" in one_error_line(refused)

    with ServerProcess.start("--unix", str(tmp_path / "chat.sock")) as running:
        admin_path = running.admin_path
    stopped = admin_cli("list", "--socket", admin_path)  # the server removed its socket files
    assert stopped.returncode == 2


# ----- permissions, on the unprivileged path --------------------------------------------------------

def test_another_user_cannot_reach_the_admin_socket(server) -> None:
    path = Path(server.admin_path)
    report = as_nobody(lambda: "\n".join(run_admin("list", [], path)))
    assert report.startswith("UserError you may not use the admin socket"), report


def test_the_server_ignores_another_user_even_through_an_open_socket_file() -> None:
    """Past the file mode (opened up here on purpose), SO_PEERCRED still keeps nobody out."""
    directory = world_readable_dir("learn-admin-test-")
    admin_path = directory / "admin.sock"
    try:
        with ServerProcess.start("--port", "0", "--admin-socket", str(admin_path)) as running:
            member = running.connect("alice")
            try:
                member.join("alice")
                admin_path.chmod(0o666)
                report = as_nobody(lambda: "\n".join(run_admin("say", ["you", "are", "hacked"], admin_path)))
                assert report.startswith("RunFailure the server closed the admin connection"), report
                assert f"uid {os.geteuid()}" in report, report
                member.assert_quiet()  # no ANNOUNCE reached the room
            finally:
                member.close()
    finally:
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()


def test_a_connection_the_server_drops_is_not_called_a_permission_problem(tmp_path) -> None:
    """Finding 4: a server out of descriptors accepts and closes the admin connection. The
    old message blamed permissions although the user was the server's own."""
    path = tmp_path / "admin.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    closer = threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True)
    closer.start()
    try:
        result = admin_cli("list", "--socket", str(path))
    finally:
        closer.join(10)
        listener.close()
    assert result.returncode == 1
    line = one_error_line(result)
    assert "may administer" not in line and "only the user" not in line, line
    assert "did not accept the admin connection" in line and "see its log" in line, line
