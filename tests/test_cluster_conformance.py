"""The conformance suite (tests/test_chat_conformance.py) over a room of two nodes.

The same tests, written from PROTOCOL.md alone, run against two `learn chat serve
--cluster` nodes sharing one room through a real NATS server: each test's connections
alternate between the nodes, so every conversation crosses the broker. The tests that
take the `guests` fixture are imported here, and pytest runs them with this module's
`guests`; the few left out say why below.
"""

from __future__ import annotations

import inspect
import itertools

import pytest

import test_chat_conformance as conformance
from chatserver import ServerProcess
from chatwire import WireClient
from natsserver import NatsServer

# Cases that do not carry over to a cluster, and why:
LEFT_OUT = {
    # The slow reader's queue bound is an option of the shared conformance server
    # (--max-queue 64 KiB) that these nodes do not set; the driver is the same anyway.
    "test_a_reader_that_never_reads_is_dropped",
    # It takes the admin's OK to ADMIN_SAY as "queued for every member". On a cluster the OK
    # means "handed to the broker": the ANNOUNCE reaches members when it comes back from the
    # stream, and a connection closed by a local error before that does not get it.
    "test_closing_error_comes_after_everything_queued",
}


class TwoNodeRoom:
    """Looks like one ServerProcess to the conformance tests; connections alternate nodes."""

    def __init__(self, first: ServerProcess, second: ServerProcess) -> None:
        self.nodes = (first, second)
        self.process = first.process
        self.admin_path = first.admin_path
        self._turn = itertools.cycle(self.nodes)

    def connect(self, label: str = "client", rcvbuf: int | None = None) -> WireClient:
        return next(self._turn).connect(label, rcvbuf)

    def admin(self, label: str = "admin") -> WireClient:
        return next(self._turn).admin(label)

    def members(self) -> list[str]:
        return self.nodes[0].members()

    def wait_room_empty(self, timeout: float = 15.0) -> None:
        for node in self.nodes:
            node.wait_room_empty(timeout)

    def diagnostics(self) -> str:
        return "\n".join(node.diagnostics() for node in self.nodes)


@pytest.fixture(scope="module")
def two_node_room(tmp_path_factory):
    nats = NatsServer(tmp_path_factory.mktemp("nats")).start()
    options = ["--port", "0", "--rate-limit", "0", "--cluster", nats.url, "--room", "conformance"]
    first = ServerProcess.start(*options)
    second = ServerProcess.start(*options)
    yield TwoNodeRoom(first, second)
    for node in (first, second):
        node.stop()
    nats.stop()


@pytest.fixture
def guests(two_node_room: TwoNodeRoom):
    yield from conformance._guests(two_node_room)


for _name, _test in inspect.getmembers(conformance, inspect.isfunction):
    if _name.startswith("test_") and "guests" in inspect.signature(_test).parameters and _name not in LEFT_OUT:
        globals()[_name] = _test
