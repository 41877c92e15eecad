"""Checks for chat-room: your Room driven the way the real server drives capstone.room.Room.

The driver below does what the server's I/O loop (capstone/server.py) does with the
effects, on in-memory inboxes instead of sockets: Send to one connection, Broadcast to
every connection the effect names in `to` but `exclude`, Close. It never looks inside
the room: the effects alone say who gets what. The frames are read back with struct "!IB" exactly as PROTOCOL.md writes them, not with the
capstone's codec. The same checks run against the capstone's own Room in the project's
test suite: one set of rules for both.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from types import ModuleType

import pytest

from capstone.room import Broadcast, Close, Log, Send
from lessons.toolkit.i18n import N_, _

HEADER = struct.Struct("!IB")
JOIN, SAY, LEAVE, PING, WHO = 0x01, 0x02, 0x03, 0x04, 0x05
WELCOME, ERROR, JOINED, LEFT, MESSAGE, ANNOUNCE, PONG, MEMBERS = range(0x81, 0x89)
KIND_NAMES = {0x81: "WELCOME", 0x82: "ERROR", 0x83: "JOINED", 0x84: "LEFT", 0x85: "MESSAGE",
              0x86: "ANNOUNCE", 0x87: "PONG", 0x88: "MEMBERS"}
(NAME_TAKEN, NAME_INVALID, NOT_JOINED, ALREADY_JOINED, TOO_LARGE, BAD_FRAME) = range(1, 7)
CODE_NAMES = {1: "NAME_TAKEN", 2: "NAME_INVALID", 3: "NOT_JOINED", 4: "ALREADY_JOINED", 5: "TOO_LARGE",
              6: "BAD_FRAME", 7: "RATE_LIMITED", 8: "SHUTDOWN", 9: "TIMEOUT", 10: "KICKED", 11: "NO_SUCH_MEMBER"}
Frame = tuple[int, bytes]


def parse(data: bytes) -> list[Frame]:
    frames, offset = [], 0
    while offset < len(data):
        assert len(data) - offset >= HEADER.size, _("your room produced a cut frame header: {data}.").format(
            data=repr(data[offset:]))
        length, kind = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        assert start + length <= len(data), _("your room produced a frame shorter than its header says: {data}.").format(
            data=repr(data))
        frames.append((kind, bytes(data[start:start + length])))
        offset = start + length
    return frames


def show(frame: Frame) -> str:
    kind, payload = frame
    name = KIND_NAMES.get(kind, f"0x{kind:02x}")
    if kind == ERROR and payload:
        return f"ERROR {CODE_NAMES.get(payload[0], payload[0])} {payload[1:].decode(errors='replace')!r}"
    if kind == MESSAGE and payload:
        size = payload[0]
        sender, said = payload[1:1 + size].decode(errors="replace"), payload[1 + size:].decode(errors="replace")
        return f"MESSAGE {sender}: {said!r}"
    return f"{name} {payload.decode(errors='replace')!r}" if payload else name


def show_all(frames: list[Frame]) -> str:
    return ", ".join(show(frame) for frame in frames) or _("nothing")


def text(kind: int, value: str) -> Frame:
    return kind, value.encode()


def message(name: str, value: str) -> Frame:
    raw = name.encode()
    return MESSAGE, bytes((len(raw),)) + raw + value.encode()


class Driver:
    """Carries out the room's effects like a server's I/O loop, on inboxes; names for connections."""

    def __init__(self, room: object) -> None:
        self.room = room
        self.inbox: dict[str, list[Frame]] = defaultdict(list)
        self.conns: dict[str, int] = {}
        self.names: dict[int, str] = {}
        self.closed: set[int] = set()
        self.welcomed: set[int] = set()  # connections that got WELCOME: members, as far as the frames tell
        self.now = 1000.0

    def open(self, who: str) -> str:
        conn = 10 + len(self.conns)
        self.conns[who], self.names[conn] = conn, who
        self.apply(self.room.connect(conn, self.now), _("{who} connected").format(who=who))
        return who

    def join(self, who: str, name: str | None = None) -> str:
        if who not in self.conns:
            self.open(who)
        self.send(who, JOIN, (who if name is None else name).encode())
        return who

    def send(self, who: str, kind: int, payload: bytes = b"") -> None:
        self.now += 0.5
        effects = self.room.receive(self.conns[who], kind, payload, self.now)
        self.apply(effects, _("{who} sent {kind} {payload}").format(
            who=who, kind=KIND_NAMES.get(kind, hex(kind)), payload=repr(payload[:40])))

    def say(self, who: str, value: str) -> None:
        self.send(who, SAY, value.encode())

    def drop(self, who: str) -> None:
        conn = self.conns[who]
        self.apply(self.room.disconnect(conn), _("{who}'s connection was lost").format(who=who))
        self.closed.add(conn)

    def apply(self, effects: object, after: str) -> None:
        """Carry out `effects`; `after` (translated) names what caused them, for a failure."""
        assert isinstance(effects, list), _(
            "after {after}, your room returned {effects} instead of a list of effects.").format(
            after=after, effects=repr(effects))
        for effect in effects:
            if isinstance(effect, Send):
                self.deliver(effect.conn, effect.data, after)
            elif isinstance(effect, Broadcast):
                self.expect_recipients(effect, after)
                for conn in effect.to:  # as the real server does
                    if conn != effect.exclude:
                        self.deliver(conn, effect.data, after)
            elif isinstance(effect, Close):
                self.closed.add(effect.conn)
            elif not isinstance(effect, Log):
                pytest.fail(_("after {after}, your room returned {effect}: effects are Send, Broadcast "
                              "and Close.").format(after=after, effect=repr(effect)), pytrace=False)

    def expect_recipients(self, effect: Broadcast, after: str) -> None:
        """A Broadcast made by hand, without `to`, would silently reach nobody: say so instead."""
        others = self.welcomed - self.closed - {effect.exclude}
        if not effect.to and others:
            pytest.fail(_("after {after}, your room returned a Broadcast with nobody in `to`, while {names} "
                          "had joined: make it with self.broadcast(data, exclude), which puts the members in "
                          "`to`.").format(after=after, names=", ".join(sorted(self.names[conn] for conn in others))),
                        pytrace=False)

    def deliver(self, conn: int, data: bytes, after: str) -> None:
        who = self.names.get(conn) or _("connection {conn}").format(conn=conn)
        frames = parse(data)
        assert conn not in self.closed, _(
            "after {after}, your room sent {frames} to {who}, whose connection it had closed.").format(
            after=after, frames=show_all(frames), who=who)
        if any(kind == WELCOME for kind, _payload in frames):
            self.welcomed.add(conn)
        self.inbox[who].extend(frames)

    def take(self, who: str) -> list[Frame]:
        """What `who` received since the last take."""
        frames, self.inbox[who] = self.inbox[who], []
        return frames

    def expect(self, who: str, wanted: list[Frame], after: str) -> None:
        got = self.take(who)
        assert got == wanted, _(
            "after {after}, {who} should have received {wanted}; {who} received {got}.").format(
            after=after, who=who, wanted=show_all(wanted), got=show_all(got))

    def expect_error(self, who: str, code: int, after: str) -> None:
        got = self.take(who)
        codes = [frame[1][0] for frame in got if frame[0] == ERROR and frame[1]]
        assert codes == [code], _("after {after}, {who} should have received ERROR {code}; "
                                  "{who} received {got}.").format(after=after, who=who, code=CODE_NAMES[code],
                                                                  got=show_all(got))
        reason = next(frame[1][1:] for frame in got if frame[0] == ERROR)
        assert reason.decode(errors="replace").strip(), _(
            "the ERROR {code} carries no reason: after the code byte, a few words of UTF-8.").format(
            code=CODE_NAMES[code])
        assert self.conns[who] not in self.closed, _(
            "after {after}, your room closed {who}'s connection; it stays open.").format(after=after, who=who)


@pytest.fixture
def chat(learner: ModuleType) -> Driver:
    return Driver(learner.Room())


def room_of(chat: Driver, *names: str) -> Driver:
    """Join each name in turn and forget what they received so far."""
    for name in names:
        chat.join(name)
    for name in names:
        chat.take(name)
    return chat


# ----- joining ---------------------------------------------------------------------------


@pytest.mark.title(N_("JOIN is answered with WELCOME and the name, to the joiner only"))
def test_joining_gets_a_welcome(chat: Driver) -> None:
    chat.join("alice")
    chat.expect("alice", [text(WELCOME, "alice")], _("alice sent JOIN 'alice'"))


@pytest.mark.title(N_("Every other member is told who entered (JOINED), the newcomer is not"))
def test_everyone_else_is_told_who_entered(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.join("carol")
    chat.expect("carol", [text(WELCOME, "carol")], _("carol joined"))
    chat.expect("alice", [text(JOINED, "carol")], _("carol joined"))
    chat.expect("bob", [text(JOINED, "carol")], _("carol joined"))


@pytest.mark.title(N_("Names are normalized: NFKC, surrounding whitespace stripped"))
def test_names_are_normalized(chat: Driver) -> None:
    chat.join("first", "  bob\t")
    chat.expect("first", [text(WELCOME, "bob")], "JOIN '  bob\\t'")
    chat.join("second", "ｃａｒｏｌ")  # full-width letters: NFKC makes them 'carol'
    chat.expect("second", [text(WELCOME, "carol")], _("JOIN 'ｃａｒｏｌ' (full-width)"))


@pytest.mark.title(N_("A name is unique without regard to case; the loser may try another name"))
def test_names_are_unique_without_regard_to_case(chat: Driver) -> None:
    room_of(chat, "alice")
    chat.join("other", "ALICE")
    chat.expect_error("other", NAME_TAKEN, _("'ALICE' tried to join while 'alice' was there"))
    chat.send("other", JOIN, b"alice2")
    chat.expect("other", [text(WELCOME, "alice2")], _("the same connection then sent JOIN 'alice2'"))
    chat.expect("alice", [text(JOINED, "alice2")], _("alice2 joined"))


@pytest.mark.parametrize("bad_name", ["", "   ", "x" * 33, "a\x07b", "Admin", "管理员"],
                         ids=["empty", "blank", "too-long", "control", "reserved", "reserved-zh"])
@pytest.mark.title(N_("Empty, too long, control characters and reserved names are NAME_INVALID"))
def test_invalid_names_are_refused(chat: Driver, bad_name: str) -> None:
    room_of(chat, "alice")
    chat.join("newcomer", bad_name)
    chat.expect_error("newcomer", NAME_INVALID, f"JOIN {bad_name!r}")
    chat.expect("alice", [], _("a JOIN {name} that failed").format(name=repr(bad_name)))


@pytest.mark.title(N_("A JOIN that is not UTF-8 is BAD_FRAME, not NAME_INVALID"))
def test_a_name_that_is_not_utf8_is_a_bad_frame(chat: Driver) -> None:
    chat.open("newcomer")
    chat.send("newcomer", JOIN, b"\xff\xfe")
    chat.expect_error("newcomer", BAD_FRAME, "JOIN b'\\xff\\xfe'")


@pytest.mark.title(N_("A second JOIN is ALREADY_JOINED"))
def test_joining_twice_is_an_error(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.send("alice", JOIN, b"alicia")
    chat.expect_error("alice", ALREADY_JOINED, _("alice sent a second JOIN"))
    chat.expect("bob", [], _("alice's second JOIN"))


@pytest.mark.title(N_("A name is free again once its member has left"))
def test_a_freed_name_can_be_taken_again(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.send("alice", LEAVE)
    chat.join("again", "alice")
    chat.expect("again", [text(WELCOME, "alice")], _("a new connection took the name of alice, who had left"))


# ----- talking ---------------------------------------------------------------------------


@pytest.mark.title(N_("SAY reaches every other member as MESSAGE (sender, text); not the sender"))
def test_a_message_reaches_everyone_else(chat: Driver) -> None:
    room_of(chat, "alice", "bob", "carol")
    chat.say("alice", "hello, 大家好")
    chat.expect("bob", [message("alice", "hello, 大家好")], _("alice said 'hello, 大家好'"))
    chat.expect("carol", [message("alice", "hello, 大家好")], _("alice said 'hello, 大家好'"))
    chat.expect("alice", [], _("alice said something (a sender gets no copy)"))


@pytest.mark.title(N_("A message may hold newlines and tabs"))
def test_newline_and_tab_are_allowed_in_a_message(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.say("alice", "two\nlines\tand a tab")
    chat.expect("bob", [message("alice", "two\nlines\tand a tab")], _("alice said 'two\\nlines\\tand a tab'"))


@pytest.mark.parametrize("payload", [b"", b"ring \x07", b"\xff"], ids=["empty", "control", "not-utf8"])
@pytest.mark.title(N_("An empty SAY, one with a control character, or one that is not UTF-8 is BAD_FRAME"))
def test_bad_messages_are_bad_frames(chat: Driver, payload: bytes) -> None:
    room_of(chat, "alice", "bob")
    chat.send("alice", SAY, payload)
    chat.expect_error("alice", BAD_FRAME, _("alice sent SAY {payload}").format(payload=repr(payload)))
    chat.expect("bob", [], _("alice's bad SAY {payload}").format(payload=repr(payload)))


@pytest.mark.title(N_("SAY and WHO before JOIN are NOT_JOINED, and nobody hears anything"))
def test_speaking_before_joining_is_an_error(chat: Driver) -> None:
    room_of(chat, "alice")
    chat.open("stranger")
    chat.say("stranger", "hi")
    chat.expect_error("stranger", NOT_JOINED, _("a connection that had not joined sent SAY"))
    chat.send("stranger", WHO)
    chat.expect_error("stranger", NOT_JOINED, _("a connection that had not joined sent WHO"))
    chat.expect("alice", [], _("a stranger's SAY"))


@pytest.mark.title(N_("Precedence: a SAY that is not UTF-8 is BAD_FRAME even before JOIN"))
def test_a_bad_frame_comes_before_not_joined(chat: Driver) -> None:
    chat.open("stranger")
    chat.send("stranger", SAY, b"\xff")
    chat.expect_error("stranger", BAD_FRAME, _("a connection that had not joined sent SAY b'\\xff'"))


@pytest.mark.parametrize("kind", [0x42, 0x10, 0x81], ids=["unknown", "admin-kind", "server-kind"])
@pytest.mark.title(N_("A kind the chat port does not know is BAD_FRAME, and the connection stays open"))
def test_unknown_kinds_are_bad_frames(chat: Driver, kind: int) -> None:
    room_of(chat, "alice")
    chat.send("alice", kind, b"whatever")
    chat.expect_error("alice", BAD_FRAME, _("alice sent a frame of kind {kind}").format(kind=f"0x{kind:02x}"))


@pytest.mark.title(N_("PING is answered with PONG and the same bytes, even before JOIN; over 64 bytes is BAD_FRAME"))
def test_ping_is_answered_with_pong(chat: Driver) -> None:
    chat.open("anyone")
    chat.send("anyone", PING, b"\x00\x01 are you there")
    chat.expect("anyone", [(PONG, b"\x00\x01 are you there")], "PING b'\\x00\\x01 are you there'")
    chat.send("anyone", PING, b"p" * 65)
    chat.expect_error("anyone", BAD_FRAME, _("a PING of 65 bytes"))


@pytest.mark.title(N_("WHO is answered with MEMBERS: every name, in join order, joined by newlines"))
def test_who_lists_the_members_in_join_order(chat: Driver) -> None:
    room_of(chat, "carol", "alice", "bob")
    chat.send("alice", WHO)
    chat.expect("alice", [text(MEMBERS, "carol\nalice\nbob")], _("alice sent WHO"))


# ----- leaving ---------------------------------------------------------------------------


@pytest.mark.title(N_("LEAVE: the others get LEFT, the connection is closed and hears no more"))
def test_leaving_tells_the_others_and_closes(chat: Driver) -> None:
    room_of(chat, "alice", "bob", "carol")
    chat.send("alice", LEAVE)
    chat.expect("bob", [text(LEFT, "alice")], _("alice left"))
    chat.expect("carol", [text(LEFT, "alice")], _("alice left"))
    assert chat.conns["alice"] in chat.closed, _("after alice sent LEAVE, your room did not Close her connection.")
    chat.say("bob", "is she gone?")
    chat.expect("carol", [message("bob", "is she gone?")], _("bob spoke after alice left"))


@pytest.mark.title(N_("A member's lost connection is LEFT for the others; a stranger's is silent"))
def test_a_lost_connection_tells_the_others(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.open("stranger")
    chat.drop("stranger")
    chat.expect("alice", [], _("a connection that had never joined was lost"))
    chat.drop("bob")
    chat.expect("alice", [text(LEFT, "bob")], _("bob's connection was lost"))
    chat.join("newbob", "bob")
    chat.expect("newbob", [text(WELCOME, "bob")], _("someone took the name bob after bob's connection was lost"))


# ----- the administrator, and one order for all ---------------------------------------


@pytest.mark.title(N_("announce(): ANNOUNCE to every member, and to nobody who has not joined"))
def test_an_announcement_reaches_every_member(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.open("stranger")
    chat.apply(chat.room.announce("the room closes at ten"), "announce('the room closes at ten')")
    for who in ("alice", "bob"):
        chat.expect(who, [text(ANNOUNCE, "the room closes at ten")], _("the administrator's announcement"))
    chat.expect("stranger", [], _("an announcement (the stranger had not joined)"))


@pytest.mark.title(N_("A whole conversation: each member hears the same broadcasts, in the server's order"))
def test_a_conversation_in_one_order_for_everyone(chat: Driver) -> None:
    room_of(chat, "alice", "bob")
    chat.say("alice", "one")
    chat.join("carol")
    chat.say("bob", "two")
    chat.apply(chat.room.announce("three"), "announce('three')")
    chat.send("alice", LEAVE)
    chat.say("carol", "four")
    chat.expect("bob", [message("alice", "one"), text(JOINED, "carol"), text(ANNOUNCE, "three"),
                        text(LEFT, "alice"), message("carol", "four")], _("the whole conversation"))
    chat.expect("carol", [text(WELCOME, "carol"), message("bob", "two"), text(ANNOUNCE, "three"),
                          text(LEFT, "alice")], _("the whole conversation"))
    chat.expect("alice", [text(JOINED, "carol"), message("bob", "two"), text(ANNOUNCE, "three")],
                _("the whole conversation"))
