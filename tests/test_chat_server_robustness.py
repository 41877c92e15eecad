"""Server behaviour no client can see through the protocol: descriptors running out, keepalive.

Both are checked from the outside, on a real server process: the EMFILE test lowers the
server's open-file limit and floods it; the keepalive test reads the kernel's own view of
the server's socket in /proc/net/tcp.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from chatserver import ENGINES, ServerProcess, run_admin_cli, run_failing_server
from chatwire import Kind, PeerClosed, WireClient

FD_LIMIT = 48  # the server needs about a dozen for itself; the rest is for clients


def lower_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / 100


def is_closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_running_out_of_descriptors_neither_spins_nor_crashes() -> None:
    with ServerProcess.start("--port", "0", "--join-timeout", "30", preexec_fn=lower_fd_limit) as server:
        member = server.connect("member")
        member.join("steady")
        flood = [socket.create_connection(server.address, timeout=10) for _ in range(FD_LIMIT + 20)]
        try:
            # Past the limit, each extra connection is accepted with the spare descriptor
            # and closed at once; so some of the flood must see the server close on them.
            refused = [sock for sock in flood[-20:] if is_closed_by_server(sock, timeout=10)]
            assert refused, "no connection was refused although the server ran out of descriptors"
            before = cpu_seconds(server.process.pid)
            started = time.monotonic()
            member.send_frame(Kind.PING, b"still there?")
            member.expect(Kind.PONG, b"still there?")
            time.sleep(0.5)  # not for ordering: a spinning loop is only visible as CPU used over a window
            used = cpu_seconds(server.process.pid) - before
            assert used < 0.5 * (time.monotonic() - started), f"the server used {used:.2f} s of CPU while idle: spinning"
        finally:
            for sock in flood:
                sock.close()
        late = server.connect("late")  # descriptors came back: new members get in again
        late.join("late")
        member.expect(Kind.JOINED, "late")
        assert server.process.poll() is None, server.diagnostics()
        # Finding 2: one summary line a second, not one line per refused connection.
        summaries = [line for line in server.stdout.text.splitlines() if "refused" in line]
        assert summaries and len(summaries) <= 2 + (time.monotonic() - started), summaries
        assert all(re.search(r"refused [\d,]+ (chat )?connections?: ", line) for line in summaries), summaries


@pytest.mark.parametrize("engine", ENGINES)
def test_the_administrator_gets_in_while_a_flood_holds_every_descriptor(engine: str) -> None:
    """Chat connections are refused a few descriptors before the open-file limit, so the
    admin socket is still served (finding 4, on every engine)."""
    options = ("--engine", engine, "--port", "0", "--join-timeout", "0")
    with ServerProcess.start(*options, preexec_fn=lower_fd_limit) as server:
        flood = [socket.create_connection(server.address, timeout=10) for _ in range(FD_LIMIT + 20)]
        try:
            assert is_closed_by_server(flood[-1], timeout=10)
            assert server.members() == []
            result = run_admin_cli("say", "still in charge", "--socket", server.admin_path)
            assert result.returncode == 0, result.stderr
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + 10
        while "ulimit -n" not in server.stdout.text:
            assert time.monotonic() < deadline, server.stdout.text
            time.sleep(0.05)  # polling for the log line, with a deadline
        assert re.search(rf"refused [\d,]+ chat connections?: the server may open {FD_LIMIT} files \(ulimit -n\)",
                         server.stdout.text), server.stdout.text


def tcp_table_row(local_port: int, remote_port: int) -> list[str] | None:
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == remote_port:
            return fields
    return None


def test_chat_connections_have_tcp_keepalive_armed() -> None:
    with ServerProcess.start("--port", "0") as server:
        member: WireClient = server.connect("member")
        member.join("kept-alive")
        client_port = member.sock.getsockname()[1]
        row = tcp_table_row(server.port, client_port)  # the server's end of this connection
        assert row is not None, "the server's socket is not in /proc/net/tcp"
        timer, when = row[5].split(":")  # "tr:tm->when": timer kind, then jiffies (USER_HZ=100) left
        assert timer == "02", f"no keepalive timer on the server's socket (timer kind {timer})"
        assert 50 * 100 <= int(when, 16) <= 60 * 100, f"keepalive fires in {int(when, 16) / 100} s, not about 60 s"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_right_after_the_banner_is_still_clean(signum: int) -> None:
    """The banner is printed only once the signal handlers are in place."""
    for _ in range(3):
        server = ServerProcess.start("--port", "0")
        try:
            server.signal(signum)
            assert server.wait_exit(10) == 0, server.diagnostics()
            assert not os.path.exists(server.admin_path), "the admin socket file was left behind"
        finally:
            server.stop()


def test_a_stopping_server_leaves_its_successors_socket_files_alone(tmp_path) -> None:
    """Finding 6: server A's files were removed (a tmp cleaner), server B bound the same
    paths, A stopped: A must not delete B's files. Both the chat's and the admin socket."""
    chat_path = tmp_path / "chat.sock"
    with ServerProcess.start("--unix", str(chat_path)) as first:
        paths = [chat_path, Path(first.admin_path)]
        successors = []
        for path in paths:
            path.unlink()
            successor = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            successor.bind(str(path))
            successor.listen()
            successors.append((successor, os.lstat(path).st_ino))
        first.signal(signal.SIGTERM)
        assert first.wait_exit(10) == 0, first.diagnostics()
    try:
        for path, (_, inode) in zip(paths, successors):
            assert path.exists(), f"the stopping server deleted its successor's {path.name}"
            assert os.lstat(path).st_ino == inode
    finally:
        for successor, _ in successors:
            successor.close()


def test_a_stopping_server_still_removes_its_own_socket_files(tmp_path) -> None:
    chat_path = tmp_path / "chat.sock"
    with ServerProcess.start("--unix", str(chat_path)) as server:
        admin_path = Path(server.admin_path)
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0, server.diagnostics()
    assert not chat_path.exists() and not admin_path.exists()


def test_member_socket_options_are_set_on_a_chat_socket() -> None:
    """Keepalive probes only idle connections; TCP_USER_TIMEOUT gives up on unacknowledged
    data after the same 90 s, so a vanished member of a busy room is found too. No Nagle
    delay, and the kernel may not grow a stuck member's send buffer to megabytes."""
    from capstone.server import MEMBER_SNDBUF, USER_TIMEOUT_MS, tune_member_socket

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    try:
        tune_member_socket(server_side)
        assert server_side.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert server_side.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * MEMBER_SNDBUF  # Linux doubles it
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT_MS == 90_000
    finally:
        for sock in (client, server_side, listener):
            sock.close()


