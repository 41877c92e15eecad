"""The chat room (capstone/room.py) checked rule by rule against PROTOCOL.md, with no sockets.

The room is sans-IO: these tests call it the way a driver would and carry out the
effects it returns on in-memory inboxes, exactly as a real driver must. The frames are
decoded with a few lines written from PROTOCOL.md (struct "!IB" and the kind tables),
not with capstone.codec, so the bytes are checked against the page rather than against
the code that produced them. Time is a number the tests pass in.
"""

from __future__ import annotations

import struct
import unicodedata
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.room import Broadcast, Close, Defer, Limits, Log, Resume, Room, Send

# ----- the wire, as PROTOCOL.md writes it ---------------------------------------------

HEADER = struct.Struct("!IB")  # payload length (uint32), kind (uint8)

JOIN, SAY, LEAVE, PING, WHO = 0x01, 0x02, 0x03, 0x04, 0x05
ADMIN_SAY, KICK, LIST = 0x10, 0x11, 0x12
WELCOME, ERROR, JOINED, LEFT, MESSAGE, ANNOUNCE, PONG, MEMBERS = range(0x81, 0x89)
OK = 0x90
BROADCAST_KINDS = frozenset({JOINED, LEFT, MESSAGE, ANNOUNCE})

(NAME_TAKEN, NAME_INVALID, NOT_JOINED, ALREADY_JOINED, TOO_LARGE, BAD_FRAME,
 RATE_LIMITED, SHUTDOWN, TIMEOUT, KICKED, NO_SUCH_MEMBER) = range(1, 12)

Frame = tuple[int, bytes]  # (kind, payload)


def parse_stream(data: bytes) -> list[Frame]:
    """Split what one connection was sent into frames; a cut frame is a defect."""
    frames, offset = [], 0
    while offset < len(data):
        assert len(data) - offset >= HEADER.size, f"a header is cut short: {data[offset:]!r}"
        length, kind = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        assert start + length <= len(data), f"a payload is cut short: {data[offset:]!r}"
        frames.append((kind, bytes(data[start:start + length])))
        offset = start + length
    return frames


def text_frame(kind: int, text: str) -> Frame:
    return kind, text.encode()


def message_frame(name: str, text: str) -> Frame:
    """MESSAGE payload: !B name length in bytes, the name, then the text."""
    raw_name = name.encode()
    return MESSAGE, struct.pack("!B", len(raw_name)) + raw_name + text.encode()


def error_code(frame: Frame) -> int | None:
    kind, payload = frame
    return payload[0] if kind == ERROR and payload else None


def broadcasts_in(frames: list[Frame]) -> list[Frame]:
    return [frame for frame in frames if frame[0] in BROADCAST_KINDS]


# ----- the harness: a driver with inboxes instead of sockets -------------------------


class FakeDriver:
    """Carries out the room's effects the way a real driver must, on byte inboxes.

    Send appends to one inbox; Broadcast to the inbox of every connection it names (`to`:
    the members when the room made it, so every member still there), but `exclude`;
    Close marks the connection closed after what was queued. Anything queued for a
    closed connection is a defect of the room and fails the test at once.
    """

    def __init__(self, **limits: float) -> None:
        self.room = Room(Limits(**limits))
        self.now = 0.0
        self.sent: dict[int, bytearray] = defaultdict(bytearray)
        self.read: dict[int, int] = defaultdict(int)  # bytes of `sent` already taken
        self.closed: set[int] = set()
        self.logs: list[Log] = []
        self.deferred: list[Defer] = []
        self.resumed: list[Resume] = []

    def apply(self, effects: list) -> list:
        for effect in effects:
            if isinstance(effect, Send):
                self._queue(effect.conn, effect.data)
            elif isinstance(effect, Broadcast):
                missed = [conn for conn in self.room.members if conn != effect.exclude and conn not in effect.to]
                assert not missed, f"a broadcast misses members {missed}"
                for conn in effect.to:
                    if conn != effect.exclude:
                        self._queue(conn, effect.data)
            elif isinstance(effect, Close):
                assert effect.conn not in self.closed, f"connection {effect.conn} closed twice"
                self.closed.add(effect.conn)
            elif isinstance(effect, Log):
                self.logs.append(effect)
            elif isinstance(effect, Defer):
                self.deferred.append(effect)
            elif isinstance(effect, Resume):
                self.resumed.append(effect)
            else:
                raise AssertionError(f"unknown effect {effect!r}")
        return effects

    def _queue(self, conn: int, data: bytes) -> None:
        assert conn not in self.closed, f"{data!r} queued for connection {conn} after its Close"
        self.sent[conn] += data

    # what happens on the network, as the driver reports it to the room

    def connect(self, conn: int, admin: bool = False) -> list:
        return self.apply(self.room.connect(conn, self.now, admin=admin))

    def send(self, conn: int, kind: int, payload: bytes = b"") -> list:
        return self.apply(self.room.receive(conn, kind, payload, self.now))

    def say(self, conn: int, text: str) -> list:
        return self.send(conn, SAY, text.encode())

    def send_bytes(self, conn: int, data: bytes) -> list:
        """Bytes as they arrive on the socket, cut anywhere."""
        return self.apply(self.room.receive_data(conn, data, self.now))

    def too_large(self, conn: int, length: int = 4097) -> list:
        """A header announcing `length` payload bytes (over the limit), and no payload."""
        return self.send_bytes(conn, HEADER.pack(length, SAY))

    def disconnect(self, conn: int) -> list:
        self.closed.add(conn)  # the peer is gone: nothing may be queued for it any more
        return self.apply(self.room.disconnect(conn))

    def tick(self, now: float) -> list:
        self.now = now
        return self.apply(self.room.tick(now))

    def announce(self, text: str) -> list:
        return self.apply(self.room.announce(text))

    def shutdown(self) -> list:
        return self.apply(self.room.shutdown())

    # what the tests look at

    def take(self, conn: int) -> list[Frame]:
        """The frames sent to `conn` since the last take."""
        new = self.sent[conn][self.read[conn]:]
        self.read[conn] = len(self.sent[conn])
        return parse_stream(bytes(new))

    def take_all(self) -> None:
        for conn in list(self.sent):
            self.take(conn)

    def is_open(self, conn: int) -> bool:
        return conn not in self.closed


