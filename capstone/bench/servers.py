"""Start the chat servers a benchmark measures, and read their memory and CPU from /proc.

The generator starts every server itself, so it knows the pid to watch: VmHWM (the peak
resident set) and utime+stime come from /proc/<pid>/, and for the fork engine the
children are found by walking /proc for processes whose parent is the server.
"""

from __future__ import annotations

import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from lessons.toolkit.common import RunFailure, UserError
from lessons.toolkit.i18n import _

ENGINES = ("epoll", "poll", "select", "selectors", "fork")
PEERS = ("asyncio", "uvloop")
TARGETS = PEERS + ENGINES
BIG_QUEUE = 256 * 1024 * 1024  # --max-queue for benchmark runs: never the thing measured
# What `learn bench chat` and `scale` run our engines with: no limit is the thing measured.
UNLIMITED = ("--rate-limit", "0", "--max-queue", str(BIG_QUEUE))
START_TIMEOUT = 30.0


def parse_targets(text: str) -> list[str]:
    """'asyncio,epoll' -> ['asyncio', 'epoll']; 'all' -> every target; unknown -> UserError."""
    if text.strip() == "all":
        return list(TARGETS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise UserError(_("unknown server {names!r}; choose from {choices} or all.").format(names=', '.join(unknown) or text, choices=', '.join(TARGETS)))
    return list(dict.fromkeys(names))  # keep the order, drop repeats


def uvloop_missing() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return True
    return False


def server_command(target: str, workdir: str, options: tuple[str, ...] = UNLIMITED, port: int = 0) -> list[str]:
    """The argv that starts `target` on loopback (`port` 0: one the kernel picks), with
    `options` for our engines."""
    if target in PEERS:
        argv = [sys.executable, "-m", "capstone.bench.peers.asyncio_chat", "--port", "0"]
        return argv + (["--uvloop"] if target == "uvloop" else [])
    return [
        sys.executable, "-m", "lessons", "chat", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--engine", target, *options, "--admin-socket", os.path.join(workdir, "admin.sock"),
    ]


def raise_fd_limit(needed: int, fewer: str) -> int:
    """Raise our soft open-file limit to the hard one (a server we start inherits it).

    Returns the hard limit; a UserError says what to do when even that is below `needed`
    (`fewer` names the option to lower, e.g. "--members").
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise UserError(_("{needed} descriptors are needed but the hard open-file limit is {hard}; "
                          "use fewer {fewer} or raise the limit (ulimit -Hn).").format(needed=needed, hard=hard, fewer=fewer))
    return hard


@dataclass
class RunningServer:
    """A chat server child process: its pid, its address, and its last output lines."""

    target: str
    process: subprocess.Popen
    workdir: str
    host: str = ""
    port: int = 0
    irc_port: int = 0  # when started with irc=True
    tail: deque = field(default_factory=lambda: deque(maxlen=20))

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGTERM (the server's clean shutdown), then SIGKILL if it lingers; remove its files."""
        self.terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def last_error(self) -> str:
        """The last line the server wrote to stderr, for a one-sentence failure."""
        try:
            lines = Path(self.workdir, "stderr.txt").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


@dataclass
class Nodes:
    """The servers of one measured setup (one server, or the nodes of a cluster): where the
    members connect, and whose CPU and memory count."""

    setup: str
    servers: list[RunningServer]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Distinct addresses: one for nodes sharing a port, one per node otherwise."""
        return list(dict.fromkeys((server.host, server.port) for server in self.servers))

    @property
    def pids(self) -> list[int]:
        return [server.pid for server in self.servers]

    def cpu_seconds(self) -> float:
        return sum(self.cpu_seconds_each())

    def cpu_seconds_each(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def memory_kib(self) -> int:
        return sum(tree_kib(pid) for pid in self.pids)

    def memory(self) -> Memory:
        """memory_of() summed over the nodes: peak RSS, PSS and processes."""
        each = [memory_of(pid) for pid in self.pids]
        return Memory(sum(m.peak_rss_kib for m in each), sum(m.pss_kib for m in each), sum(m.processes for m in each))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def last_words(self) -> str:
        """Each server's last log line, to explain a failure (empty when they said nothing)."""
        lines = [f"{server.pid}: {server.tail[-1]}" for server in self.servers if server.tail]
        return (" " + _("The servers' last log lines: {lines}").format(lines=" | ".join(lines))) if lines else ""


BANNER_LINES = 3  # listening on, admin socket, irc listening on


def drain_output(server: RunningServer, head: queue.Queue) -> None:
    """Read the server's stdout to the end, so its log never fills the pipe and blocks it;
    the banner's lines also go to `head`, for start_server."""
    stream = server.process.stdout
    assert stream is not None
    for number, raw in enumerate(stream):
        line = raw.decode(errors="replace").rstrip("\n")
        if number < BANNER_LINES:
            head.put(line)
        server.tail.append(line)
    head.put("")  # EOF before (or after) the banner


def start_server(target: str, options: tuple[str, ...] = UNLIMITED, memory_limit: int = 0,
                 irc: bool = False, port: int = 0) -> RunningServer:
    """Start `target` and wait (with a deadline) for its "listening on HOST:PORT" line (and,
    with `irc`, an IRC listener and its "irc listening on HOST:PORT" line, the third).

    `memory_limit` (bytes, 0 = none) caps the server's address space (RLIMIT_AS), so a
    server that bloats fails with MemoryError instead of taking the machine with it.
    """
    if target == "uvloop" and uvloop_missing():
        raise UserError(_("uvloop is not installed: pip install 'learn-netprog[fast]'."))
    workdir = tempfile.mkdtemp(prefix="learn-bench-")
    if irc:
        options = (*options, "--irc-port", "0")
    with open(os.path.join(workdir, "stderr.txt"), "wb") as errors:
        process = subprocess.Popen(
            server_command(target, workdir, options, port), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=errors,
        )
    if memory_limit:  # set from outside before it has done much: no preexec_fn in a threaded parent
        resource.prlimit(process.pid, resource.RLIMIT_AS, (memory_limit, memory_limit))
    server = RunningServer(target, process, workdir)
    head: queue.Queue = queue.Queue()
    threading.Thread(target=drain_output, args=(server, head), daemon=True).start()
    server.host, server.port = host_and_port(_banner_line(server, head, "listening on "))
    if irc:
        _banner_line(server, head, "admin socket ")
        server.irc_port = host_and_port(_banner_line(server, head, "irc listening on "))[1]
    return server


def _banner_line(server: RunningServer, head: queue.Queue, starts: str) -> str:
    """The next line of the server's banner, which must start with `starts`; what follows it."""
    try:
        line = head.get(timeout=START_TIMEOUT)
    except queue.Empty:
        line = ""
    if not line.startswith(starts):
        server.terminate()  # now its stderr file is complete
        reason = server.last_error() or line or f"no '{starts.strip()}' line within {START_TIMEOUT:.0f} s"
        server.stop()
        raise RunFailure(_("the {target} server did not start: {reason}").format(target=server.target, reason=reason))
    return line.removeprefix(starts)


def host_and_port(text: str) -> tuple[str, int]:
    host, _colon, port = text.rpartition(":")
    return host, int(port)


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (the fork engine's per-client processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), 0 if the process is gone."""
    return _kib_field(f"/proc/{pid}/status", key)


def tree_kib(pid: int) -> int:
    """The server's memory now: its own RSS plus its children's PSS (the fork engine's relays).

    The children's RSS would count the pages they share with their parent once per child.
    """
    return status_kib(pid, "VmRSS") + sum(pss_kib(child) for child in children_of(pid))


def pss_kib(pid: int) -> int:
    """Proportional set size: pages shared by n processes count 1/n each, so sums are honest."""
    return _kib_field(f"/proc/{pid}/smaps_rollup", "Pss")


def _kib_field(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Memory:
    """The server's memory: its own peak RSS, and the PSS of it plus its children now."""

    peak_rss_kib: int
    pss_kib: int
    processes: int


def memory_of(pid: int) -> Memory:
    """Sampled while the members are connected. For the fork engine the children's RSS would
    count the pages they share with the hub once per child; their PSS does not."""
    tree = [pid, *children_of(pid)]
    return Memory(status_kib(pid, "VmHWM"), sum(pss_kib(each) for each in tree), len(tree))


def cpu_seconds(pid: int) -> float:
    """CPU time of the server and its living children, from the scheduler (ns, not ticks)."""
    total = 0
    for each in [pid, *children_of(pid)]:
        for task in Path(f"/proc/{each}/task").glob("*/schedstat"):
            try:
                total += int(task.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # that thread just ended
    return total / 1e9