def test_select_keeps_descriptors_for_the_administrator() -> None:
    """Finding 4: with select(), chat connections are refused a little before FD_SETSIZE
    (lowered to 48 here through the backend's test hook, instead of opening 1,000
    connections), so the admin socket still gets in; one summary line says why."""
    env = dict(os.environ, LEARN_TEST_FD_SETSIZE="48")
    with ServerProcess.start("--engine", "select", "--port", "0", "--join-timeout", "0", env=env) as server:
        flood = [server.connect(f"idle{i}") for i in range(48)]
        served = refused = 0
        for client in flood:
            try:
                client.send_frame(Kind.PING, b"in?")
                client.expect(Kind.PONG, b"in?")
                served += 1
            except (PeerClosed, OSError):
                refused += 1
        assert served and refused, f"{served} served, {refused} refused"
        assert server.members() == []  # the administrator still gets in
        joined = next(client for client in flood if client.closed_by_peer is None)
        joined.join("still-served")
        assert server.members() == ["still-served"]
        pattern = re.compile(r"refused (\d+) chat connections?: select\(\) watches descriptors below 48 only")
        deadline = time.monotonic() + 10
        while sum(int(m.group(1)) for m in pattern.finditer(server.stdout.text)) < refused:
            assert time.monotonic() < deadline, server.stdout.text
            time.sleep(0.05)  # polling for the summary line (due a second after the first), with a deadline
        summaries = [line for line in server.stdout.text.splitlines() if "refused" in line]
        assert len(summaries) <= 2, f"not summarised: {summaries}"  # the first at once, the rest a second later
        for client in flood:
            client.close()


@pytest.mark.parametrize("option", ["--max-buffered", "--max-queue"])
def test_a_bad_output_bound_is_one_sentence_and_exit_2(option: str) -> None:
    result = run_failing_server("--port", "0", option, "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and option in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_on_the_servers_terminal_is_one_line_on_a_fresh_line() -> None:
    import pty
    import select

    from chatserver import serve_command

    pid, terminal = pty.fork()
    if pid == 0:  # the child: the server, with the pseudo-terminal as its terminal
        os.execv(sys.executable, serve_command("--port", "0"))
    output = b""

    def read_until(done, seconds: float) -> None:  # noqa: ANN001
        nonlocal output
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.2)[0]:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # the server exited: the terminal is closed
                    return
                if not chunk:
                    return
                output += chunk

    try:
        read_until(lambda: b"Ctrl-C stops the server" in output, 30)
        os.write(terminal, b"\x03")  # Ctrl-C typed on the terminal: echoed as ^C
        read_until(lambda: False, 5)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    after = re.sub(rb"\x1b\[[0-9;]*m", b"", output.split(b"Ctrl-C stops the server", 1)[1]).decode()
    lines = [line for line in after.replace("\r", "").split("\n") if line.strip()]
    assert lines[0] == "^C" and len(lines) == 2 and "stopping" in lines[1], after