def join(driver: FakeDriver, conn: int, name: str) -> None:
    """Connect `conn` and JOIN as `name`; its inbox is emptied after the WELCOME is seen."""
    driver.connect(conn)
    driver.send(conn, JOIN, name.encode())
    frames = driver.take(conn)
    assert frames[:1] == [text_frame(WELCOME, name)], frames


def room_with(*names: str, **limits: float) -> FakeDriver:
    """A driver whose room has these members on connections 1, 2, 3... and empty inboxes."""
    driver = FakeDriver(**limits)
    for conn, name in enumerate(names, start=1):
        join(driver, conn, name)
    driver.take_all()
    return driver


ADMIN = 99


def with_admin(driver: FakeDriver) -> FakeDriver:
    driver.connect(ADMIN, admin=True)
    return driver


def assert_still_served(driver: FakeDriver, conn: int) -> None:
    """An open connection is still answered: PING on the chat port, LIST on the admin one."""
    if conn == ADMIN:
        driver.send(conn, LIST)
        assert [kind for kind, _ in driver.take(conn)] == [MEMBERS]
    else:
        driver.send(conn, PING, b"still there?")
        assert driver.take(conn) == [(PONG, b"still there?")]


def assert_error(driver: FakeDriver, conn: int, code: int, *, closes: bool) -> None:
    """`conn` got exactly one ERROR `code` (a UTF-8 reason) and was closed or kept as the table says."""
    frames = driver.take(conn)
    assert [error_code(frame) for frame in frames] == [code], frames
    reason = frames[0][1][1:].decode("utf-8")  # raises if the reason is not UTF-8
    assert reason.strip(), "an ERROR carries a human-readable reason"
    assert driver.is_open(conn) is not closes
    if not closes:
        assert_still_served(driver, conn)


# ----- JOIN, WELCOME, JOINED ------------------------------------------------------------


def test_welcome_goes_only_to_the_joiner_and_joined_to_every_other_member() -> None:
    driver = room_with("alice", "bob")
    driver.connect(3)
    driver.connect(4)  # connected, never joins
    driver.send(3, JOIN, b"carol")
    assert driver.take(3) == [text_frame(WELCOME, "carol")], "the joiner gets WELCOME and not its own JOINED"
    assert driver.take(1) == [text_frame(JOINED, "carol")]
    assert driver.take(2) == [text_frame(JOINED, "carol")]
    assert driver.take(4) == []


def test_joined_members_and_message_carry_the_normalized_name() -> None:
    driver = room_with("bob")
    driver.connect(2)
    driver.send(2, JOIN, " ＺＯË\t".encode())
    assert driver.take(1) == [text_frame(JOINED, "ZOË")]
    driver.say(2, "hi")
    assert driver.take(1) == [message_frame("ZOË", "hi")]
    driver.send(1, WHO)
    assert driver.take(1) == [text_frame(MEMBERS, "bob\nZOË")]


# ----- SAY and MESSAGE ---------------------------------------------------------------------


def test_message_reaches_every_member_but_the_sender_with_its_byte_layout() -> None:
    driver = room_with("Zoë", "bob", "carol")
    driver.connect(4)  # not joined: no MESSAGE for it
    driver.say(1, "héllo\nworld\t!")
    expected = (MESSAGE, b"\x04Zo\xc3\xab" + "héllo\nworld\t!".encode())  # 4 = bytes in 'Zoë'
    assert driver.take(2) == [expected]
    assert driver.take(3) == [expected]
    assert driver.take(1) == []
    assert driver.take(4) == []


@pytest.mark.parametrize("text", ["\n", "a\tb", "line one\nline two", "zero\u200bwidth",
                                  "😀" * 1000, "x" * 4096])
def test_say_allows_newline_tab_and_non_control_characters(text: str) -> None:
    driver = room_with("alice", "bob")
    driver.say(1, text)
    assert driver.take(2) == [message_frame("alice", text)]
    assert driver.take(1) == []


SAY_CHARACTERS = st.one_of(
    st.sampled_from("\n\t\r\x00\x07\x0b\x1b\x1f\x7f\x80\x85\x9f\u200b\u2028\ue000 aé😀"),
    st.characters(codec="utf-8"),
)


@settings(max_examples=200, deadline=None)
@given(st.text(SAY_CHARACTERS, max_size=12))
def test_say_is_relayed_exactly_when_the_text_rule_allows_it(text: str) -> None:
    """Not empty, and no Unicode Cc character but newline and tab (PROTOCOL.md, SAY)."""
    allowed = bool(text) and all(
        char in "\n\t" or unicodedata.category(char) != "Cc" for char in text)
    driver = room_with("alice", "bob")
    driver.say(1, text)
    if allowed:
        assert driver.take(2) == [message_frame("alice", text)]
        assert driver.take(1) == []
    else:
        assert driver.take(2) == []
        assert_error(driver, 1, BAD_FRAME, closes=False)


# ----- who receives which broadcast ----------------------------------------------------


def test_a_connection_that_has_not_joined_receives_no_broadcast() -> None:
    driver = room_with("alice", "bob")
    driver.connect(3)
    driver.send(3, JOIN, b"ADMIN")  # a failed JOIN does not make a member
    driver.take(3)
    driver.say(1, "hello")
    driver.announce("notice")
    driver.connect(4)
    driver.send(4, JOIN, b"dave")
    driver.send(2, LEAVE)
    assert driver.take(3) == []


