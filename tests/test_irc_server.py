"""`learn chat serve --irc-port`: IRC clients and binary clients in one room, over real sockets.

The IRC side is tests/ircwire.py (written from RFC 2812, nothing from the server) and, when
installed, Debian's real `ii` client; the binary side is tests/chatwire.py. Every engine
runs the crossing test; the real-client test runs on the default one.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from chatserver import ENGINES, ServerProcess, run_failing_server
from chatwire import Code, Kind, admin_say
from ircwire import IrcClient


def start_with_irc(tmp_path: Path, *options: str) -> tuple[ServerProcess, tuple[str, int]]:
    server = ServerProcess.start("--port", "0", "--irc-port", "0", "--admin-socket", str(tmp_path / "admin.sock"),
                                 *options)
    lines = server.stdout.lines(3, 30.0)
    match = lines and re.fullmatch(r"irc listening on (\S+):(\d+)", lines[2])
    if not match:
        server.stop()
        raise AssertionError(f"no 'irc listening on' line: {server.diagnostics()}")
    return server, (match.group(1), int(match.group(2)))


@pytest.mark.parametrize("engine", ENGINES)
def test_irc_and_binary_members_hear_each_other_in_one_order(tmp_path, engine):
    server, irc_address = start_with_irc(tmp_path, "--engine", engine, "--rate-limit", "0")
    ann = server.connect("ann")
    admin = server.admin()
    bob = IrcClient(irc_address)
    try:
        assert ann.join("ann lee") == "ann lee"
        burst = bob.register("bob")
        assert [line.command for line in burst][:6] == ["CAP", "001", "002", "003", "004", "005"]
        assert [line.command for line in burst][-3:] == ["JOIN", "353", "366"]
        assert burst[-2].params[-1].split(" ") == ["ann\u3000lee", "bob"]  # the space as U+3000
        ann.expect(Kind.JOINED, "bob")

        ann.send_frame(Kind.SAY, "one")
        assert ann.frames_until_pong() == []  # the room has taken "one" before bob speaks
        bob.send("PRIVMSG #chat :two", "NOTICE #chat :three")
        heard = bob.sync("after-three")  # the room has taken bob's lines before ann speaks again
        admin_say(admin, "four")
        ann.send_frame(Kind.SAY, "five\nsix")
        cy = server.connect("cy")
        cy.join("cy")
        cy.send_frame(Kind.LEAVE)

        heard_by_bob = [(line.command, line.nick, line.params[-1]) for line in heard + bob.until("QUIT")]
        assert heard_by_bob == [("PRIVMSG", "ann\u3000lee", "one"), ("NOTICE", "learn.chat", "four"),
                                ("PRIVMSG", "ann\u3000lee", "five"), ("PRIVMSG", "ann\u3000lee", "six"),
                                ("JOIN", "cy", "#chat"), ("QUIT", "cy", "left the room")]
        heard_by_ann = [(frame.kind, frame.payload) for frame in ann.frames_until_pong()]
        assert heard_by_ann == [(Kind.MESSAGE, b"\x03bobtwo"), (Kind.MESSAGE, b"\x03bobthree"),
                                (Kind.ANNOUNCE, b"four"), (Kind.JOINED, b"cy"), (Kind.LEFT, b"cy")]

        bob.send("QUIT :bye")
        assert [line.command for line in bob.closed()] == ["ERROR"]
        ann.expect(Kind.LEFT, "bob")
    finally:
        for each in (ann, admin, bob):
            each.close()
        server.stop()


def test_one_name_registry_for_both_protocols_and_a_kick_reaches_irc(tmp_path):
    server, irc_address = start_with_irc(tmp_path)
    ann, other = server.connect("ann"), server.connect("other")
    bob = IrcClient(irc_address)
    try:
        ann.join("Ann")
        bob.send("NICK ANN", "USER b 0 * :b")
        assert bob.line().command == "433"
        bob.send("NICK bob")
        assert bob.until("366")[0].command == "001"
        other.send_frame(Kind.JOIN, "BOB")
        assert other.expect_error(Code.NAME_TAKEN)
        ann.expect(Kind.JOINED, "bob")
        _kick(server, "bob")
        lines = bob.closed()
        assert [line.command for line in lines] == ["KICK", "ERROR"] and lines[0].params[:2] == ["#chat", "bob"]
        ann.expect(Kind.LEFT, "bob")
    finally:
        for each in (ann, other, bob):
            each.close()
        server.stop()


def _kick(server: ServerProcess, name: str) -> None:
    admin = server.admin()
    try:
        admin.send_frame(Kind.KICK, name)
        admin.expect(Kind.OK)
    finally:
        admin.close()


def test_shutdown_reaches_irc_members_as_an_error_line(tmp_path):
    server, irc_address = start_with_irc(tmp_path)
    bob = IrcClient(irc_address)
    try:
        bob.register("bob")
        server.signal()
        assert [line.command for line in bob.closed()] == ["ERROR"]
        assert server.wait_exit(10) == 0
    finally:
        bob.close()
        server.stop()


def test_a_bad_channel_or_a_busy_irc_port_is_one_sentence_and_exit_2(tmp_path):
    bad = run_failing_server("--port", "0", "--irc-port", "0", "--irc-channel", "chat")
    assert (bad.returncode, bad.stderr) == (2, "error: --irc-channel 'chat': an IRC channel name starts with # "
                                               "and has at least one more character.\n")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = run_failing_server("--port", "0", "--irc-port", str(taken.getsockname()[1]),
                                  "--admin-socket", str(tmp_path / "admin.sock"))
    assert busy.returncode == 2 and "pick another port with --irc-port" in busy.stderr
    assert "Traceback" not in busy.stderr and not (tmp_path / "admin.sock").exists()


II = shutil.which("ii")


@pytest.mark.skipif(II is None, reason="Debian's ii IRC client is not installed (.ci/run installs it: apt-get install ii)")
def test_the_real_ii_client_joins_reads_and_answers(tmp_path):
    server, (host, port) = start_with_irc(tmp_path)
    ann = server.connect("ann")
    ii = subprocess.Popen([II, "-s", host, "-p", str(port), "-n", "iiuser", "-i", str(tmp_path / "irc")],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    channel = tmp_path / "irc" / host / "#chat"
    try:
        ann.join("ann")
        ann.expect(Kind.JOINED, "iiuser")
        wait_for(lambda: (channel / "in").exists(), "ii never opened #chat")
        ann.send_frame(Kind.SAY, "hello ii")
        wait_for(lambda: "<ann> hello ii" in (channel / "out").read_text(), "ii never showed ann's message")
        with open(channel / "in", "w") as fifo:  # ii reads the channel's FIFO: a line is a message
            fifo.write("hello ann\n")
        assert ann.expect(Kind.MESSAGE).message() == ("iiuser", "hello ann")
    finally:
        ii.terminate()
        ii.wait(10)
        ann.close()
        server.stop()


def wait_for(condition, why: str, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(why)
        time.sleep(0.02)  # polling interval of a deadline loop (files have no readiness to wait on)
