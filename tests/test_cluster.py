"""One room served by two server processes (nodes) through a real NATS JetStream server.

Each test starts its own nats-server (port and store of its own) and two
`learn chat serve --cluster` nodes; clients speak PROTOCOL.md to either node. No mocks,
no sleeps: every wait is for a frame or a line, with a deadline.
"""

from __future__ import annotations

import gc
import signal
import threading
import time

import pytest

from chatserver import ServerProcess, run_failing_server
from chatwire import Code, Kind, WireClient, admin_list, admin_say
from ircwire import IrcClient
from natsserver import NatsCluster, NatsServer

LEASE = 1.5  # seconds: a dead node's members are announced LEFT within about 4/3 of it
LEFT_WITHIN = 4 * LEASE + 10.0  # the stated bound (4/3 of a lease) with room for a loaded machine


@pytest.fixture
def nats(tmp_path):
    server = NatsServer(tmp_path / "nats-store").start()
    yield server
    server.stop()


def start_node(nats_server: NatsServer, *extra: str) -> ServerProcess:
    return ServerProcess.start("--port", "0", "--cluster", nats_server.url, "--room", "test",
                               "--lease", str(LEASE), *extra)


@pytest.fixture(scope="module")
def shared_nodes(tmp_path_factory):
    """Two nodes and their NATS server, shared by the tests that leave both nodes running."""
    nats_server = NatsServer(tmp_path_factory.mktemp("nats-store")).start()
    first = second = None
    try:
        first, second = start_node(nats_server), start_node(nats_server)
        yield first, second
    finally:
        for node in (first, second):
            if node is not None:
                node.stop()
        nats_server.stop()


@pytest.fixture
def nodes(shared_nodes):
    """The shared nodes; afterwards, once the test's clients are gone, an empty room again."""
    yield shared_nodes
    gc.collect()  # the test's clients, closed with their sockets
    for node in shared_nodes:
        assert node.process.poll() is None, f"a node died: {node.diagnostics()}"
        node.wait_room_empty()


@pytest.fixture
def own_nodes(nats):
    first, second = start_node(nats), start_node(nats)
    yield first, second
    for node in (first, second):
        node.stop()


def joined(node: ServerProcess, name: str) -> WireClient:
    client = node.connect(name)
    client.join(name)
    return client


def test_a_member_on_one_node_hears_a_member_on_the_other(nodes):
    first, second = nodes
    ann = joined(first, "ann")
    bob = joined(second, "bob")
    ann.expect(Kind.JOINED, "bob")
    bob.send_frame(Kind.SAY, "hello from node two")
    assert ann.expect(Kind.MESSAGE).message() == ("bob", "hello from node two")
    ann.send_frame(Kind.SAY, "and back")
    assert bob.expect(Kind.MESSAGE).message() == ("ann", "and back")
    assert ann.who() == bob.who() == ["ann", "bob"]  # WHO lists the whole room, in join order


def test_one_order_for_every_member_on_every_node(nodes):
    """Two senders on each node, readers on both: all readers see one sequence."""
    first, second = nodes
    senders = [joined(node, f"s{index}{label}") for index, node in enumerate((first, second)) for label in "ab"]
    readers = [joined(first, "r1"), joined(second, "r2")]
    for client in senders + readers:  # everyone has seen every JOINED: the room is complete
        wait_for_members(client, 6)
    per_sender = 15
    for round_number in range(per_sender):
        for sender in senders:
            sender.send_frame(Kind.SAY, f"{sender.label} {round_number}")
    sequences = []
    for reader in readers:
        messages = []
        while len(messages) < per_sender * len(senders):
            frame = reader.recv_frame(20)
            if frame.kind == Kind.MESSAGE:
                messages.append(frame.message())
        sequences.append(messages)
    assert sequences[0] == sequences[1]
    for sender in senders:  # and each sender's own messages keep the order they were sent in
        own = [text for name, text in sequences[0] if name == sender.label]
        assert own == [f"{sender.label} {n}" for n in range(per_sender)]