def test_a_member_receives_every_broadcast_after_its_welcome_and_none_before() -> None:
    driver = room_with("alice")
    driver.say(1, "before bob")
    driver.announce("before bob")
    driver.connect(2)
    driver.say(1, "still before bob")
    driver.send(2, JOIN, b"bob")
    driver.say(1, "after bob")
    driver.announce("after bob")
    assert driver.take(2) == [
        text_frame(WELCOME, "bob"),
        message_frame("alice", "after bob"),
        text_frame(ANNOUNCE, "after bob"),
    ]


def test_announce_reaches_every_member_and_nobody_else() -> None:
    driver = with_admin(room_with("alice", "bob"))
    driver.connect(3)
    driver.announce("tea is ready")
    assert driver.take(1) == [text_frame(ANNOUNCE, "tea is ready")]
    assert driver.take(2) == [text_frame(ANNOUNCE, "tea is ready")]
    assert driver.take(3) == []
    assert driver.take(ADMIN) == []


def test_every_member_sees_the_common_order_from_its_join_on() -> None:
    """A scripted run; the server's one order, and what each member must see of it."""
    driver = with_admin(FakeDriver(rate_limit=0))
    join(driver, 1, "alice")
    join(driver, 2, "bob")
    driver.say(1, "one")
    driver.connect(3)
    driver.announce("two")
    driver.say(2, "three")
    driver.send(3, JOIN, b"carol")
    driver.say(3, "four")
    driver.send(2, LEAVE)
    driver.send(ADMIN, KICK, b"alice")
    driver.connect(4)
    driver.send(4, JOIN, b"dave")
    driver.disconnect(3)
    # the common order: JOINED alice, JOINED bob, MESSAGE alice one, ANNOUNCE two,
    # MESSAGE bob three, JOINED carol, MESSAGE carol four, LEFT bob, LEFT alice,
    # JOINED dave, LEFT carol
    assert broadcasts_in(driver.take(1)) == [
        text_frame(JOINED, "bob"), text_frame(ANNOUNCE, "two"), message_frame("bob", "three"),
        text_frame(JOINED, "carol"), message_frame("carol", "four"), text_frame(LEFT, "bob")]
    assert broadcasts_in(driver.take(2)) == [
        message_frame("alice", "one"), text_frame(ANNOUNCE, "two"),
        text_frame(JOINED, "carol"), message_frame("carol", "four")]
    assert driver.take(3) == [
        text_frame(WELCOME, "carol"), text_frame(LEFT, "bob"), text_frame(LEFT, "alice"),
        text_frame(JOINED, "dave")]
    assert driver.take(4) == [text_frame(WELCOME, "dave"), text_frame(LEFT, "carol")]


class BroadcastModel:
    """My reading of PROTOCOL.md for broadcasts only: the server's one order, and who gets what.

    `order` is the common sequence of (frame, origin); a member gets the part made after
    its WELCOME and before it stopped being a member, minus its own MESSAGEs.
    """

    def __init__(self) -> None:
        self.order: list[tuple[Frame, int | None]] = []
        self.names: dict[int, str] = {}  # conn -> name, members only
        self.open: set[int] = set()
        self.span: dict[int, list[int]] = {}  # conn -> [start, end) in order

    def broadcast(self, frame: Frame, origin: int | None = None) -> None:
        self.order.append((frame, origin))

    def join(self, conn: int, raw: str) -> None:
        name = unicodedata.normalize("NFKC", raw).strip()
        taken = {other.casefold() for other in self.names.values()}
        if conn in self.open and conn not in self.names and name.casefold() not in taken:
            self.broadcast(text_frame(JOINED, name), origin=conn)
            self.names[conn] = name
            self.span[conn] = [len(self.order), -1]

    def say(self, conn: int, text: str) -> None:
        if conn in self.open and conn in self.names:
            self.broadcast(message_frame(self.names[conn], text), origin=conn)

    def gone(self, conn: int) -> None:
        """LEAVE, disconnect or KICK: the others get LEFT."""
        if conn in self.open:
            self.open.discard(conn)
            name = self.names.pop(conn, None)
            if name is not None:
                self.span[conn][1] = len(self.order)
                self.broadcast(text_frame(LEFT, name))

    def kick(self, raw: str) -> None:
        key = unicodedata.normalize("NFKC", raw).strip().casefold()
        for conn, name in list(self.names.items()):
            if name.casefold() == key:
                self.gone(conn)

    def expected(self, conn: int) -> list[Frame]:
        if conn not in self.span:
            return []
        start, end = self.span[conn]
        part = self.order[start:] if end < 0 else self.order[start:end]
        return [frame for frame, origin in part if not (frame[0] == MESSAGE and origin == conn)]


CONNS = st.integers(1, 5)
SCRIPT_NAMES = st.sampled_from(["alice", "ALICE", "bob", " Bob\t", "carol", "ｃａｒｏｌ",
                                "Straße", "STRASSE"])
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("join"), CONNS, SCRIPT_NAMES),
    st.tuples(st.just("say"), CONNS, st.sampled_from(["hi", "two\nlines", "é"])),
    st.tuples(st.just("leave"), CONNS),
    st.tuples(st.just("disconnect"), CONNS),
    st.tuples(st.just("kick"), SCRIPT_NAMES),
    st.tuples(st.just("announce"), st.sampled_from(["news", "更多"])),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_random_runs_keep_one_order_for_every_member(actions: list[tuple]) -> None:
    driver, model = with_admin(FakeDriver(rate_limit=0)), BroadcastModel()
    for conn in range(1, 6):
        driver.connect(conn)
        model.open.add(conn)
    for action, *args in actions:
        if action == "join":
            driver.send(args[0], JOIN, args[1].encode())
            model.join(*args)
        elif action == "say":
            driver.say(*args)
            model.say(*args)
        elif action in ("leave", "disconnect"):
            if action == "leave":
                driver.send(args[0], LEAVE)
            else:  # also after a Close: the room must not report a member twice
                driver.disconnect(args[0])
            model.gone(args[0])
        elif action == "kick":
            driver.send(ADMIN, KICK, args[0].encode())
            model.kick(args[0])
        else:
            driver.announce(args[0])
            model.broadcast(text_frame(ANNOUNCE, args[0]))
    for conn in range(1, 6):
        assert broadcasts_in(driver.take(conn)) == model.expected(conn), f"connection {conn}"
    assert broadcasts_in(driver.take(ADMIN)) == []


