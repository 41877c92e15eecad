"""Conformance of `learn chat serve` to the wire contract, /work/shared/PROTOCOL.md.

Written from the protocol page alone, as a third-party client author would: the client
is tests/chatwire.py, nothing is imported from the server. Every test runs against all
five engines (epoll, poll, select, selectors, fork) with real sockets on loopback.

Servers are shared per engine and module where options allow: `server` (rate limit
off, a small slow-reader queue) and `limited_server` (a short join timeout, a small rate
limit, a small payload limit). Each test uses fresh names, and after each test we wait
until the server's member list is empty again, so that no LEFT from one test can reach
the next one. Tests that stop their server (shutdown, the Unix transport, start-up
errors) start their own.
"""

from __future__ import annotations

import ctypes
import graphlib
import itertools
import os
import select
import shutil
import signal
import socket
import stat
import time
from pathlib import Path

import pytest

from chatwire import (
    BROADCAST_KINDS,
    HEADER,
    Code,
    Frame,
    Kind,
    WireClient,
    admin_list,
    admin_say,
    encode,
    gather,
    message_payload,
    read_all_until_closed,
)
from chatserver import (
    ENGINES,
    ServerProcess,
    run_admin_cli,
    run_failing_server,
    world_readable_dir,
)

SMALL_QUEUE = 65536  # --max-queue of the shared server: small, so a slow reader is dropped soon
JOIN_TIMEOUT = 1.0  # --join-timeout of the limited server
RATE = 4  # --rate-limit of the limited server: a bucket of 8, refilled at 4 per second
LIMITED_PAYLOAD = 1024  # --max-payload of the limited server
NOBODY = 65534