def test_fifty_claims_of_one_name_through_two_nodes_one_wins(nodes):
    first, second = nodes
    clients = [(first if index % 2 else second).connect(f"c{index}") for index in range(50)]
    barrier = threading.Barrier(len(clients))
    outcomes: dict[int, str] = {}

    def claim(index: int, client: WireClient) -> None:
        barrier.wait(10)
        client.send_frame(Kind.JOIN, "Zed")
        frame = client.recv_frame(30)
        outcomes[index] = "won" if frame.kind == Kind.WELCOME else f"error {frame.error()[0]}"

    threads = [threading.Thread(target=claim, args=(index, client)) for index, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(40)
    assert sorted(outcomes.values()).count("won") == 1, outcomes
    assert set(outcomes.values()) == {"won", f"error {Code.NAME_TAKEN}"}, outcomes
    for node in (first, second):  # each node's list is the stream's, when it has caught up
        wait_for_list(node, ["Zed"])


def test_killed_node_members_leave_and_their_names_become_free(nats):
    survivor, doomed = start_node(nats), start_node(nats)
    try:
        watcher = joined(survivor, "watcher")
        joined(doomed, "victim")
        watcher.expect(Kind.JOINED, "victim")
        doomed.process.send_signal(signal.SIGKILL)
        doomed.wait_exit(10)
        started = time.monotonic()
        watcher.expect(Kind.LEFT, "victim", timeout=LEFT_WITHIN)
        print(f"LEFT after {time.monotonic() - started:.2f} s (lease {LEASE} s)")
        again = survivor.connect("again")
        assert again.join("victim") == "victim"
        watcher.expect(Kind.JOINED, "victim")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{survivor.diagnostics()}") from None
    finally:
        doomed.stop()
        survivor.stop()


def test_admin_on_one_node_acts_on_the_whole_room(nodes):
    first, second = nodes
    ann = joined(first, "ann")
    bob = joined(second, "bob")
    ann.expect(Kind.JOINED, "bob")
    admin = second.admin()
    assert admin_list(admin) == ["ann", "bob"]
    admin_say(admin, "hello everyone")
    ann.expect(Kind.ANNOUNCE, "hello everyone")
    bob.expect(Kind.ANNOUNCE, "hello everyone")
    admin.send_frame(Kind.KICK, "ANN")  # ann is on the other node
    admin.expect(Kind.OK)
    ann.expect_error(Code.KICKED)
    ann.expect_closed()
    bob.expect(Kind.LEFT, "ann")
    assert joined(second, "ann").who() == ["bob", "ann"]  # the name is free again


def test_a_member_leaving_or_vanishing_is_left_on_every_node(nodes):
    first, second = nodes
    ann, bob, cy = joined(first, "ann"), joined(second, "bob"), joined(second, "cy")
    ann.expect(Kind.JOINED, "bob")
    ann.expect(Kind.JOINED, "cy")
    bob.send_frame(Kind.LEAVE)
    ann.expect(Kind.LEFT, "bob")
    cy.abort()
    ann.expect(Kind.LEFT, "cy")
    assert ann.who() == ["ann"]


def test_stopping_a_node_tells_the_others(own_nodes):
    first, second = own_nodes
    ann, bob = joined(first, "ann"), joined(second, "bob")
    ann.expect(Kind.JOINED, "bob")
    second.signal(signal.SIGTERM)
    bob.expect_error(Code.SHUTDOWN)
    assert second.wait_exit(15) == 0
    ann.expect(Kind.LEFT, "bob")


def test_other_engines_and_one_shared_port(nats):
    """poll and select nodes, sharing one port (SO_REUSEPORT): one room all the same."""
    first = start_node(nats, "--engine", "poll", "--reuse-port")
    try:
        second = start_node(nats, "--engine", "select", "--reuse-port", "--port", str(first.port))
        try:
            assert second.port == first.port
            clients = [joined(first, "ann"), joined(second, "bob")]
            clients[0].expect(Kind.JOINED, "bob")
            for node in (first, second):  # either node may have served either client
                wait_for_list(node, ["ann", "bob"])
        finally:
            second.stop()
    finally:
        first.stop()


def test_workers_are_nodes_of_one_room_on_one_port(nats):
    """--workers 2: two processes, one port, one room; SIGTERM to the first stops both."""
    server = ServerProcess(["--port", "0", "--cluster", nats.url, "--room", "workers", "--workers", "2"])
    try:
        lines = server.stdout.lines(6, 30)
        assert lines is not None, server.diagnostics()
        admins = [line.removeprefix("admin socket ") for line in lines if line.startswith("admin socket ")]
        ports = {line.rsplit(":", 1)[1] for line in lines if line.startswith("listening on ")}
        assert len(admins) == 2 and len(ports) == 1, lines
        port = int(ports.pop())
        clients = [WireClient.tcp(("127.0.0.1", port), f"m{index}") for index in range(6)]
        for index, client in enumerate(clients):
            client.join(f"m{index}")
        for admin_path in admins:  # each node lists the whole room
            deadline = time.monotonic() + 20
            while len(listed := admin_list(WireClient.unix(admin_path))) < 6:
                assert time.monotonic() < deadline, listed
                time.sleep(0.02)  # polling interval of a deadline loop
        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.diagnostics()
        assert server.stdout.wait_ended(10)  # every node's end of the pipe is closed: all exited
        stopped = [line for line in server.stdout.text.splitlines() if line.endswith(" stopped")]
        assert len(stopped) == 2, server.diagnostics()
    finally:
        server.stop()


@pytest.mark.parametrize(("options", "complaint"), [
    (["--cluster", "nats://127.0.0.1:4222", "--engine", "fork"], "fork engine cannot serve a cluster"),
    (["--reuse-port"], "--reuse-port and --workers make sense only with --cluster"),
    (["--workers", "2"], "--reuse-port and --workers make sense only with --cluster"),
    (["--cluster", "http://127.0.0.1:4222"], "nats://HOST:PORT"),
    (["--cluster", "nats://127.0.0.1:4222", "--room", "a room"], "a room name is"),
])
def test_cluster_option_mistakes_are_one_sentence(options, complaint):
    result = run_failing_server("--port", "0", *options)
    assert result.returncode == 2 and complaint in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_broker_unreachable_at_start_is_one_sentence_and_exit_2(nats):
    port = nats.port
    nats.stop()
    result = run_failing_server("--port", "0", "--cluster", f"nats://127.0.0.1:{port}")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no NATS server answers" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_lost_broker_refuses_join_and_say_then_recovers(nats, tmp_path):
    first, second = start_node(nats), start_node(nats)
    try:
        ann, bob = joined(first, "ann"), joined(second, "bob")
        ann.expect(Kind.JOINED, "bob")
        nats.kill()
        refused = wait_for_refusal(ann)
        assert "broker" in refused
        late = first.connect("late")
        late.send_frame(Kind.JOIN, "late")
        assert "broker" in late.expect_error(Code.NAME_TAKEN)
        nats.start()  # same port, same store: the stream and the names are still there
        wait_until_sent(ann, "back again")
        # A SAY taken just before the node noticed the loss was not refused: it arrives, once
        while (message := bob.expect(Kind.MESSAGE, timeout=30).message()) == ("ann", "anyone?"):
            pass
        assert message == ("ann", "back again")
        assert late.join("late") == "late"
    finally:
        first.stop()
        second.stop()


def test_the_room_survives_the_loss_of_one_of_three_nats_servers(tmp_path):
    """R3: the stream and the names live on three NATS servers; one dies, the room goes on.
    (The lease is long enough to outlast a new stream leader's election.)"""
    brokers = NatsCluster(tmp_path).start()
    options = ("--port", "0", "--room", "r3", "--replicas", "3")
    first = second = None
    try:
        # The first node is given only the server about to die: it must fail over to the
        # others, which NATS told it about when it connected.
        first = ServerProcess.start(*options, "--cluster", brokers.servers[0].url)
        second = ServerProcess.start(*options, "--cluster", brokers.urls)
        ann, bob = joined(first, "ann"), joined(second, "bob")
        ann.expect(Kind.JOINED, "bob")
        brokers.servers[0].kill()
        wait_until_sent(ann, "still here")
        assert bob.expect(Kind.MESSAGE, timeout=30).message() == ("ann", "still here")
        assert first.members() == second.members() == ["ann", "bob"]
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{first.diagnostics()}\n{second.diagnostics()}") from None
    finally:
        for node in (first, second):
            if node is not None:
                node.stop()
        brokers.stop()


def wait_for_refusal(client: WireClient, timeout: float = 30.0) -> str:
    """SAY until the node has noticed the broker is gone: the reason of its RATE_LIMITED."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.send_frame(Kind.SAY, "anyone?")
        for frame in client.frames_until_pong():
            if frame.kind == Kind.ERROR and frame.error()[0] == Code.RATE_LIMITED:
                return frame.error()[1]
        time.sleep(0.1)  # polling interval of a deadline loop
    raise AssertionError("the node never noticed that its broker was gone")


def wait_until_sent(client: WireClient, text: str, timeout: float = 30.0) -> None:
    """SAY `text` once the node accepts SAYs again (no RATE_LIMITED before the PONG)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client.send_frame(Kind.SAY, text)
        if not any(frame.kind == Kind.ERROR for frame in client.frames_until_pong()):
            return
        time.sleep(0.1)  # polling interval of a deadline loop
    raise AssertionError("the node never took SAYs again after the broker came back")


def wait_for_members(client: WireClient, count: int, timeout: float = 20.0) -> None:
    """WHO until the room has `count` members (skipping the JOINED frames on the way)."""
    deadline = time.monotonic() + timeout
    while True:
        client.send_frame(Kind.WHO)
        while (frame := client.recv_frame()).kind != Kind.MEMBERS:
            assert frame.kind == Kind.JOINED, f"{client.label}: unexpected {frame!r}"
        if len(frame.text.split("\n")) >= count:
            return
        assert time.monotonic() < deadline, f"{client.label}: the room never had {count} members"
        time.sleep(0.02)  # polling interval of a deadline loop


def wait_for_list(node: ServerProcess, names: list[str], timeout: float = 20.0) -> None:
    """`learn chat admin list` on `node` until it shows `names`: a node applies the stream a
    moment after the node whose client the test heard from."""
    deadline = time.monotonic() + timeout
    while (members := node.members()) != names:
        assert time.monotonic() < deadline, f"{node.admin_path}: {members} instead of {names}"
        time.sleep(0.02)  # polling interval of a deadline loop


def irc_address_of(node: ServerProcess) -> tuple[str, int]:
    """The node's third banner line, `irc listening on HOST:PORT`."""
    for line in node.stdout.lines(3, 30.0) or []:
        if line.startswith("irc listening on "):
            host, _, port = line.removeprefix("irc listening on ").rpartition(":")
            return host, int(port)
    raise AssertionError(f"no 'irc listening on' line: {node.diagnostics()}")


def test_an_irc_member_on_one_node_and_a_binary_member_on_the_other(nats):
    """The IRC listener serves a cluster room too: registration waits for the name's claim,
    and messages cross both protocols and both nodes."""
    first = start_node(nats, "--irc-port", "0", "--rate-limit", "0")
    second = start_node(nats, "--rate-limit", "0")
    bob = None
    try:
        ann = joined(second, "ann")
        bob = IrcClient(irc_address_of(first))
        burst = bob.register("bob")
        assert [line.command for line in burst][-3:] == ["JOIN", "353", "366"]
        assert sorted(burst[-2].params[-1].split(" ")) == ["ann", "bob"]
        ann.expect(Kind.JOINED, "bob")
        ann.send_frame(Kind.SAY, "hello from the binary side")
        heard = [(line.command, line.nick, line.params[-1]) for line in bob.until("PRIVMSG")]
        assert heard[-1] == ("PRIVMSG", "ann", "hello from the binary side")
        bob.send("PRIVMSG #chat :hello from IRC")
        ann.expect(Kind.MESSAGE, b"\x03bobhello from IRC")
        bob.send("QUIT :bye")
        bob.closed()
        ann.expect(Kind.LEFT, "bob")
    finally:
        if bob is not None:
            bob.close()
        for node in (first, second):
            node.stop()