# ----- LEAVE, disconnect, WHO, PING ------------------------------------------------------


def test_leave_tells_the_others_and_closes_and_its_payload_is_ignored() -> None:
    driver = room_with("alice", "bob", "carol")
    driver.send(1, LEAVE, b"bye, and this payload is ignored")
    assert driver.take(1) == []
    assert not driver.is_open(1)
    assert driver.take(2) == [text_frame(LEFT, "alice")]
    assert driver.take(3) == [text_frame(LEFT, "alice")]
    driver.send(2, WHO)
    assert driver.take(2) == [text_frame(MEMBERS, "bob\ncarol")]


def test_leave_before_join_just_closes() -> None:
    driver = room_with("alice")
    driver.connect(2)
    driver.send(2, LEAVE)
    assert not driver.is_open(2)
    assert driver.take(2) == []
    assert driver.take(1) == []


def test_a_name_is_free_again_once_its_member_left() -> None:
    driver = room_with("alice", "bob")
    driver.send(1, LEAVE)
    join(driver, 3, "ALICE")


def test_disconnect_of_a_member_sends_left_to_the_others_once() -> None:
    driver = room_with("alice", "bob")
    driver.disconnect(1)
    assert driver.take(2) == [text_frame(LEFT, "alice")]
    driver.disconnect(1)  # reported twice by a clumsy driver: still one LEFT
    assert driver.take(2) == []
    join(driver, 3, "alice")


def test_disconnect_of_a_non_member_tells_nobody() -> None:
    driver = with_admin(room_with("alice"))
    driver.connect(2)
    driver.send(2, JOIN, b"Alice")  # NAME_TAKEN: still not a member
    driver.take(2)
    driver.disconnect(2)
    driver.disconnect(ADMIN)
    driver.disconnect(12345)  # never connected
    assert driver.take(1) == []


def test_who_lists_the_members_in_join_order_and_ignores_its_payload() -> None:
    driver = room_with("carol", "alice", "bob")
    driver.send(2, LEAVE)
    join(driver, 4, "Ália")
    driver.take_all()
    driver.send(1, WHO, b"ignored")
    assert driver.take(1) == [text_frame(MEMBERS, "carol\nbob\nÁlia")]


def test_who_from_the_only_member_has_no_separator() -> None:
    driver = room_with("alice")
    driver.send(1, WHO)
    assert driver.take(1) == [text_frame(MEMBERS, "alice")]


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(64)), b"\xff" * 64])
def test_ping_is_echoed_without_join(payload: bytes) -> None:
    driver = FakeDriver()
    driver.connect(1)
    driver.send(1, PING, payload)
    assert driver.take(1) == [(PONG, payload)]


def test_ping_of_65_bytes_is_a_bad_frame_and_keeps_the_connection() -> None:
    driver = FakeDriver()
    driver.connect(1)
    driver.send(1, PING, b"p" * 65)
    assert_error(driver, 1, BAD_FRAME, closes=False)


# ----- WHO and PING: a bucket of their own, and waiting instead of refusing ----------------

def test_who_and_ping_share_a_bucket_of_twice_the_query_rate_and_wait_past_it() -> None:
    driver = room_with("alice", query_rate=5)
    for index in range(10):  # the bucket: 2 x 5, full at connect
        driver.send(1, PING if index % 2 else WHO, b"")
    assert len(driver.take(1)) == 10 and not driver.deferred
    effects = driver.send(1, PING, b"eleventh")
    assert effects == [Defer(1, until=pytest.approx(0.2))], effects
    assert driver.room.next_deadline() == pytest.approx(0.2)
    assert driver.take(1) == []  # not refused, not answered: the room keeps it
    driver.tick(0.19)
    assert driver.take(1) == [] and not driver.resumed
    assert driver.tick(0.2)[-1] == Resume(1)  # one token (1/5 s) later the same frame is answered
    assert driver.take(1) == [(PONG, b"eleventh")]


def test_the_query_bucket_leaves_the_say_bucket_alone() -> None:
    driver = room_with("alice", "bob", query_rate=1, rate_limit=3)
    for _ in range(2):  # the whole query bucket (2 x 1)
        driver.send(1, WHO)
    driver.take_all()
    for index in range(6):  # the SAY bucket (2 x 3) is still full
        driver.say(1, f"m{index}")
    assert [kind for kind, _ in driver.take(2)] == [MESSAGE] * 6
    assert driver.take(1) == []
    assert driver.send(1, WHO) == [Defer(1, until=pytest.approx(1.0))], "the query bucket was not empty"


def test_frames_behind_a_deferred_one_wait_for_it_in_order() -> None:
    """A deferred WHO holds back what its sender sent after it, in the same read or later:
    the room answers in the order the frames came, and the driver reads nothing meanwhile."""
    driver = room_with("alice", "bob", query_rate=1)
    driver.send(1, WHO)
    driver.send(1, WHO)
    driver.take_all()
    wire = HEADER.pack(0, WHO) + HEADER.pack(2, SAY) + b"hi" + HEADER.pack(1, PING) + b"p"
    assert driver.send_bytes(1, wire) == [Defer(1, until=pytest.approx(1.0))]
    driver.send_bytes(1, HEADER.pack(3, SAY) + b"you")
    assert driver.take(1) == [] and driver.take(2) == []
    assert driver.room.next_deadline() == pytest.approx(1.0)
    effects = driver.tick(1.0)
    assert [type(effect) for effect in effects] == [Send, Broadcast, Defer]  # MEMBERS, "hi", the PING waits
    assert driver.take(1) == [text_frame(MEMBERS, "alice\nbob")]
    assert driver.take(2) == [message_frame("alice", "hi")]
    assert driver.tick(2.0)[-1] == Resume(1)
    assert driver.take(1) == [(PONG, b"p")]
    assert driver.take(2) == [message_frame("alice", "you")]
    assert driver.room.next_deadline() is None