_unique = itertools.count(1)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def admin_dir():
    path = world_readable_dir("learn-chat-conformance-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(engine: str, admin_dir: Path):
    options = ["--engine", engine, "--port", "0", "--rate-limit", "0", "--max-queue", str(SMALL_QUEUE)]
    options += ["--admin-socket", str(admin_dir / f"main-{engine}.sock")]
    with ServerProcess.start(*options) as running:
        yield running


@pytest.fixture(scope="module")
def limited_server(engine: str, admin_dir: Path):
    options = ["--engine", engine, "--port", "0", "--join-timeout", str(JOIN_TIMEOUT), "--rate-limit", str(RATE)]
    options += ["--max-payload", str(LIMITED_PAYLOAD), "--admin-socket", str(admin_dir / f"limited-{engine}.sock")]
    with ServerProcess.start(*options) as running:
        yield running


class Guests:
    """The connections one test opens, with unique names, all closed afterwards."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.clients: list[WireClient] = []

    def name(self, stem: str) -> str:
        return f"{stem}{next(_unique)}"

    def connect(self, label: str = "client", rcvbuf: int | None = None) -> WireClient:
        client = self.server.connect(label, rcvbuf)
        self.clients.append(client)
        return client

    def member(self, stem: str, rcvbuf: int | None = None) -> tuple[WireClient, str]:
        """A connection that has joined under a fresh name; returns it and the name."""
        name = self.name(stem)
        client = self.connect(name, rcvbuf)
        assert client.join(name) == name
        return client, name

    def admin(self) -> WireClient:
        client = self.server.admin()
        self.clients.append(client)
        return client

    def quiet_until_marker(self, *members: WireClient) -> None:
        """Assert that no broadcast is on its way to `members` before a fresh ANNOUNCE.

        Call it once the server has visibly handled what came before (someone received
        it, or the sender got its reply): then, in the one broadcast order, anything
        wrongly sent to these members precedes the marker. A PING would not do: the
        fork engine may answer a PING before a broadcast from its hub arrives.
        """
        admin = self.admin()
        marker = f"marker {next(_unique)}"
        admin_say(admin, marker)
        for member in members:
            before = []
            while (frame := member.recv_frame()) != Frame(Kind.ANNOUNCE, marker.encode()):
                before.append(frame)
            assert not before, f"{member.label} got unexpected frames {before!r}"

    def close_all(self) -> None:
        for client in self.clients:
            client.close()


def _guests(server: ServerProcess):
    guests = Guests(server)
    try:
        yield guests
    finally:
        guests.close_all()
    assert server.process.poll() is None, f"the server died: {server.diagnostics()}"
    server.wait_room_empty()


@pytest.fixture
def guests(server: ServerProcess):
    yield from _guests(server)


@pytest.fixture
def limited_guests(limited_server: ServerProcess):
    yield from _guests(limited_server)


# ----------------------------------------------------------------------- JOIN / WELCOME
@pytest.mark.timeout(30)
def test_welcome_carries_the_normalized_name(guests: Guests) -> None:
    n = next(_unique)
    alice = guests.connect("alice")
    # NFKC folds the full-width letters, then strip() removes tab, newline, U+2028/9.
    assert alice.join(f"\u2028 \t\uff21\uff4c\uff49\uff43\uff45{n}\n\u2029") == f"Alice{n}"
    bob = guests.connect("bob")
    assert bob.join(f"Jose\u0301 \ufb03{n}") == f"José ffi{n}"  # composed; ligature expanded
    chen = guests.connect("chen")
    assert chen.join(f" 张三 😀{n} ") == f"张三 😀{n}"
    assert chen.who() == [f"Alice{n}", f"José ffi{n}", f"张三 😀{n}"]


@pytest.mark.timeout(30)
def test_joined_goes_to_the_others_not_to_the_joiner(guests: Guests) -> None:
    first, _ = guests.member("first")
    second, second_name = guests.member("second")
    first.expect(Kind.JOINED, second_name)
    third, third_name = guests.member("third")
    first.expect(Kind.JOINED, third_name)
    second.expect(Kind.JOINED, third_name)
    guests.quiet_until_marker(first, second, third)


@pytest.mark.timeout(30)
def test_names_up_to_32_code_points_after_normalization(guests: Guests) -> None:
    client = guests.connect("long")
    thirty_three = "é" * 33
    client.send_frame(Kind.JOIN, thirty_three)
    client.expect_error(Code.NAME_INVALID)
    client.send_frame(Kind.JOIN, "\ufb03" * 11)  # NFKC makes 33 code points of 11
    client.expect_error(Code.NAME_INVALID)
    name = "é" * 31 + str(next(_unique) % 10)  # 32 code points, 63 bytes
    assert client.join(f"  {name}\u2028") == name


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "bad_name",
    [
        "",
        "   ",
        "\u2028\u2029",
        "a\x00b",
        "a\tb",
        "a\nb",
        "bell\x07",
        "del\x7f",
        "nel\x85x",
        "zero\u200bwidth",  # Cf
        "evil\u202eeman",  # Cf: right-to-left override
        "bom\ufeffx",  # Cf
        "private\ue000",  # Co
        "unassigned\u0378",  # Cn
        "line\u2028break",  # Zl inside
        "para\u2029break",  # Zp inside
    ],
    ids=repr,
)
def test_invalid_names_are_refused_and_the_connection_stays(guests: Guests, bad_name: str) -> None:
    client = guests.connect("bad-name")
    client.send_frame(Kind.JOIN, bad_name)
    client.expect_error(Code.NAME_INVALID)
    client.send_frame(Kind.JOIN, bad_name)  # failing twice changes nothing
    client.expect_error(Code.NAME_INVALID)
    name = guests.name("ok")
    assert client.join(name) == name


RESERVED_SPELLINGS = [
    "admin",
    "ADMIN",
    "Admin",
    "\uff41\uff44\uff4d\uff49\uff4e",  # full-width
    " admin\u2029",
    "administrator",
    "AdMiNiStRaToR",
    "server",
    "SERVER",
    "\u017fERVER",  # long s: casefold() makes it 'server'
    "system",
    "SYSTEM",
    "管理员",
]


@pytest.mark.timeout(30)
def test_reserved_names_are_refused_in_any_case_or_nfkc_form(guests: Guests) -> None:
    client = guests.connect("poser")
    for spelling in RESERVED_SPELLINGS:
        client.send_frame(Kind.JOIN, spelling)
        frame = client.recv_frame()
        # The page lists reserved names under the name rules without naming the code;
        # a refusal is NAME_INVALID or NAME_TAKEN, never a WELCOME.
        assert frame.kind == Kind.ERROR, f"{spelling!r} was accepted: {frame!r}"
        assert frame.error()[0] in (Code.NAME_INVALID, Code.NAME_TAKEN), f"{spelling!r}: {frame!r}"
    name = guests.name("adminfan")  # merely containing a reserved word is fine
    assert client.join(name) == name


@pytest.mark.timeout(30)
def test_name_taken_compares_casefolded_nfkc(guests: Guests) -> None:
    n = next(_unique)
    owner = guests.connect("owner")
    assert owner.join(f"Straße{n}") == f"Straße{n}"
    rival = guests.connect("rival")
    for spelling in (f"Straße{n}", f"STRASSE{n}", f"strasse{n}", f" \uff33\uff34\uff32\uff21\uff33\uff33\uff25{n}\u2028"):
        rival.send_frame(Kind.JOIN, spelling)
        rival.expect_error(Code.NAME_TAKEN)
    assert rival.join(f"Strasse-{n}") == f"Strasse-{n}"
    owner.expect(Kind.JOINED, f"Strasse-{n}")
    owner.send_frame(Kind.LEAVE)
    owner.expect_closed()
    rival.expect(Kind.LEFT, f"Straße{n}")
    heir = guests.connect("heir")
    assert heir.join(f"STRASSE{n}") == f"STRASSE{n}"  # free again once its owner left


@pytest.mark.timeout(30)
def test_join_payload_not_utf8_is_bad_frame(guests: Guests) -> None:
    client = guests.connect("bytes")
    for payload in (b"\xff\xfe", b"ab\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\x80"):
        client.send_frame(Kind.JOIN, payload)
        client.expect_error(Code.BAD_FRAME)
    name = guests.name("utf8")
    assert client.join(name) == name
    client.send_frame(Kind.JOIN, b"\xff")  # payload before state: BAD_FRAME, not ALREADY_JOINED
    client.expect_error(Code.BAD_FRAME)


@pytest.mark.timeout(30)
def test_second_join_is_already_joined_before_any_name_rule(guests: Guests) -> None:
    other, other_name = guests.member("other")
    client, name = guests.member("twice")
    other.expect(Kind.JOINED, name)
    for payload in (name, guests.name("new"), "", "admin", other_name, "x" * 40):
        client.send_frame(Kind.JOIN, payload)
        client.expect_error(Code.ALREADY_JOINED)
    assert client.who() == [other_name, name]
    guests.quiet_until_marker(other)


# ------------------------------------------------------------------------ SAY / MESSAGE
@pytest.mark.timeout(30)
def test_say_reaches_everyone_but_the_sender(guests: Guests) -> None:
    sender, sender_name = guests.member("张三")  # multibyte: the length byte counts bytes
    first, first_name = guests.member("first")
    second, second_name = guests.member("second")
    sender.expect(Kind.JOINED, first_name)
    sender.expect(Kind.JOINED, second_name)
    first.expect(Kind.JOINED, second_name)
    text = "hi\tthere\nsecond line ✓ 😀"
    sender.send_frame(Kind.SAY, text)
    for reader in (first, second):
        frame = reader.expect(Kind.MESSAGE, message_payload(sender_name, text))
        assert frame.message() == (sender_name, text)
        assert frame.payload[0] == len(sender_name.encode())
    guests.quiet_until_marker(sender, first, second)


@pytest.mark.timeout(30)
def test_say_allows_format_and_separator_characters(guests: Guests) -> None:
    sender, name = guests.member("fmt")
    reader, reader_name = guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    text = "zero\u200bwidth \u2028 and \u2029 are not Cc"  # only Cc is forbidden in SAY
    sender.send_frame(Kind.SAY, text)
    reader.expect(Kind.MESSAGE, message_payload(name, text))


@pytest.mark.timeout(30)
def test_full_size_say_is_relayed_in_a_frame_over_the_limit(guests: Guests) -> None:
    sender, name = guests.member("big")
    reader, reader_name = guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    text = "x" * 4096  # exactly the default payload limit
    sender.send_frame(Kind.SAY, text)
    frame = reader.expect(Kind.MESSAGE, message_payload(name, text))
    assert len(frame.payload) > 4096
    guests.quiet_until_marker(sender)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff\xfe", b"caf\xc3", "a\rb", "\x00", "bell\x07", "\x1b[2Jclear", "del\x7f", "nel\x85", "\x9b31m"],
    ids=repr,
)
def test_bad_say_is_bad_frame_and_not_relayed(guests: Guests, payload: bytes | str) -> None:
    sender, _ = guests.member("sayer")
    reader, reader_name = guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    sender.send_frame(Kind.SAY, payload)
    sender.expect_error(Code.BAD_FRAME)
    sender.ping()  # still open
    guests.quiet_until_marker(reader, sender)


@pytest.mark.timeout(30)
def test_say_and_who_before_join_are_not_joined(guests: Guests) -> None:
    watcher, _ = guests.member("watcher")
    client = guests.connect("early")
    client.send_frame(Kind.SAY, "hello?")
    client.expect_error(Code.NOT_JOINED)
    client.send_frame(Kind.WHO)
    client.expect_error(Code.NOT_JOINED)
    client.send_frame(Kind.WHO, b"payload ignored")
    client.expect_error(Code.NOT_JOINED)
    name = guests.name("late")
    assert client.join(name) == name
    watcher.expect(Kind.JOINED, name)
    guests.quiet_until_marker(watcher)  # the early SAY was never relayed


@pytest.mark.timeout(30)
def test_precedence_before_join(guests: Guests) -> None:
    """Payload rules come before the state: a bad SAY before JOIN is BAD_FRAME."""
    client = guests.connect("early")
    for payload in (b"\xff", b"", b"a\rb"):
        client.send_frame(Kind.SAY, payload)
        client.expect_error(Code.BAD_FRAME)
    client.send_frame(0x7F, b"")  # the kind comes before the state too
    client.expect_error(Code.BAD_FRAME)
    client.send_frame(Kind.SAY, "valid text")
    client.expect_error(Code.NOT_JOINED)


@pytest.mark.timeout(30)
def test_rate_limit_zero_turns_it_off(guests: Guests) -> None:
    sender, name = guests.member("fast")
    reader, reader_name = guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    sender.send_raw(b"".join(encode(Kind.SAY, f"burst {i}") for i in range(100)))
    for i in range(100):
        reader.expect(Kind.MESSAGE, message_payload(name, f"burst {i}"))
    guests.quiet_until_marker(sender, reader)


# ------------------------------------------------------------------------ LEAVE / close
@pytest.mark.timeout(30)
def test_leave_tells_the_others_and_closes_cleanly(guests: Guests) -> None:
    stayer, stayer_name = guests.member("stayer")
    leaver, leaver_name = guests.member("leaver")
    stayer.expect(Kind.JOINED, leaver_name)
    leaver.send_frame(Kind.LEAVE, b"a payload is ignored")
    leaver.expect_closed()  # EOF after the flush, not a reset, and no frame
    stayer.expect(Kind.LEFT, leaver_name)
    assert stayer.who() == [stayer_name]


@pytest.mark.timeout(30)
def test_leave_before_join_just_closes(guests: Guests) -> None:
    watcher, _ = guests.member("watcher")
    client = guests.connect("stranger")
    client.send_frame(Kind.LEAVE)
    client.expect_closed()
    guests.quiet_until_marker(watcher)


@pytest.mark.timeout(30)
def test_a_member_who_disconnects_is_left_for_the_others(guests: Guests) -> None:
    stayer, _ = guests.member("stayer")
    goner, goner_name = guests.member("goner")
    stayer.expect(Kind.JOINED, goner_name)
    goner.close()
    stayer.expect(Kind.LEFT, goner_name)


# ---------------------------------------------------------------------------- PING / WHO
@pytest.mark.timeout(30)
def test_ping_without_join_and_its_limit(guests: Guests) -> None:
    client = guests.connect("pinger")
    client.ping(b"")
    opaque = bytes(range(256))[-64:]  # 64 bytes, not UTF-8
    client.ping(opaque)
    client.send_frame(Kind.PING, b"z" * 65)
    client.expect_error(Code.BAD_FRAME)
    client.ping(b"still open")
    name = guests.name("pinger")
    assert client.join(name) == name
    client.ping(b"\x00" * 64)


@pytest.mark.timeout(30)
def test_who_lists_members_in_join_order(guests: Guests) -> None:
    names = []
    clients = []
    for stem in ("zed", "amy", "moe"):
        client, name = guests.member(stem)
        clients.append(client)
        names.append(name)
    clients[1].expect(Kind.JOINED, names[2])
    clients[1].send_frame(Kind.WHO, b"a payload is ignored")
    clients[1].expect(Kind.MEMBERS, "\n".join(names))
    clients[0].send_frame(Kind.LEAVE)
    frames, end = clients[0].read_until_closed()
    assert frames == [Frame(Kind.JOINED, name.encode()) for name in names[1:]] and not end.reset
    clients[2].expect(Kind.LEFT, names[0])
    assert clients[2].who() == names[1:]


# ------------------------------------------------------------------- other frame errors
@pytest.mark.timeout(30)
@pytest.mark.parametrize("joined", [False, True], ids=["before-join", "after-join"])
def test_unknown_and_admin_kinds_on_the_chat_port_are_bad_frame(guests: Guests, joined: bool) -> None:
    watcher, watcher_name = guests.member("watcher")
    client = guests.connect("kinds")
    if joined:
        name = guests.name("kinds")
        assert client.join(name) == name
        watcher.expect(Kind.JOINED, name)
    for kind in (0x00, 0x06, 0x0F, 0x7F, 0x81, 0x82, 0x88, 0x90, 0xFF):
        client.send_frame(kind, b"x")
        client.expect_error(Code.BAD_FRAME)
    client.send_frame(Kind.ADMIN_SAY, "I am the administrator")
    client.expect_error(Code.BAD_FRAME)
    client.send_frame(Kind.KICK, watcher_name)
    client.expect_error(Code.BAD_FRAME)
    client.send_frame(Kind.LIST)
    client.expect_error(Code.BAD_FRAME)
    client.ping()
    guests.quiet_until_marker(watcher)  # no ANNOUNCE, not kicked


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "length, kind",
    [(4097, Kind.SAY), (2**31, Kind.JOIN), (0xFFFFFFFF, Kind.PING), (5000, 0x7F)],
    ids=["limit+1-say", "2GiB-join", "4GiB-ping", "unknown-kind"],
)
def test_too_large_header_closes_without_waiting_for_the_payload(guests: Guests, length: int, kind: int) -> None:
    client = guests.connect("huge")
    client.send_raw(HEADER.pack(length, kind))  # the header alone: the payload never comes
    client.expect_error(Code.TOO_LARGE)
    client.expect_closed()


@pytest.mark.timeout(30)
def test_too_large_from_a_member_tells_the_others(guests: Guests) -> None:
    watcher, _ = guests.member("watcher")
    client, name = guests.member("huge")
    watcher.expect(Kind.JOINED, name)
    client.send_raw(encode(Kind.PING, b"before") + HEADER.pack(4097, Kind.SAY))
    client.expect(Kind.PONG, b"before")
    client.expect_error(Code.TOO_LARGE)
    client.expect_closed()
    watcher.expect(Kind.LEFT, name)


@pytest.mark.timeout(30)
def test_closing_error_comes_after_everything_queued(guests: Guests) -> None:
    """"Closing after an error": queued frames are flushed first, the error is last."""
    victim, victim_name = guests.member("backlog", rcvbuf=4096)
    kicked, kicked_name = guests.member("kicked", rcvbuf=4096)
    victim.expect(Kind.JOINED, kicked_name)
    admin = guests.admin()
    texts = [f"{i}:" + "z" * 3000 for i in range(10)]
    for text in texts:
        admin_say(admin, text)  # about 30 kB waits for each of them, unread
    victim.send_raw(HEADER.pack(2**31, Kind.SAY))
    admin.send_frame(Kind.KICK, kicked_name)
    admin.expect(Kind.OK, b"")
    announces = [Frame(Kind.ANNOUNCE, text.encode()) for text in texts]
    for client, code in ((victim, Code.TOO_LARGE), (kicked, Code.KICKED)):
        frames, end = client.read_until_closed()
        assert not end.reset and end.leftover == 0, f"{client.label}: {end}"
        assert frames[-1].kind == Kind.ERROR and frames[-1].error()[0] == code, f"{client.label}: {frames[-1]!r}"
        received = [frame for frame in frames[:-1] if frame.kind == Kind.ANNOUNCE]
        assert received == announces, f"{client.label}: the queued frames were not all flushed first"


@pytest.mark.timeout(30)
def test_two_connections_racing_for_one_name(guests: Guests) -> None:
    name = guests.name("Race")
    contenders = [guests.connect("left-hand"), guests.connect("right-hand")]
    contenders[0].send_frame(Kind.JOIN, name)
    contenders[1].send_frame(Kind.JOIN, name.upper())  # the same name to the server
    replies = sorted(client.recv_frame().kind for client in contenders)
    assert replies == [Kind.WELCOME, Kind.ERROR], replies


# ------------------------------------------------------------------------ stream framing
@pytest.mark.timeout(30)
def test_frames_split_byte_by_byte(guests: Guests) -> None:
    watcher, _ = guests.member("watcher")
    client = guests.connect("dribble")
    name = guests.name("dribble")

    def dribble(frame: bytes) -> None:
        for index in range(len(frame)):
            client.send_raw(frame[index : index + 1])
            if index < len(frame) - 1:  # no answer may come before the frame is whole
                assert not client.has_data(0.003), f"answered after {index + 1} of {len(frame)} bytes"

    dribble(encode(Kind.JOIN, name))
    client.expect(Kind.WELCOME, name)
    watcher.expect(Kind.JOINED, name)
    dribble(encode(Kind.SAY, "piece by piece"))
    watcher.expect(Kind.MESSAGE, message_payload(name, "piece by piece"))
    dribble(encode(Kind.PING, b"0123456789"))
    client.expect(Kind.PONG, b"0123456789")


@pytest.mark.timeout(30)
def test_several_frames_in_one_send(guests: Guests) -> None:
    watcher, watcher_name = guests.member("watcher")
    client = guests.connect("batch")
    name = guests.name("batch")
    batch = [
        encode(Kind.JOIN, name),
        encode(Kind.SAY, "one"),
        encode(Kind.PING, b"p1"),
        encode(Kind.WHO),
        encode(Kind.SAY, b""),
        encode(0x7E, b"\x00" * 4096),  # an unknown kind's payload is skipped, in step
        encode(Kind.SAY, "two"),
        encode(Kind.PING, b"p2"),
    ]
    client.send_raw(b"".join(batch))
    client.expect(Kind.WELCOME, name)
    client.expect(Kind.PONG, b"p1")
    client.expect(Kind.MEMBERS, f"{watcher_name}\n{name}")
    client.expect_error(Code.BAD_FRAME)
    client.expect_error(Code.BAD_FRAME)
    client.expect(Kind.PONG, b"p2")
    watcher.expect(Kind.JOINED, name)
    watcher.expect(Kind.MESSAGE, message_payload(name, "one"))
    watcher.expect(Kind.MESSAGE, message_payload(name, "two"))


@pytest.mark.timeout(30)
def test_frames_cut_at_arbitrary_points(guests: Guests) -> None:
    client = guests.connect("chunks")
    stream = b"".join(encode(Kind.PING, f"p{i}".encode() * (i % 5)) for i in range(30))
    for start in range(0, len(stream), 7):
        client.send_raw(stream[start : start + 7])
    for i in range(30):
        client.expect(Kind.PONG, f"p{i}".encode() * (i % 5))


@pytest.mark.timeout(30)
def test_reset_or_close_mid_frame_does_not_disturb_the_others(guests: Guests) -> None:
    first, first_name = guests.member("first")
    second, second_name = guests.member("second")
    first.expect(Kind.JOINED, second_name)
    crasher, crasher_name = guests.member("crasher")
    quitter, quitter_name = guests.member("quitter")
    for client in (first, second):
        client.expect(Kind.JOINED, crasher_name)
        client.expect(Kind.JOINED, quitter_name)
    stranger = guests.connect("stranger")

    crasher.send_raw(HEADER.pack(100, Kind.SAY) + b"half a frame")
    crasher.abort()  # RST
    quitter.send_raw(HEADER.pack(100, Kind.SAY) + b"half")
    quitter.close()  # FIN in the middle of a frame
    stranger.send_raw(HEADER.pack(50, Kind.JOIN) + b"par")
    stranger.abort()

    for client in (first, second):
        lefts = {client.expect(Kind.LEFT).text, client.expect(Kind.LEFT).text}
        assert lefts == {crasher_name, quitter_name}
    second.send_frame(Kind.SAY, "still here")
    first.expect(Kind.MESSAGE, message_payload(second_name, "still here"))
    assert first.who() == [first_name, second_name]


# ------------------------------------------------------------------------- slow reader
def test_a_reader_that_never_reads_is_dropped(guests: Guests) -> None:
    slow, slow_name = guests.member("slow", rcvbuf=4096)
    sender, sender_name = guests.member("sender")
    watcher, watcher_name = guests.member("watcher")
    sender.expect(Kind.JOINED, watcher_name)
    text = "q" * 4000
    sent = relayed = 0
    saw_left = False
    deadline = time.monotonic() + 40
    while not saw_left:
        assert time.monotonic() < deadline, f"slow reader still a member after {sent} messages"
        assert sent < 4000, f"never dropped after {sent * 4000} bytes; --max-queue is {SMALL_QUEUE}"
        sender.send_raw(encode(Kind.SAY, text) * 4)
        sent += 4
        while relayed < sent:  # the watcher reads everything, so it is never the slow one
            frame = watcher.recv_frame()
            if frame.kind == Kind.LEFT:
                assert frame.text == slow_name
                saw_left = True
                continue
            assert frame.payload == message_payload(sender_name, text), frame
            relayed += 1
    sender.expect(Kind.LEFT, slow_name)

    frames, end = slow.read_until_closed(timeout=20)
    kinds = {frame.kind for frame in frames}
    assert Kind.ERROR not in kinds, "the slow reader must be closed without another frame"
    assert frames[:2] == [Frame(Kind.JOINED, sender_name.encode()), Frame(Kind.JOINED, watcher_name.encode())]
    assert len(frames) - 2 < sent

    sender.send_frame(Kind.SAY, "after the drop")
    watcher.expect(Kind.MESSAGE, message_payload(sender_name, "after the drop"))
    assert watcher.who() == [sender_name, watcher_name]


# ------------------------------------------------------------------------- total order
def test_fifty_members_twenty_messages_one_order(guests: Guests) -> None:
    members = [guests.member(f"m{i}-") for i in range(50)]
    leavers = [guests.member(f"leaver{i}-") for i in range(2)]
    admin = guests.admin()
    clients = [client for client, _ in members]
    names = [name for _, name in members]

    announces = []
    for round_number in range(20):
        for index, client in enumerate(clients):
            client.send_frame(Kind.SAY, f"{index}:{round_number}")
        if round_number in (3, 8, 13, 18):
            announces.append(f"announce {round_number}")
            admin.send_frame(Kind.ADMIN_SAY, announces[-1])
        if round_number == 5:
            leavers[0][0].send_raw(encode(Kind.SAY, "bye from 0") + encode(Kind.LEAVE))
        if round_number == 12:
            leavers[1][0].send_frame(Kind.LEAVE)
    for _ in announces:
        admin.expect(Kind.OK, b"")

    def expected_for(index: int) -> set[Frame]:
        later = names[index + 1 :] + [name for _, name in leavers]
        wanted = {Frame(Kind.JOINED, name.encode()) for name in later}
        wanted |= {
            Frame(Kind.MESSAGE, message_payload(names[sender], f"{sender}:{r}"))
            for sender in range(50)
            if sender != index
            for r in range(20)
        }
        wanted.add(Frame(Kind.MESSAGE, message_payload(leavers[0][1], "bye from 0")))
        wanted |= {Frame(Kind.LEFT, name.encode()) for _, name in leavers}
        wanted |= {Frame(Kind.ANNOUNCE, text.encode()) for text in announces}
        return wanted

    expected = {client: expected_for(index) for index, client in enumerate(clients)}
    got = gather({client: len(expected[client]) for client in clients}, timeout=90)
    for index, client in enumerate(clients):
        frames = got[client]
        assert len(frames) == len(set(frames)), f"{names[index]} got a broadcast twice"
        missing = expected[client] - set(frames)
        extra = set(frames) - expected[client]
        assert not missing and not extra, f"{names[index]}: missing {list(missing)[:3]}, extra {list(extra)[:3]}"
    sequences = [got[client] for client in clients]
    for leaver, name in leavers:
        frames, end = leaver.read_until_closed(timeout=30)
        assert not end.reset, f"{name}: reset after LEAVE"
        assert all(frame.kind in BROADCAST_KINDS for frame in frames)
        sequences.append(frames)
    assert_one_total_order(sequences)
    guests.quiet_until_marker(*clients)


def assert_one_total_order(sequences: list[list[Frame]]) -> None:
    """Every sequence must be a subsequence of one common order: the union of their
    "comes before" edges has no cycle (pairwise checks alone could miss a 3-cycle)."""
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for frames in sequences:
        for before, after in zip(frames, frames[1:]):
            sorter.add(after, before)
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"members saw broadcasts in different orders: {err.args[1][:4]}") from None


# ----------------------------------------------------------------- administrator channel
@pytest.mark.timeout(30)
def test_admin_socket_file_mode_is_0600(server: ServerProcess) -> None:
    info = os.stat(server.admin_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()


@pytest.mark.timeout(30)
def test_admin_say_announces_to_every_member(guests: Guests) -> None:
    first, _ = guests.member("first")
    second, second_name = guests.member("second")
    first.expect(Kind.JOINED, second_name)
    stranger = guests.connect("stranger")
    stranger.ping()
    admin = guests.admin()
    text = "maintenance at 5 o'clock ✓\nsecond line"
    admin.send_frame(Kind.ADMIN_SAY, text)
    admin.expect(Kind.OK, b"")
    first.expect(Kind.ANNOUNCE, text)
    second.expect(Kind.ANNOUNCE, text)
    stranger.assert_quiet()  # not a member: no ANNOUNCE


@pytest.mark.timeout(30)
def test_admin_kick(guests: Guests) -> None:
    first, first_name = guests.member("first")
    victim, victim_name = guests.member("victim")
    third, third_name = guests.member("third")
    first.expect(Kind.JOINED, victim_name)
    first.expect(Kind.JOINED, third_name)
    victim.expect(Kind.JOINED, third_name)
    admin = guests.admin()
    admin.send_frame(Kind.KICK, f" {victim_name.upper()}\u2028")  # matched as JOIN compares names
    admin.expect(Kind.OK, b"")
    victim.expect_error(Code.KICKED)
    victim.expect_closed()
    first.expect(Kind.LEFT, victim_name)
    third.expect(Kind.LEFT, victim_name)
    assert admin_list(admin) == [first_name, third_name]


@pytest.mark.timeout(30)
def test_admin_kick_of_nobody_is_no_such_member(guests: Guests) -> None:
    member, name = guests.member("present")
    admin = guests.admin()
    admin.send_frame(Kind.KICK, guests.name("absent"))
    admin.expect_error(Code.NO_SUCH_MEMBER)
    assert admin_list(admin) == [name]  # still open
    guests.quiet_until_marker(member)


@pytest.mark.timeout(30)
def test_admin_list_in_join_order(guests: Guests) -> None:
    admin = guests.admin()
    admin.send_frame(Kind.LIST)
    admin.expect(Kind.MEMBERS, b"")  # nobody yet
    names = [guests.member(stem)[1] for stem in ("carol", "alice", "bob")]
    admin.send_frame(Kind.LIST, b"payload")
    admin.expect(Kind.MEMBERS, "\n".join(names))


@pytest.mark.timeout(30)
def test_admin_other_kinds_and_non_utf8_are_bad_frame(guests: Guests) -> None:
    member, name = guests.member("member")
    admin = guests.admin()
    for kind in (Kind.JOIN, Kind.SAY, Kind.LEAVE, Kind.PING, Kind.WHO, 0x00, 0x13, 0x90, 0xFF):
        admin.send_frame(kind, name.encode())
        admin.expect_error(Code.BAD_FRAME)
    admin.send_frame(Kind.ADMIN_SAY, b"\xff\xfe")
    admin.expect_error(Code.BAD_FRAME)
    admin.send_frame(Kind.KICK, b"\xc3")
    admin.expect_error(Code.BAD_FRAME)
    assert admin_list(admin) == [name]
    guests.quiet_until_marker(member)


def _child_attempt(path: str, keep_root_files: bool) -> str:
    """Runs in a forked child: become uid 65534, then try the admin socket."""
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, 0)
    os.setresuid(NOBODY, NOBODY, 0)  # saved uid 0 keeps setfsuid(0) possible
    if keep_root_files:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setfsuid(0)
        if libc.setfsuid(-1) != 0:  # -1 changes nothing and returns the current fsuid
            return "setup failed: fsuid is not 0"
    if os.getresuid() != (NOBODY, NOBODY, 0):
        return f"setup failed: uids are {os.getresuid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
    except PermissionError:
        return "denied"
    try:
        sock.sendall(encode(Kind.ADMIN_SAY, "intruder says hi") + encode(Kind.LIST))
    except (BrokenPipeError, ConnectionResetError):
        pass  # already closed: fine, we still read what (if anything) came back
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        return f"closed reset {received!r}"
    except socket.timeout:
        return f"still open {received!r}"
    return f"closed eof {received!r}"


def attempt_as_nobody(path: str, keep_root_files: bool) -> str:
    """Fork a child that drops to uid 65534 and reports what the admin socket did."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(reader)
        try:
            result = _child_attempt(path, keep_root_files)
        except BaseException as err:  # report, do not raise, in a forked child
            result = f"error {type(err).__name__}: {err}"
        os.write(writer, result.encode("utf-8", "replace")[:4000])
        os._exit(0)
    os.close(writer)
    try:
        ready, _, _ = select.select([reader], [], [], 30)
        assert ready, "the unprivileged child did not report within 30 s"
        return os.read(reader, 4096).decode()
    finally:
        os.close(reader)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_admin_peer_with_another_uid_is_closed_unheard(guests: Guests) -> None:
    member, _ = guests.member("member")
    # The file mode alone stops a plain unprivileged process (the directory is 0755).
    assert attempt_as_nobody(guests.server.admin_path, keep_root_files=False) == "denied"
    # Past the mode (fsuid 0), the server's own uid check must close the peer unheard.
    outcome = attempt_as_nobody(guests.server.admin_path, keep_root_files=True)
    assert outcome in ("closed eof b''", "closed reset b''"), outcome
    admin = guests.admin()
    admin_say(admin, "marker")
    member.expect(Kind.ANNOUNCE, "marker")  # the intruder's ANNOUNCE never came first


# ------------------------------------------------------------------- the limited server
def test_join_timeout(limited_guests: Guests) -> None:
    admin = limited_guests.admin()
    member, _ = limited_guests.member("member")
    connected = time.monotonic()  # before the connects: the server accepts later still
    idle = limited_guests.connect("idle")
    busy = limited_guests.connect("busy")
    # `busy` keeps failing JOINs and pinging: none of it may restart the clock, so the
    # TIMEOUT must come although the connection is never quiet for more than ~0.1 s.
    probes = [(encode(Kind.JOIN, "\u2028"), Code.NAME_INVALID), (encode(Kind.PING, b"tick"), None)]
    for attempt in itertools.count():
        assert time.monotonic() - connected < 10, "no TIMEOUT although the join timeout is 1 s"
        probe, wanted_code = probes[attempt % 2]
        try:
            busy.send_raw(probe)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed already: the TIMEOUT is waiting to be read
        frame = busy.recv_frame()
        if frame.kind == Kind.ERROR and frame.error()[0] == Code.TIMEOUT:
            break
        if wanted_code is None:
            assert frame == Frame(Kind.PONG, b"tick"), frame
        else:
            assert frame.kind == Kind.ERROR and frame.error()[0] == wanted_code, frame
        if busy.has_data(0.1):  # pacing between probes; anything unasked must be TIMEOUT
            busy.expect_error(Code.TIMEOUT)
            break
    elapsed = time.monotonic() - connected
    assert elapsed >= JOIN_TIMEOUT * 0.95, f"TIMEOUT after only {elapsed:.2f} s"
    busy.expect_closed(allow_reset=True)  # our last frame may have crossed the close
    idle.expect_error(Code.TIMEOUT)
    idle.expect_closed()
    member.ping()  # joined before the deadline: never timed out
    assert len(admin_list(admin)) == 1  # the admin connection has no join timeout


def test_rate_limit_burst(limited_guests: Guests) -> None:
    sender, name = limited_guests.member("burst")
    reader, reader_name = limited_guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    burst = 2 * RATE + 12
    texts = [f"b{i}" for i in range(burst)]
    bad = [encode(Kind.SAY, b""), encode(Kind.SAY, "bell\x07")]  # BAD_FRAME beats RATE_LIMITED
    sender.send_raw(b"".join(encode(Kind.SAY, text) for text in texts) + b"".join(bad))
    replies = sender.frames_until_pong()
    codes = [frame.error()[0] for frame in replies]
    assert codes[-2:] == [Code.BAD_FRAME, Code.BAD_FRAME], replies
    limited = codes[:-2]
    assert set(limited) <= {Code.RATE_LIMITED}, replies
    delivered = [reader.expect(Kind.MESSAGE) for _ in range(burst - len(limited))]
    limited_guests.quiet_until_marker(reader)
    # A full bucket holds 2N; a busy machine may refill a few tokens meanwhile (N per s).
    assert len(delivered) + len(limited) == burst
    assert len(delivered) >= 2 * RATE
    assert len(limited) >= 12 - RATE, f"only {len(limited)} of {burst} SAYs were rate limited"
    sent_texts = [frame.message()[1] for frame in delivered]
    assert sent_texts == [t for t in texts if t in sent_texts]  # dropped, never reordered
    # Tokens come back at N per second.
    deadline = time.monotonic() + 10
    while True:
        assert time.monotonic() < deadline, "no token came back within 10 s"
        sender.send_frame(Kind.SAY, "refilled?")
        if not sender.frames_until_pong():
            break
        sender.has_data(0.1)  # pacing: wait a little for a token, not for ordering
    reader.expect(Kind.MESSAGE, message_payload(name, "refilled?"))


def test_errors_use_no_rate_token(limited_guests: Guests) -> None:
    sender, name = limited_guests.member("careful")
    reader, reader_name = limited_guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    errors = [encode(Kind.SAY, b"")] * 10 + [encode(Kind.SAY, b"\xff")] * 10 + [encode(Kind.JOIN, "again")] * 5
    good = [encode(Kind.SAY, f"g{i}") for i in range(2 * RATE)]
    sender.send_raw(b"".join(errors) + b"".join(good))
    codes = [frame.error()[0] for frame in sender.frames_until_pong()]
    assert codes == [Code.BAD_FRAME] * 20 + [Code.ALREADY_JOINED] * 5
    for i in range(2 * RATE):
        reader.expect(Kind.MESSAGE, message_payload(name, f"g{i}"))
    limited_guests.quiet_until_marker(reader)


# The bucket's 2N cap needs time to pass; tests/test_room.py checks it with a driven clock
# instead of sleeping here.


@pytest.mark.timeout(30)
def test_payload_limit_option(limited_guests: Guests) -> None:
    sender, name = limited_guests.member("sizer")
    reader, reader_name = limited_guests.member("reader")
    sender.expect(Kind.JOINED, reader_name)
    text = "s" * LIMITED_PAYLOAD
    sender.send_frame(Kind.SAY, text)
    reader.expect(Kind.MESSAGE, message_payload(name, text))
    sender.send_raw(HEADER.pack(LIMITED_PAYLOAD + 1, Kind.SAY))
    sender.expect_error(Code.TOO_LARGE)
    sender.expect_closed()
    reader.expect(Kind.LEFT, name)


# ----------------------------------------------------------------------------- shutdown
@pytest.mark.parametrize("engine_name", ENGINES)
def test_sigterm_shutdown(engine_name: str, tmp_path: Path) -> None:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    server = ServerProcess.start("--engine", engine_name, "--port", "0", env=env)
    clients: list[WireClient] = []
    try:
        assert server.admin_path == f"{runtime}/learn-chat-{server.port}.sock"
        slow = server.connect("slow", rcvbuf=4096)
        other = server.connect("other")
        stranger = server.connect("stranger")
        admin = server.admin()
        clients += [slow, other, stranger, admin]
        slow.join("slow")
        other.join("other")
        stranger.ping()  # accepted, never joined
        texts = [f"{i}:" + "y" * 3000 for i in range(10)]
        for text in texts:
            admin_say(admin, text)  # queued for `slow`, which reads nothing yet

        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        ended = read_all_until_closed(clients, timeout=15)
        code = server.wait_exit(15)

        announces = [Frame(Kind.ANNOUNCE, text.encode()) for text in texts]
        expected = {
            slow: [Frame(Kind.JOINED, b"other")] + announces,
            other: announces,
            stranger: [],
            admin: [],
        }
        for client, (frames, end, closed_at) in ended.items():
            assert frames[:-1] == expected[client], f"{client.label}: {frames!r}"
            assert frames[-1].kind == Kind.ERROR and frames[-1].error()[0] == Code.SHUTDOWN, client.label
            assert not end.reset and end.leftover == 0, f"{client.label}: {end}"
            assert closed_at - signalled < 5, f"{client.label} closed {closed_at - signalled:.1f} s after SIGTERM"
        assert code == 0, server.diagnostics()
        assert not os.path.exists(server.admin_path), "the admin socket file was left behind"
    finally:
        for client in clients:
            client.close()
        server.stop()


# -------------------------------------------------------------------- Unix transport
@pytest.mark.parametrize("engine_name", ENGINES)
def test_unix_socket_transport(engine_name: str, tmp_path: Path) -> None:
    path = tmp_path / "chat.sock"
    server = ServerProcess.start("--engine", engine_name, "--unix", str(path))
    clients: list[WireClient] = []
    try:
        assert server.unix_path == str(path)
        assert server.admin_path == f"{path}.admin"
        first = server.connect("first")
        second = server.connect("second")
        admin = server.admin()
        clients += [first, second, admin]
        assert first.join(" Ｆirst ") == "First"
        for byte in encode(Kind.JOIN, "second"):
            second.send_raw(bytes([byte]))
        second.expect(Kind.WELCOME, "second")
        first.expect(Kind.JOINED, "second")
        second.send_frame(Kind.SAY, "over a Unix socket")
        first.expect(Kind.MESSAGE, message_payload("second", "over a Unix socket"))
        said = run_admin_cli("say", "via --unix", "--unix", str(path))
        assert said.returncode == 0, said.stderr
        for client in (first, second):
            client.expect(Kind.ANNOUNCE, "via --unix")
        assert admin_list(admin) == ["First", "second"]

        server.signal(signal.SIGINT)
        ended = read_all_until_closed(clients, timeout=15)
        for client, (frames, end, _) in ended.items():
            assert [f.kind for f in frames] == [Kind.ERROR], f"{client.label}: {frames!r}"
            assert frames[0].error()[0] == Code.SHUTDOWN
        assert server.wait_exit(15) == 0, server.diagnostics()
        assert not path.exists() and not Path(f"{path}.admin").exists(), "socket files left behind"
    finally:
        for client in clients:
            client.close()
        server.stop()


# ----------------------------------------------------------- admin socket path and files
def _env_without_runtime_dir(tmpdir: Path, runtime: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmpdir)
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = runtime
    return env


@pytest.mark.parametrize("runtime", [None, ""], ids=["unset", "empty"])
def test_default_admin_path_in_private_temp_dir(tmp_path: Path, runtime: str | None) -> None:
    env = _env_without_runtime_dir(tmp_path, runtime)
    with ServerProcess.start("--port", "0", env=env) as server:
        private = tmp_path / f"learn-{os.getuid()}"
        assert server.admin_path == f"{private}/chat-{server.port}.sock"
        info = os.stat(private)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert stat.S_IMODE(os.stat(server.admin_path).st_mode) == 0o600
        admin = server.admin()
        assert admin_list(admin) == []
        admin.close()


def _assert_refused(result) -> None:
    assert result.returncode != 0, f"the server started: {result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip(), "no message on stderr"


@pytest.mark.parametrize("planted", ["open-mode", "other-owner", "plain-file"])
def test_planted_private_dir_is_refused(tmp_path: Path, planted: str) -> None:
    private = tmp_path / f"learn-{os.getuid()}"
    if planted == "plain-file":
        private.write_text("not a directory")
    else:
        private.mkdir()
        private.chmod(0o777 if planted == "open-mode" else 0o700)
        if planted == "other-owner":
            if os.geteuid() != 0:
                pytest.skip("chown to another user needs root")
            os.chown(private, NOBODY, NOBODY)
    _assert_refused(run_failing_server("--port", "0", env=_env_without_runtime_dir(tmp_path)))


def test_live_admin_socket_is_refused_and_stale_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    with ServerProcess.start("--port", "0", "--admin-socket", str(path)) as first:
        _assert_refused(run_failing_server("--port", "0", "--admin-socket", str(path)))
        assert first.members() == []  # the live server kept its socket
    stale = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))
    leftover.close()  # the file stays; connecting to it is refused
    with ServerProcess.start("--port", "0", "--admin-socket", str(stale)) as second:
        assert second.members() == []


def test_admin_command_finds_the_server_by_port(tmp_path: Path) -> None:
    env = _env_without_runtime_dir(tmp_path)
    with ServerProcess.start("--port", "0", env=env) as server:
        result = run_admin_cli("list", "--port", str(server.port), env=env)
        assert result.returncode == 0, result.stderr
        missing = run_admin_cli("list", "--port", str(server.port + 1 if server.port < 65535 else 1), env=env)
        assert missing.returncode == 2, missing.stdout + missing.stderr
