"""unix-send / unix-recv and lessons.toolkit.unixsock: stale and live files, modes, peer credentials, cleanup.

We run as root here, and root ignores file modes. So every claim about permissions is
also checked on the unprivileged path: a forked child drops to uid/gid 65534 (nobody)
after the imports and tries, and a control case shows the same child succeeding when
the mode allows it (so the refusal comes from the mode, not from something else).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import pytest

from lessons.toolkit.common import UserError
from lessons.unix_recv import Delivery, serve_one
from lessons.toolkit.unixsock import (MAX_PATH_BYTES, PEERCRED, bind_socket_file, bind_unix, clear_stale, file_identity,
                              is_live, peer_credentials, private_dir, remove_socket_file)
# The process helpers and the `start` fixture are shared with the struct lessons' tests.
from test_struct_lessons import DEADLINE, Log, Running, assert_one_sentence, child_env, run_lesson
from test_struct_lessons import start  # noqa: F401  (a fixture: pytest finds it by name in this module)

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")


def make_stale(path: Path) -> None:
    """A real stale socket file, as a crashed server leaves it: bind, then close without unlink."""
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()


@pytest.fixture
def open_dir():
    """A directory every user may enter (0755), so only the socket file's own mode decides."""
    path = Path(tempfile.mkdtemp(prefix="learn-t-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def isolated_tmp(monkeypatch):
    """tempfile.gettempdir() (where private_dir lives) pointed at a fresh world-writable dir, like /tmp."""
    path = Path(tempfile.mkdtemp(prefix="learn-tmp-", dir="/tmp"))
    path.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(action: Callable[[], str]) -> str:
    """Run `action` in a forked child that has become uid/gid 65534; returns what it reports."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        result = "child failed"
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = action()
        except BaseException as err:  # reported to the parent, which asserts on it
            result = f"{type(err).__name__}: {err}"
        finally:
            os.write(write_end, result.encode()[:4000])
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()  # EOF when the child exits
    os.waitpid(pid, 0)
    return report


def connect_and_say(path: Path, message: bytes = b"hi") -> Callable[[], str]:
    def action() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(DEADLINE)
            sock.connect(str(path))
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
            return "reply: " + sock.recv(100).decode()

    return action


def receive_in_thread(listener: socket.socket) -> tuple[threading.Thread, list[Delivery]]:
    results: list[Delivery] = []
    listener.settimeout(DEADLINE)
    thread = threading.Thread(target=lambda: results.append(serve_one(listener, Log())), daemon=True)
    thread.start()
    return thread, results


# ---------------------------------------------------------------- unixsock, in process

def test_a_stale_file_is_removed_and_a_live_one_kept(tmp_path):
    path = tmp_path / "s.sock"
    make_stale(path)
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and not is_live(path)
    assert clear_stale(path) is True and not path.exists()
    with bind_unix(path):
        with pytest.raises(UserError, match="already listening"):
            bind_unix(path)
        assert is_live(path)
    remove_socket_file(path)
    assert not path.exists()


@pytest.mark.timeout(30)
def test_a_server_with_a_full_accept_queue_counts_as_live(tmp_path):
    """A blocking connect() would wait for room in the queue; the probe must not hang or say stale."""
    path = tmp_path / "busy.sock"
    waiting = []
    with bind_unix(path, backlog=0):
        try:
            while len(waiting) < 100:
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                waiting.append(client)
                client.setblocking(False)
                client.connect(str(path))
        except BlockingIOError:
            pass  # the queue is full now
        assert is_live(path)
        with pytest.raises(UserError, match="already listening"):
            bind_unix(path)
    for client in waiting:
        client.close()


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    with pytest.raises(UserError, match="not a socket file"):
        bind_unix(path)
    assert path.read_text() == "keep me"


def test_remove_socket_file_leaves_a_newer_servers_file_alone(tmp_path):
    path = tmp_path / "s.sock"
    make_stale(path)
    ours = file_identity(path)
    path.unlink()
    with bind_unix(path):  # someone else's server took the name (often with the same inode number)
        remove_socket_file(path, ours)
        assert path.exists()
        remove_socket_file(path, file_identity(path))
        assert not path.exists()


def test_the_socket_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        with bind_unix(tmp_path / "s.sock"):
            assert stat.S_IMODE(os.stat(tmp_path / "s.sock").st_mode) == 0o600
    finally:
        os.umask(old)


def test_private_dir_is_created_0700(isolated_tmp):
    path = private_dir()
    info = os.lstat(path)
    assert path.parent == isolated_tmp and stat.S_ISDIR(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()
    assert private_dir() == path  # and accepted the second time


@pytest.mark.parametrize("plant", ["open-mode", "group-bit", "a-symlink", "a-file"])
def test_private_dir_refuses_what_it_cannot_trust(isolated_tmp, tmp_path, plant):
    target = isolated_tmp / f"learn-{os.geteuid()}"
    if plant == "open-mode":
        target.mkdir()
        target.chmod(0o755)
    elif plant == "group-bit":
        target.mkdir()
        target.chmod(0o710)
    elif plant == "a-symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        target.symlink_to(tmp_path / "elsewhere")
    else:
        target.write_text("")
    with pytest.raises(UserError, match="not a private directory"):
        private_dir()


@as_root
def test_private_dir_refuses_a_directory_owned_by_another_user(isolated_tmp):
    target = isolated_tmp / f"learn-{os.geteuid()}"
    target.mkdir(mode=0o700)
    os.chown(target, NOBODY, NOBODY)
    with pytest.raises(UserError, match="not a private directory"):
        private_dir()


@as_root
def test_private_dir_as_an_ordinary_user(isolated_tmp):
    """Unprivileged: a planted directory owned by root is refused; its own is created 0700."""
    planted = isolated_tmp / f"learn-{NOBODY}"
    planted.mkdir(mode=0o700)

    def try_it() -> str:
        try:
            private_dir()
            return "accepted"
        except UserError as err:
            return f"refused: {err}"

    assert as_nobody(try_it).startswith("refused")
    planted.rmdir()
    assert as_nobody(try_it) == "accepted"
    info = os.lstat(planted)
    assert info.st_uid == NOBODY and stat.S_IMODE(info.st_mode) == 0o700


@as_root
def test_mode_0600_keeps_another_user_out_and_0666_lets_them_in(open_dir):
    path = open_dir / "s.sock"
    with bind_unix(path, mode=0o600):
        assert os.stat(path).st_uid == 0
        assert as_nobody(connect_and_say(path)).startswith("PermissionError")
    with bind_unix(path, mode=0o666) as listener:  # the control: same child, same dir, open mode
        thread, _results = receive_in_thread(listener)
        assert as_nobody(connect_and_say(path)).startswith("reply: 收到了")
        thread.join(DEADLINE)
    remove_socket_file(path)


@as_root
def test_another_users_stale_file_is_refused_not_removed(open_dir):
    path = open_dir / "s.sock"
    make_stale(path)
    path.chmod(0o600)

    def try_to_bind() -> str:
        try:
            bind_unix(path).close()
            return "bound"
        except UserError as err:
            return f"refused: {err}"

    assert as_nobody(try_to_bind).startswith("refused: not allowed to connect")
    assert stat.S_ISSOCK(os.lstat(path).st_mode)  # still there: not ours to judge or remove


@as_root
def test_the_private_directory_alone_keeps_another_user_out(isolated_tmp):
    path = private_dir() / "s.sock"
    with bind_unix(path, mode=0o666):  # even an open file is unreachable through a 0700 directory
        assert as_nobody(connect_and_say(path)).startswith("PermissionError")
    remove_socket_file(path)


@as_root
def test_peer_credentials_name_an_unprivileged_sender(open_dir):
    path = open_dir / "s.sock"
    with bind_unix(path, mode=0o666) as listener:
        thread, results = receive_in_thread(listener)
        report = as_nobody(lambda: f"{os.getpid()} " + connect_and_say(path, b"from nobody")())
        thread.join(DEADLINE)
    remove_socket_file(path)
    child_pid = int(report.split()[0])
    delivery = results[0]
    assert (delivery.peer.pid, delivery.peer.uid, delivery.peer.gid) == (child_pid, NOBODY, NOBODY)
    assert delivery.message == b"from nobody"


# ---------------------------------------------------------------- the CLI, as processes

def listening(receiver: Running, where: str) -> None:
    receiver.wait_for(rf"^listening on {where}$")


def test_cli_stale_file_is_removed_and_said(start, tmp_path):
    path = tmp_path / "lesson.sock"
    make_stale(path)
    receiver = start("unix-recv", "--path", str(path), "--once")
    receiver.wait_for(r"removed a stale socket file")
    listening(receiver, str(path))
    sender = run_lesson("unix-send", "--path", str(path), "--message", "after the stale file")
    assert sender.returncode == 0, sender.stderr
    code, out, err = receiver.finish()
    assert code == 0, err
    assert "after the stale file" in out and not path.exists()


def test_cli_live_file_is_not_stolen(start, tmp_path):
    path = tmp_path / "lesson.sock"
    first = start("unix-recv", "--path", str(path))
    listening(first, str(path))
    second = run_lesson("unix-recv", "--path", str(path))
    assert_one_sentence(second, "already listening")
    assert path.exists()
    sender = run_lesson("unix-send", "--path", str(path), "--message", "still here")
    assert sender.returncode == 0, sender.stderr
    first.wait_for(r"recv .*still here")


def test_cli_default_path_is_private_and_0600(start, tmp_path):
    env = child_env()
    env["TMPDIR"] = str(tmp_path)
    receiver = start("unix-recv", env=env)
    folder = tmp_path / f"learn-{os.geteuid()}"
    path = folder / "unix-lesson.sock"
    listening(receiver, str(path))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(path).st_mode)
    receiver.wait_for(r"socket file mode 0600, directory .* mode 0700")
    sender = subprocess.run([sys.executable, "-m", "lessons", "run", "unix-send"], env=env,
                            capture_output=True, text=True, timeout=DEADLINE)
    assert sender.returncode == 0 and "收到了" in sender.stdout, sender.stderr


def test_cli_planted_private_dir_is_one_sentence(tmp_path):
    (tmp_path / f"learn-{os.geteuid()}").mkdir(mode=0o777)
    os.chmod(tmp_path / f"learn-{os.geteuid()}", 0o777)
    env = child_env()
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "lessons", "run", "unix-recv"], env=env,
                            capture_output=True, text=True, timeout=DEADLINE)
    assert_one_sentence(result, "not a private directory")


def test_cli_peer_credentials_match_the_sender_process(start, tmp_path):
    path = tmp_path / "lesson.sock"
    receiver = start("unix-recv", "--path", str(path), "--once")
    listening(receiver, str(path))
    sender = subprocess.Popen([sys.executable, "-m", "lessons", "run", "unix-send", "--path", str(path)],
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = sender.communicate(timeout=DEADLINE)
    finally:
        sender.kill()
    assert sender.returncode == 0, err
    credentials = receiver.wait_for(r"connection from pid (\d+) \(.*\) uid (\d+) \(.*\) gid (\d+)")
    assert int(credentials.group(1)) == sender.pid
    assert (int(credentials.group(2)), int(credentials.group(3))) == (os.getuid(), os.getgid())
    assert f"as pid {sender.pid} uid {os.getuid()}" in out


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_socket_file_removed_on_signal(start, tmp_path, how):
    path = tmp_path / "lesson.sock"
    receiver = start("unix-recv", "--path", str(path))
    listening(receiver, str(path))
    assert path.exists()
    receiver.process.send_signal(how)
    code, out, err = receiver.finish()
    assert code == 0, err
    assert f"stopped by {how.name}" in out and f"removed {path}" in out
    assert not path.exists()
    assert "Traceback" not in out + err


def test_cli_receiver_leaves_a_newer_servers_file_alone(start, tmp_path):
    """Ours was deleted (a tmp cleaner) and another server bound the path: not ours to remove."""
    path = tmp_path / "lesson.sock"
    receiver = start("unix-recv", "--path", str(path))
    listening(receiver, str(path))
    path.unlink()
    with bind_unix(path):
        receiver.process.send_signal(signal.SIGTERM)
        code, out, err = receiver.finish()
        assert code == 0, err
        assert path.exists(), "the stopping receiver deleted a newer server's socket file"
        assert f"left {path} alone" in out and f"removed {path}" not in out


def test_cli_receiver_survives_bad_senders(start, tmp_path):
    path = tmp_path / "lesson.sock"
    receiver = start("unix-recv", "--path", str(path))
    listening(receiver, str(path))
    with socket.socket(socket.AF_UNIX) as quiet:  # connects and leaves without a word
        quiet.connect(str(path))
    receiver.wait_for(r"closed without a message")
    with socket.socket(socket.AF_UNIX) as flood:  # more than a message may be
        flood.connect(str(path))
        flood.settimeout(DEADLINE)
        try:
            flood.sendall(b"x" * (200 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the receiver hung up on us, which is the point
    receiver.wait_for(r"dropped the sender: the message is longer than")
    sender = run_lesson("unix-send", "--path", str(path), "--message", "a good one")
    assert sender.returncode == 0, sender.stderr
    receiver.wait_for(r"recv .*a good one")


def test_cli_abstract_namespace_leaves_no_file(start, tmp_path):
    name = f"learn-test-{os.getpid()}"
    receiver = start("unix-recv", "--abstract", name, "--once")
    listening(receiver, f"@{name}")
    assert any(line.endswith(f" @{name}") for line in Path("/proc/net/unix").read_text().splitlines())
    sender = run_lesson("unix-send", "--abstract", name, "--message", "no file")
    assert sender.returncode == 0, sender.stderr
    code, out, _ = receiver.finish()
    assert code == 0 and "no file" in out and "removed" not in out


@pytest.mark.parametrize("args, fragment", [
    (("unix-recv", "--path", "/tmp/" + "x" * (MAX_PATH_BYTES + 1)), "Unix socket paths are limited"),
    (("unix-send", "--path", "/tmp/" + "x" * (MAX_PATH_BYTES + 1)), "Unix socket paths are limited"),
    (("unix-recv", "--abstract", "x" * (MAX_PATH_BYTES + 1)), "too long"),
    (("unix-recv", "--abstract", "x", "--path", "/tmp/x"), "not both"),
    (("unix-recv", "--path", "/no/such/dir/s.sock"), "does not exist"),
])
def test_cli_bad_paths_are_one_sentence(args, fragment):
    assert_one_sentence(run_lesson(*args), fragment)


def test_cli_sender_to_missing_and_stale_files_is_one_sentence(tmp_path):
    path = tmp_path / "lesson.sock"
    assert_one_sentence(run_lesson("unix-send", "--path", str(path)), "no socket file")
    make_stale(path)
    assert_one_sentence(run_lesson("unix-send", "--path", str(path)), "nothing accepts connections")


def test_demo_runs_by_itself_and_leaves_nothing_behind(tmp_path):
    env = child_env()
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "lessons", "run", "unix-recv", "--demo"], env=env,
                            capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in ("ConnectionRefusedError", "removed a stale socket file", "socket file mode 0600",
                 "a second receiver on the same path is refused", "they match", "exists after exit: False"):
        assert step in out, step
    if os.geteuid() == 0:
        assert "uid 65534 (nobody) tries to connect: PermissionError" in out
    assert list((tmp_path / f"learn-{os.geteuid()}").iterdir()) == []
    assert "Traceback" not in out + result.stderr


def test_peer_credentials_unpack_uids_above_two_to_the_31_as_unsigned():
    """uid_t and gid_t are unsigned: a uid of 3,000,000,000 must not come out negative
    (the chat's admin check would then refuse the server's own user)."""
    raw = struct.pack("iII", 4242, 3_000_000_000, 4_000_000_000)  # what the kernel fills in
    assert PEERCRED.size == len(raw) == 12
    assert PEERCRED.unpack(raw) == (4242, 3_000_000_000, 4_000_000_000)


def test_peer_credentials_of_a_real_connection_name_this_process(tmp_path):
    with bind_unix(tmp_path / "s.sock") as server:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(tmp_path / "s.sock"))
        accepted, _ = server.accept()
        try:
            assert peer_credentials(accepted) == (os.getpid(), os.geteuid(), os.getegid())
        finally:
            accepted.close()
            client.close()


def test_a_socket_file_removes_itself_only_while_it_is_still_ours(tmp_path):
    path = tmp_path / "s.sock"
    server, ours = bind_socket_file(path)
    server.close()
    path.unlink()  # a tmp cleaner removed it, and a newer server took the name
    with bind_unix(path):
        assert ours.remove() is False and path.exists()
    server, ours = bind_socket_file(path)  # bind_unix replaces the stale file
    server.close()
    assert ours.remove() is True and not path.exists()
    assert ours.remove() is False  # gone already: nothing to do, no error