def test_a_close_forgets_the_deferred_frame_and_what_waited_behind_it() -> None:
    driver = with_admin(room_with("alice", "bob", query_rate=1))
    for _ in range(3):
        driver.send(1, PING, b"x")
    driver.send(1, SAY, b"never")
    driver.take_all()
    driver.send(ADMIN, KICK, b"alice")
    driver.take_all()
    assert driver.room.next_deadline() is None
    assert driver.tick(5.0) == []
    assert driver.take(2) == []


def test_an_oversized_header_is_the_rooms_business_after_the_frames_before_it() -> None:
    driver = room_with("alice", "bob")
    driver.send_bytes(1, HEADER.pack(2, SAY) + b"ok" + HEADER.pack(4097, SAY) + b"zz")
    assert driver.take(2) == [message_frame("alice", "ok"), text_frame(LEFT, "alice")]
    assert_error(driver, 1, TOO_LARGE, closes=True)
    assert driver.send_bytes(1, HEADER.pack(2, SAY) + b"ok") == []


def test_bytes_cut_anywhere_make_the_same_frames() -> None:
    driver = room_with("alice", "bob")
    wire = b"".join(HEADER.pack(len(text), SAY) + text for text in (b"one", b"two", "dr\u00e9i".encode()))
    for index in range(len(wire)):
        driver.send_bytes(1, wire[index:index + 1])
    assert driver.take(2) == [message_frame("alice", text) for text in ("one", "two", "dr\u00e9i")]


def test_an_error_costs_no_query_token_and_zero_turns_the_query_limit_off() -> None:
    driver = room_with("alice", query_rate=1)
    for _ in range(5):
        driver.send(1, PING, b"p" * 65)  # BAD_FRAME: no token used
    assert [error_code(frame) for frame in driver.take(1)] == [BAD_FRAME] * 5
    driver.send(1, PING, b"ok")
    assert driver.take(1) == [(PONG, b"ok")]
    unlimited = room_with("alice", query_rate=0)
    for _ in range(1000):
        unlimited.send(1, PING)
    assert len(unlimited.take(1)) == 1000 and not unlimited.deferred


def test_members_is_encoded_once_per_change_and_follows_every_change() -> None:
    driver = with_admin(room_with("alice", "bob", "carol"))
    first, second = driver.room.receive(1, WHO, b"", 0.0), driver.room.receive(2, WHO, b"", 0.0)
    assert first[0].data is second[0].data  # one bytes object however many ask
    driver.disconnect(2)
    driver.send(ADMIN, KICK, b"carol")
    driver.take_all()
    driver.send(1, WHO)
    assert driver.take(1) == [text_frame(MEMBERS, "alice")]
    join(driver, 5, "dave")
    driver.send(ADMIN, LIST)
    assert driver.take(ADMIN) == [text_frame(MEMBERS, "alice\ndave")]


# ----- errors that keep the connection --------------------------------------------------


def test_name_taken_keeps_the_connection_and_another_name_works() -> None:
    driver = room_with("alice")
    driver.connect(2)
    driver.send(2, JOIN, b"ALICE")
    assert_error(driver, 2, NAME_TAKEN, closes=False)
    driver.send(2, JOIN, b"bob")
    assert driver.take(2) == [text_frame(WELCOME, "bob")]


def test_name_invalid_keeps_the_connection_and_a_valid_name_works() -> None:
    driver = FakeDriver()
    driver.connect(1)
    driver.send(1, JOIN, b"   ")
    assert_error(driver, 1, NAME_INVALID, closes=False)
    driver.send(1, JOIN, b"alice")
    assert driver.take(1) == [text_frame(WELCOME, "alice")]


@pytest.mark.parametrize("kind, payload", [(SAY, b"hello"), (WHO, b"")])
def test_say_or_who_before_join_is_not_joined(kind: int, payload: bytes) -> None:
    driver = room_with("alice")
    driver.connect(2)
    driver.send(2, kind, payload)
    assert_error(driver, 2, NOT_JOINED, closes=False)
    assert driver.take(1) == []


def test_a_second_join_is_already_joined_and_changes_nothing() -> None:
    driver = room_with("alice", "bob")
    driver.send(1, JOIN, b"zed")
    assert_error(driver, 1, ALREADY_JOINED, closes=False)
    assert driver.take(2) == []
    driver.send(2, WHO)
    assert driver.take(2) == [text_frame(MEMBERS, "alice\nbob")]


