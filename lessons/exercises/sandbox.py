"""The process that runs pytest for one check and answers for everything it starts.

    python -m lessons.exercises.sandbox CONFIG.json

A learner's server may hang, fork, or fork twice and call setsid() to become a daemon
that no process group or session reaches. So this process first makes itself a *child
subreaper* (prctl PR_SET_CHILD_SUBREAPER, Linux 3.4+): any process below it whose
parent dies is re-parented to it instead of to init. Every leftover is then one of its
descendants, found by walking the ppid links in /proc. When pytest ends, or its time is
up, it writes down what is still running (and what each one listens on), kills it all,
reaps it, and leaves a JSON result for the runner.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lessons.toolkit import procfs
from lessons.toolkit.children import become_subreaper, reap_exited, signal_when_parent_dies
from lessons.exercises import containment

TCP_LISTEN = "0A"  # the st column of /proc/net/tcp
UNIX_ACCEPTING = 0x10000  # __SO_ACCEPTCON in the Flags column of /proc/net/unix
POLL_SECONDS = 0.02

_stop_requested = False


def stop_with_parent(parent: int) -> None:
    """If the runner dies (even by SIGKILL), the kernel sends us SIGTERM: we sweep and go."""
    if not signal_when_parent_dies(signal.SIGTERM, parent):  # it died before we asked
        request_stop(signal.SIGTERM, None)


def set_limits(memory: int | None, file_size: int | None) -> None:
    """Limits for everything we start: address space and the size of any file written.

    With SIGXFSZ ignored, a write past the file limit fails with EFBIG (an OSError the
    check can explain) instead of killing the writer outright.
    """
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if file_size:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))


def start_pytest(argv: list[str], output: str) -> int:
    """Start pytest with its output in a file, in a process group of its own (a learner's
    killpg(0, ...) stops at pytest, not at us); posix_spawn, so that only we ever reap it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, output, flags, 0o600),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setpgroup=0)


def wait_for(pid: int, time_limit: float) -> int | None:
    """pytest's exit code, or None if it was still running at the time limit."""
    deadline = time.monotonic() + time_limit
    while not _stop_requested and time.monotonic() < deadline:
        reaped = reap_exited()
        if pid in reaped:
            return reaped[pid]
        time.sleep(POLL_SECONDS)
    return None


# ----- who is left, and what they listen on -------------------------------------------


def descendants(root: int) -> list[procfs.ProcStat]:
    """Every process below `root`, found by following ppid links through /proc."""
    by_parent: dict[int, list[procfs.ProcStat]] = {}
    for pid in procfs.all_pids():
        info = procfs.read_stat(pid)
        if info is not None:
            by_parent.setdefault(info.ppid, []).append(info)
    found, todo = [], [root]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        entries = list(os.scandir(f"/proc/{pid}/fd"))
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_address(hex_address: str) -> str:
    """'0100007F:9C40' (as /proc/net/tcp writes it, little-endian words) -> '127.0.0.1:40000'."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    host = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(host)
    port = int(port_hex, 16)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def listening_sockets() -> dict[str, str]:
    """inode -> 'tcp 127.0.0.1:40000' or 'unix /path', for every listening socket in /proc/net."""
    found = {}
    for name in ("tcp", "tcp6"):
        for fields in _table(f"/proc/net/{name}"):
            if fields[3] == TCP_LISTEN:
                found[fields[9]] = f"tcp {tcp_address(fields[1])}"
    for fields in _table("/proc/net/unix"):
        if int(fields[3], 16) & UNIX_ACCEPTING:
            found[fields[6]] = "unix " + (fields[7] if len(fields) > 7 else "(unnamed)")
    return found


def _table(path: str) -> list[list[str]]:
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split() for line in lines]


def describe_leak(info: procfs.ProcStat, our_session: int, listening: dict[str, str]) -> dict[str, Any]:
    return {
        "pid": info.pid,
        "ppid": info.ppid,
        "state": info.state,
        "command": procfs.command(info.pid) or info.name,
        "own_session": info.session != our_session,
        "listening": sorted(listening[inode] for inode in socket_inodes(info.pid) if inode in listening),
    }


def kill_everything_below(root: int, timeout: float = 10.0) -> None:
    """SIGKILL every descendant until none is left; orphans come to us, so we reap them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [info.pid for info in descendants(root) if info.state != "Z"]
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_exited()
        if not alive and not descendants(root):
            return
        time.sleep(POLL_SECONDS)


def request_stop(signum: int, frame: Any) -> None:
    global _stop_requested
    _stop_requested = True


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop_with_parent(config["runner_pid"])
    me = os.getpid()
    containment.join(config.get("cgroup"))  # first: all we start is born inside
    subreaper = become_subreaper()
    started = time.monotonic()
    set_limits(config.get("memory_limit"), config.get("file_limit"))
    pytest_pid = start_pytest(config["argv"], config["output"])
    try:
        exit_code = wait_for(pytest_pid, config["time_limit"])
        elapsed = time.monotonic() - started
        leaked = survivors(me, pytest_pid)
    finally:
        kill_everything_below(me)  # whatever happened above, nothing outlives the sandbox
    result = {"exit_code": exit_code, "timed_out": exit_code is None and not _stop_requested,
              "interrupted": _stop_requested, "elapsed": elapsed, "leaked": leaked,
              "subreaper": subreaper}
    Path(config["result"]).write_text(json.dumps(result), encoding="utf-8")
    if os.getppid() != config["runner_pid"]:  # the runner is gone: nobody will read or remove it
        shutil.rmtree(Path(config_path).parent, ignore_errors=True)
    return 0


def survivors(me: int, pytest_pid: int) -> list[dict[str, Any]]:
    """Everything below us but pytest itself, described before it is killed."""
    reap_exited()  # orphans that already ended on their own are not leaks
    listening = listening_sockets()
    our_session = os.getsid(0)
    return [describe_leak(info, our_session, listening) for info in descendants(me)
            if info.pid != pytest_pid and not (info.state == "Z" and info.ppid == me)]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