BAD_FRAMES = [
    pytest.param(0x00, b"", id="kind 0x00"),
    pytest.param(0x06, b"", id="kind 0x06"),
    pytest.param(0x7F, b"x", id="kind 0x7f"),
    pytest.param(WELCOME, b"bob", id="server kind WELCOME"),
    pytest.param(OK, b"", id="server kind OK"),
    pytest.param(0xFF, b"", id="kind 0xff"),
    pytest.param(ADMIN_SAY, b"I am the admin", id="ADMIN_SAY on the chat port"),
    pytest.param(KICK, b"alice", id="KICK on the chat port"),
    pytest.param(LIST, b"", id="LIST on the chat port"),
    pytest.param(JOIN, b"\xff", id="JOIN not UTF-8"),
    pytest.param(JOIN, b"al\xe9", id="JOIN latin-1"),
    pytest.param(JOIN, b"\xed\xa0\x80", id="JOIN encoded surrogate"),
    pytest.param(JOIN, b"\xc0\xaf", id="JOIN overlong"),
    pytest.param(SAY, b"\xff", id="SAY not UTF-8"),
    pytest.param(SAY, b"caf\xc3", id="SAY cut UTF-8"),
    pytest.param(SAY, b"", id="SAY empty"),
    pytest.param(SAY, b"ring\x07", id="SAY BEL"),
    pytest.param(SAY, b"a\rb", id="SAY carriage return"),
    pytest.param(SAY, b"\x1b[31mred", id="SAY escape"),
    pytest.param(SAY, b"\x00", id="SAY NUL"),
    pytest.param(SAY, b"del\x7f", id="SAY DEL"),
    pytest.param(SAY, "next\u0085line".encode(), id="SAY C1 NEL"),
    pytest.param(PING, b"p" * 65, id="PING 65 bytes"),
]


@pytest.mark.parametrize("kind, payload", BAD_FRAMES)
@pytest.mark.parametrize("joined", [False, True], ids=["before JOIN", "after JOIN"])
def test_bad_frame_keeps_the_connection(kind: int, payload: bytes, joined: bool) -> None:
    driver = room_with("alice", "bob")
    conn = 1
    if not joined:
        conn = 3
        driver.connect(conn)
    driver.send(conn, kind, payload)
    assert_error(driver, conn, BAD_FRAME, closes=False)
    assert driver.take(2) == [], "a bad frame reaches nobody else"


# ----- TOO_LARGE ---------------------------------------------------------------------------


def test_too_large_closes_a_member_and_the_others_get_left() -> None:
    driver = room_with("alice", "bob")
    driver.too_large(1, 1 << 31)
    assert_error(driver, 1, TOO_LARGE, closes=True)
    assert driver.take(2) == [text_frame(LEFT, "alice")]


def test_too_large_before_join_closes_and_tells_nobody() -> None:
    driver = room_with("alice")
    driver.connect(2)
    driver.too_large(2, 4097)
    assert_error(driver, 2, TOO_LARGE, closes=True)
    assert driver.take(1) == []


# ----- precedence for one frame ---------------------------------------------------------


def drained(*names: str, rate_limit: float = 1) -> FakeDriver:
    """A room whose first member has used every rate token it had."""
    driver = room_with(*names, rate_limit=rate_limit)
    for _ in range(int(2 * rate_limit)):
        driver.say(1, "spend a token")
    driver.take_all()
    return driver


@pytest.mark.parametrize("conn_state, kind, payload, code", [
    ("no tokens left", 0x42, b"hi", BAD_FRAME),  # kind before rate
    ("not joined", ADMIN_SAY, b"hi", BAD_FRAME),  # kind before state
    ("not joined", SAY, b"\xff", BAD_FRAME),  # UTF-8 before state
    ("not joined", SAY, b"", BAD_FRAME),  # SAY text rule before state
    ("not joined", SAY, b"bell\x07", BAD_FRAME),
    ("no tokens left", SAY, b"", BAD_FRAME),  # SAY text rule before rate
    ("no tokens left", SAY, b"\xfe", BAD_FRAME),  # UTF-8 before rate
    ("no tokens left", JOIN, b"\xff", BAD_FRAME),  # UTF-8 before state
    ("no tokens left", JOIN, b"ADMIN", ALREADY_JOINED),  # state before name rules
    ("no tokens left", JOIN, b"bob", ALREADY_JOINED),
    ("not joined", JOIN, b"\xff", BAD_FRAME),  # UTF-8 before name rules
    ("not joined", JOIN, b"BOB", NAME_TAKEN),
    ("not joined", JOIN, "ａｄｍｉｎ".encode(), NAME_INVALID),
    ("not joined", SAY, b"hello", NOT_JOINED),
    ("no tokens left", SAY, b"hello", RATE_LIMITED),
])
def test_one_error_per_frame_in_protocol_precedence(conn_state: str, kind: int, payload: bytes,
                                                    code: int) -> None:
    driver = drained("alice", "bob")
    conn = 1
    if conn_state == "not joined":
        conn = 3
        driver.connect(conn)
    driver.send(conn, kind, payload)
    assert_error(driver, conn, code, closes=False)


def test_a_frame_answered_with_an_error_uses_no_rate_token() -> None:
    driver = room_with("alice", "bob", rate_limit=1)  # 2 tokens
    for kind, payload in [(SAY, b""), (SAY, b"\xff"), (SAY, b"\x07"), (JOIN, b"x"), (0x42, b""),
                          (PING, b"p" * 65)] * 3:
        driver.send(1, kind, payload)
    driver.take(1)
    driver.say(1, "one")
    driver.say(1, "two")
    assert driver.take(1) == []
    driver.say(1, "three")
    assert_error(driver, 1, RATE_LIMITED, closes=False)
    assert driver.take(2) == [message_frame("alice", "one"), message_frame("alice", "two")]


# ----- RATE_LIMITED: a token bucket of 2N, full at JOIN, refilled at N per second -------------


def says_delivered(driver: FakeDriver, count: int, at: float) -> int:
    """Member 1 sends `count` SAYs at time `at`; how many reached member 2."""
    driver.now = at
    for number in range(count):
        driver.say(1, f"message {number}")
    return len(driver.take(2))


def test_the_bucket_holds_2n_tokens_at_join_and_a_dropped_say_gets_one_error() -> None:
    driver = room_with("alice", "bob", rate_limit=5)
    assert says_delivered(driver, 10, at=0.0) == 10
    driver.say(1, "eleventh")
    assert driver.take(2) == [], "the SAY was dropped"
    assert_error(driver, 1, RATE_LIMITED, closes=False)


def test_the_default_rate_is_20_per_second() -> None:
    driver = room_with("alice", "bob")
    assert says_delivered(driver, 41, at=0.0) == 40


def test_the_bucket_is_full_at_join_however_long_the_connection_waited() -> None:
    driver = FakeDriver(rate_limit=2, join_timeout=0)
    join(driver, 2, "bob")
    driver.connect(1)
    driver.now = 1000.0
    driver.send(1, JOIN, b"alice")
    driver.take_all()
    assert says_delivered(driver, 10, at=1000.0) == 4


def test_tokens_refill_continuously_and_fractions_accumulate() -> None:
    driver = room_with("alice", "bob", rate_limit=4)  # 8 tokens, 1 every 0.25 s
    assert says_delivered(driver, 8, at=0.0) == 8
    for quarter_token_at in (0.0625, 0.125, 0.1875):  # 0.25, 0.5, 0.75 of a token
        assert says_delivered(driver, 1, at=quarter_token_at) == 0
    driver.take(1)
    assert says_delivered(driver, 2, at=0.25) == 1, "the quarters add up to one token"
    assert says_delivered(driver, 3, at=1.0) == 3, "0.75 s later: 3 more tokens"


def test_the_bucket_never_holds_more_than_2n() -> None:
    driver = room_with("alice", "bob", rate_limit=3)
    assert says_delivered(driver, 6, at=0.0) == 6
    assert says_delivered(driver, 100, at=1000.0) == 6


def test_rate_limit_zero_turns_it_off() -> None:
    driver = room_with("alice", "bob", rate_limit=0)
    assert says_delivered(driver, 500, at=0.0) == 500
    assert driver.take(1) == []


def test_each_member_has_its_own_bucket() -> None:
    driver = room_with("alice", "bob", "carol", rate_limit=1)
    assert says_delivered(driver, 5, at=0.0) == 2
    driver.say(2, "bob's first")
    assert driver.take(3)[-1:] == [message_frame("bob", "bob's first")]


# ----- TIMEOUT: a JOIN within the join timeout, counted from the accept ------------------------


def test_the_join_timeout_runs_from_connect() -> None:
    driver = room_with("alice", join_timeout=10)
    driver.now = 100.0
    driver.connect(2)
    assert driver.room.next_deadline() == 110.0
    assert driver.tick(109.99) == []
    driver.tick(110.0)
    assert_error(driver, 2, TIMEOUT, closes=True)
    assert driver.take(1) == [], "a connection that never joined is nobody's LEFT"
    assert driver.room.next_deadline() is None


def test_failed_joins_and_other_frames_do_not_restart_the_join_timeout() -> None:
    driver = room_with("alice", join_timeout=10)
    driver.connect(2)
    for at, kind, payload in [(3.0, JOIN, b"admin"), (5.0, JOIN, b"ALICE"), (6.0, SAY, b"hi"),
                              (7.0, PING, b""), (8.0, WHO, b""), (9.0, 0x42, b""), (9.5, JOIN, b"\xff")]:
        driver.now = at
        driver.send(2, kind, payload)
    driver.take(2)
    assert driver.room.next_deadline() == 10.0
    driver.tick(10.0)
    assert_error(driver, 2, TIMEOUT, closes=True)


def test_a_successful_join_stops_the_join_timeout() -> None:
    driver = FakeDriver(join_timeout=10)
    driver.connect(1)
    driver.now = 9.9
    driver.send(1, JOIN, b"alice")
    assert driver.room.next_deadline() is None
    driver.take(1)
    assert driver.tick(1e9) == []
    assert driver.is_open(1)


def test_join_timeouts_expire_in_accept_order() -> None:
    driver = FakeDriver(join_timeout=10)
    for conn, accepted_at in [(1, 0.0), (2, 3.0), (3, 4.0)]:
        driver.now = accepted_at
        driver.connect(conn)
    driver.send(2, JOIN, b"bob")
    assert driver.room.next_deadline() == 10.0
    driver.tick(12.0)
    assert [driver.is_open(conn) for conn in (1, 2, 3)] == [False, True, True]
    assert driver.room.next_deadline() == 14.0
    driver.tick(14.0)
    assert_error(driver, 3, TIMEOUT, closes=True)


def test_leave_before_join_ends_its_join_timeout() -> None:
    driver = FakeDriver(join_timeout=10)
    driver.connect(1)
    driver.send(1, LEAVE)
    assert driver.room.next_deadline() is None
    assert driver.tick(20.0) == []


def test_admin_connections_have_no_join_timeout() -> None:
    driver = with_admin(FakeDriver(join_timeout=10))
    assert driver.room.next_deadline() is None
    assert driver.tick(1e9) == []
    assert_still_served(driver, ADMIN)


def test_a_join_timeout_of_zero_means_no_limit() -> None:
    """Limits.join_timeout: 0 = no limit (a server option; the page lets it be set)."""
    driver = FakeDriver(join_timeout=0)
    driver.connect(1)
    assert driver.room.next_deadline() is None
    assert driver.tick(1e9) == []
    assert_still_served(driver, 1)


# ----- SHUTDOWN -------------------------------------------------------------------------------


def test_shutdown_reaches_every_connection_last_and_closes_it() -> None:
    driver = with_admin(room_with("alice", "bob"))
    driver.connect(3)  # accepted, not joined
    driver.connect(4)
    driver.send(4, LEAVE)  # already closed: nothing more for it
    driver.say(1, "last words")  # queued before the shutdown: delivered before SHUTDOWN
    driver.shutdown()
    assert driver.take(2)[0] == message_frame("alice", "last words")
    for conn in (1, 3, ADMIN):
        assert_error(driver, conn, SHUTDOWN, closes=True)
    assert driver.take(4) == []
    for conn in (1, 2, 3, ADMIN):
        assert not driver.is_open(conn)


def test_after_shutdown_the_room_answers_nothing() -> None:
    driver = with_admin(room_with("alice"))
    driver.shutdown()
    assert driver.room.receive(1, SAY, b"anyone?", 0.0) == []
    assert driver.room.receive(ADMIN, LIST, b"", 0.0) == []
    assert driver.room.next_deadline() is None


# ----- the administrator: ADMIN_SAY, KICK, LIST ------------------------------------------------


def test_admin_say_is_announced_to_every_member_and_answered_ok() -> None:
    driver = with_admin(room_with("alice", "bob"))
    driver.connect(3)
    driver.send(ADMIN, ADMIN_SAY, "大家好".encode())
    assert driver.take(ADMIN) == [(OK, b"")]
    assert driver.take(1) == [text_frame(ANNOUNCE, "大家好")]
    assert driver.take(2) == [text_frame(ANNOUNCE, "大家好")]
    assert driver.take(3) == []


def test_list_answers_members_in_join_order() -> None:
    driver = with_admin(room_with("bob", "alice"))
    driver.send(ADMIN, LIST)
    assert driver.take(ADMIN) == [text_frame(MEMBERS, "bob\nalice")]


@pytest.mark.parametrize("member, wanted", [
    ("alice", "alice"), ("alice", "ALICE "), ("alice", "\tＡｌｉｃｅ\n"), ("Straße", "STRASSE"),
])
def test_kick_matches_names_as_join_does(member: str, wanted: str) -> None:
    driver = with_admin(room_with(member, "bob", "carol"))
    driver.send(ADMIN, KICK, wanted.encode())
    assert_error(driver, 1, KICKED, closes=True)
    assert driver.take(2) == [text_frame(LEFT, member)]
    assert driver.take(3) == [text_frame(LEFT, member)]
    assert driver.take(ADMIN) == [(OK, b"")]
    join(driver, 4, member.upper())  # the name is free again


@pytest.mark.parametrize("wanted", ["dave", "alic", "ali ce", "", "admin"])
def test_kick_of_a_name_nobody_has_is_no_such_member(wanted: str) -> None:
    driver = with_admin(room_with("alice"))
    driver.connect(2)
    driver.send(2, JOIN, b"dave\x00")  # a failed JOIN gives no name
    driver.take(2)
    driver.send(ADMIN, KICK, wanted.encode())
    assert_error(driver, ADMIN, NO_SUCH_MEMBER, closes=False)
    assert driver.take(1) == []
    assert driver.is_open(1) and driver.is_open(2)


@pytest.mark.parametrize("kind, payload", [
    (JOIN, b"root"), (SAY, b"hi"), (PING, b""), (WHO, b""), (LEAVE, b""), (0x13, b""), (OK, b""),
    (ADMIN_SAY, b"\xff"), (KICK, b"al\xe9"),
])
def test_admin_bad_frames_keep_the_admin_connection(kind: int, payload: bytes) -> None:
    driver = with_admin(room_with("alice"))
    driver.send(ADMIN, kind, payload)
    assert_error(driver, ADMIN, BAD_FRAME, closes=False)
    assert driver.take(1) == []
    assert driver.is_open(1)


def test_the_admin_is_not_a_member() -> None:
    driver = with_admin(room_with("alice", "bob"))
    driver.say(1, "hi")
    driver.send(2, WHO)
    assert driver.take(2) == [message_frame("alice", "hi"), text_frame(MEMBERS, "alice\nbob")]
    assert driver.take(ADMIN) == []


# ----- frames after a Close count for nothing --------------------------------------------------


def close_connection_1(how: str) -> FakeDriver:
    """A room with alice (1) and bob (2) where connection 1 has just been closed `how`."""
    driver = with_admin(room_with("alice", "bob"))
    actions = {
        "leave": lambda: driver.send(1, LEAVE),
        "too large": lambda: driver.too_large(1),
        "kick": lambda: driver.send(ADMIN, KICK, b"alice"),
        "shutdown": driver.shutdown,
    }
    actions[how]()
    assert not driver.is_open(1)
    driver.take_all()
    return driver


CLOSED_HOW = ["leave", "too large", "kick", "shutdown"]
AFTER_CLOSE_FRAMES = [(JOIN, b"carol"), (SAY, b"ghost"), (SAY, b""), (WHO, b""), (PING, b"x"),
                      (LEAVE, b""), (0x42, b""), (KICK, b"bob")]


@pytest.mark.parametrize("how", CLOSED_HOW)
def test_frames_after_close_count_for_nothing(how: str) -> None:
    driver = close_connection_1(how)
    for kind, payload in AFTER_CLOSE_FRAMES:
        assert driver.room.receive(1, kind, payload, driver.now) == []
    assert driver.room.disconnect(1) == []


def test_frames_after_a_join_timeout_count_for_nothing() -> None:
    driver = room_with("alice", join_timeout=10)
    driver.connect(2)
    driver.tick(10.0)
    assert not driver.is_open(2)
    for kind, payload in AFTER_CLOSE_FRAMES:
        assert driver.room.receive(2, kind, payload, driver.now) == []
    assert driver.room.disconnect(2) == []


@pytest.mark.parametrize("how", CLOSED_HOW)
def test_an_oversized_header_after_close_counts_for_nothing(how: str) -> None:
    """A too-large header is a frame too; after Close the error must stay the last thing sent."""
    driver = close_connection_1(how)
    assert driver.room.receive_data(1, HEADER.pack(1 << 20, SAY), driver.now) == []


def test_a_broadcast_names_its_members_in_join_order_with_one_tuple_per_change() -> None:
    """The driver fans out to Broadcast.to and never reads the room's dicts; the tuple is made
    once per change of the members, not once per broadcast (the hot path)."""
    driver = room_with("alice", "bob", "carol")
    first, second = driver.say(1, "one"), driver.say(2, "two")
    assert first[0].to == (1, 2, 3) and first[0].exclude == 1
    assert first[0].to is second[0].to
    driver.disconnect(2)
    assert driver.say(1, "three")[0].to == (1, 3)
