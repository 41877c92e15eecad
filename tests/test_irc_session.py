"""capstone.irc.session: the IRC adapter over a real (sans-IO) room, no sockets, no clock.

`Pair` plays the driver's part in a few lines: steps to the room go to `room.receive_data`,
the room's effects come back through `from_room` (one connection) or `from_broadcast`
(everyone), so these tests check the translation both ways and the registration dance as
irssi, WeeChat and ii perform it (orders measured with the real clients).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone import codec
from capstone.codec import Kind
from capstone.irc.session import IrcNetwork, ToRoom
from capstone.room import Broadcast, Close, Limits, Room, Send

NOW = 100.0


class Pair:
    """A room, some IRC sessions and some binary connections, wired like the driver wires them."""

    def __init__(self, **limits: float) -> None:
        self.room = Room(Limits(**limits))
        self.network = IrcNetwork()
        self.sessions = {}
        self.received: dict[int, bytearray] = defaultdict(bytearray)
        self.closed: set[int] = set()

    def irc(self, conn: int, *lines: str) -> list[str]:
        if conn not in self.sessions:
            self.sessions[conn] = self.network.new_session(NOW)
            self.room.connect(conn, NOW)
        data = "".join(line + "\r\n" for line in lines).encode()
        for step in self.sessions[conn].receive_data(data, NOW):
            if conn in self.closed:
                break
            if isinstance(step, ToRoom):
                self.apply(self.room.receive_data(conn, step.data, NOW))
            else:
                self.received[conn] += step.data
        return self.lines(conn)

    def binary(self, conn: int, kind: int, payload: bytes = b"") -> None:
        if conn not in self.room.connections and conn not in self.closed:
            self.room.connect(conn, NOW)
        self.apply(self.room.receive_data(conn, codec.encode(kind, payload), NOW))

    def apply(self, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                session = self.sessions.get(effect.conn)
                self.received[effect.conn] += session.from_room(effect.data) if session else effect.data
            elif isinstance(effect, Broadcast):
                for conn in effect.to:
                    if conn != effect.exclude:
                        irc = conn in self.sessions
                        self.received[conn] += self.network.from_broadcast(effect.data) if irc else effect.data
            elif isinstance(effect, Close):
                self.closed.add(effect.conn)

    def lines(self, conn: int) -> list[str]:
        """Every IRC line received so far (and forgets them)."""
        text = self.received.pop(conn, bytearray()).decode()
        assert not text or text.endswith("\r\n")
        return text.split("\r\n")[:-1]

    def frames(self, conn: int) -> list[tuple[int, bytes]]:
        data, frames = bytes(self.received.pop(conn, b"")), []
        while data:
            length, kind = codec.HEADER.unpack_from(data)
            frames.append((kind, data[5:5 + length]))
            data = data[5 + length:]
        return frames


def numerics(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines]


WELCOME_BURST = ["001", "002", "003", "004", "005", "251", "422", "JOIN", "353", "366"]
ORDERS = {  # measured with the real clients (issue 12)
    "irssi": ["CAP LS 302", "JOIN :", "CAP END", "NICK bob", "USER bob bob 127.0.0.1 :Bob"],
    "weechat": ["CAP LS 302", "NICK bob", "USER bob 0 * :Bob", "CAP END"],
    "ii": ["NICK bob", "USER bob localhost 127.0.0.1 :bob"],
}


@pytest.mark.parametrize("client", ORDERS)
def test_registration_as_each_real_client_performs_it(client):
    pair = Pair()
    lines = pair.irc(1, *ORDERS[client])
    burst = [line for line in lines if " CAP " not in line and " 451 " not in line]
    assert numerics(burst) == WELCOME_BURST
    assert burst[0] == ":learn.chat 001 bob :Welcome to the learn-chat room, bob"
    assert "CHANTYPES=#" in burst[4] and "NICKLEN=32" in burst[4] and "CASEMAPPING=" in burst[4]
    assert burst[7] == ":bob!chat@learn.chat JOIN #chat"
    assert pair.room.member_names() == ["bob"]


def test_registration_waits_for_cap_end():
    pair = Pair()
    assert pair.irc(1, "CAP LS 302", "NICK bob", "USER bob 0 * :Bob") == [":learn.chat CAP * LS :"]
    assert pair.room.member_names() == []
    assert pair.irc(1, "CAP REQ :multi-prefix") == [":learn.chat CAP bob NAK :multi-prefix"]
    assert numerics(pair.irc(1, "CAP END"))[:1] == ["001"]


def test_a_taken_nick_is_433_and_another_nick_gets_in():
    pair = Pair()
    pair.binary(2, Kind.JOIN, b"Bob")
    assert pair.irc(1, "NICK BOB", "USER b 0 * :b") == [":learn.chat 433 * BOB :Nickname is already in use"]
    assert numerics(pair.irc(1, "NICK bob2"))[:1] == ["001"]
    assert pair.room.member_names() == ["Bob", "bob2"]


@pytest.mark.parametrize("nick", ["admin", "a" * 33, "\u200bx"])
def test_a_nick_the_room_refuses_is_432_at_once(nick):
    lines = Pair().irc(1, f"NICK {nick}")
    assert numerics(lines) == ["432"] and lines[0].startswith(f":learn.chat 432 * {nick} :Erroneous nickname")


def test_errors_before_and_after_registration():
    pair = Pair()
    assert numerics(pair.irc(1, "NICK", "PRIVMSG #chat :hi", "FOO", "USER x")) == ["431", "451", "421", "461"]
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert numerics(pair.irc(1, "USER again 0 * :x", "JOIN #other", "PART #other", "PRIVMSG #chat")) == \
        ["462", "403", "442", "412"]
    assert pair.irc(1, "JOIN #chat", "JOIN #CHAT") == []  # already in: nothing to say


def test_names_and_who_list_every_member_whatever_their_protocol():
    pair = Pair()
    pair.binary(2, Kind.JOIN, b"ann lee")
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert pair.irc(1, "NAMES #chat") == [":learn.chat 353 bob = #chat :ann\u3000lee bob",
                                          ":learn.chat 366 bob #chat :End of /NAMES list"]
    who = pair.irc(1, "WHO #chat")
    assert numerics(who) == ["352", "352", "315"] and who[0].split(" ")[7] == "ann\u3000lee"
    assert numerics(pair.irc(1, "WHO ANN\u3000LEE")) == ["352", "315"]


def test_names_are_split_over_lines_of_at_most_512_bytes():
    pair = Pair(query_rate=0)
    for conn in range(100, 160):
        pair.binary(conn, Kind.JOIN, f"member-{conn}-{'x' * 20}".encode())
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    lines = pair.irc(1, "NAMES")
    assert len(lines) > 3 and all(len(line.encode()) + 2 <= 512 for line in lines)
    nicks = [nick for line in lines if " 353 " in line for nick in line.split(" :", 1)[1].split()]
    assert nicks == pair.room.member_names()


def test_messages_notices_joins_and_leaves_cross_both_ways_in_one_order():
    pair = Pair()
    pair.binary(2, Kind.JOIN, b"ann")
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert pair.frames(2) == [(Kind.WELCOME, b"ann"), (Kind.JOINED, b"bob")]
    pair.irc(1, "PRIVMSG #chat :hello ann", "NOTICE #chat :a notice", "PRIVMSG #chat :\x01ACTION waves\x01")
    assert pair.frames(2) == [(Kind.MESSAGE, b"\x03bobhello ann"), (Kind.MESSAGE, b"\x03boba notice"),
                              (Kind.MESSAGE, b"\x03bob/me waves")]
    pair.binary(2, Kind.SAY, "two\nlines".encode())
    pair.binary(2, Kind.SAY, b"/me smiles")
    pair.apply(pair.room.announce("tea time"))
    pair.binary(3, Kind.JOIN, b"cy d")
    pair.binary(3, Kind.LEAVE)
    assert pair.lines(1) == [":ann!chat@learn.chat PRIVMSG #chat :two", ":ann!chat@learn.chat PRIVMSG #chat :lines",
                             ":ann!chat@learn.chat PRIVMSG #chat :\x01ACTION smiles\x01",
                             ":learn.chat NOTICE #chat :tea time",
                             ":cy\u3000d!chat@learn.chat JOIN #chat", ":cy\u3000d!chat@learn.chat QUIT :left the room"]


def test_a_long_binary_message_arrives_whole_in_several_lines():
    pair = Pair()
    pair.binary(2, Kind.JOIN, ("é" * 32).encode())
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    text = ("wörter " * 600)[:3500]  # 4000 bytes
    pair.binary(2, Kind.SAY, text.encode())
    lines = pair.lines(1)
    assert len(lines) > 8 and all(len(line.encode()) + 2 <= 512 for line in lines)
    assert "".join(line.split(" :", 1)[1] for line in lines) == text


def test_a_private_message_gets_a_notice_instead_of_vanishing():
    pair = Pair()
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert pair.irc(1, "PRIVMSG ann :psst") == [
        ":learn.chat NOTICE bob :this room has no private messages; ann did not get yours. "
        "Write to #chat, where everyone reads"]


def test_the_rooms_refusals_become_notices():
    pair = Pair(rate_limit=1)
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert pair.irc(1, "PRIVMSG #chat :\x02bold\x02")[0].startswith(
        ":learn.chat NOTICE bob :a message cannot contain the control character U+0002")
    lines = pair.irc(1, *["PRIVMSG #chat :x"] * 3)
    assert lines == [":learn.chat NOTICE bob :more than 1 messages per second; this one was dropped"]


def test_invalid_utf8_and_overlong_lines_are_answered():
    pair = Pair()
    session = pair.network.new_session(NOW)
    steps = list(session.receive_data(b"NICK caf\xe9\r\n" + b"x" * 600 + b"\r\n", NOW))
    assert [step.data for step in steps] == [
        b":learn.chat NOTICE * :this line was not UTF-8 and was ignored; set your client to UTF-8\r\n",
        b":learn.chat 417 * :Input line was too long\r\n"]


def test_quit_and_part_leave_the_room_and_end_the_session():
    for command, first in (("QUIT :bye", "ERROR :Closing Link: bob (Quit: bye)"),
                           ("PART #chat", ":bob!chat@learn.chat PART #chat")):
        pair = Pair()
        pair.binary(2, Kind.JOIN, b"ann")
        pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
        pair.frames(2)
        assert pair.irc(1, command, "PRIVMSG #chat :too late")[0] == first
        assert pair.frames(2) == [(Kind.LEFT, b"bob")] and 1 in pair.closed


def test_kick_shutdown_and_timeout_end_with_an_error_line():
    pair = Pair()
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    pair.apply(pair.room.kick("BOB"))
    assert pair.lines(1) == [":learn.chat KICK #chat bob :the administrator removed you",
                             "ERROR :Closing Link: bob (the administrator removed you)"]
    pair.irc(3, "NICK cy")
    pair.apply(pair.room.tick(NOW + 11))
    assert pair.lines(3) == ["ERROR :Closing Link: cy (no JOIN within 10 seconds)"]
    pair.irc(4, "NICK dee", "USER d 0 * :d")
    pair.apply(pair.room.shutdown())
    assert pair.lines(4) == ["ERROR :Closing Link: dee (the server is stopping)"]


def test_a_silent_client_is_pinged_then_dropped():
    session = IrcNetwork(idle_ping=90, ping_timeout=60).new_session(NOW)
    assert session.tick(NOW + 89) == []
    assert [step.data for step in session.tick(NOW + 90)] == [b"PING learn.chat\r\n"]
    assert session.tick(NOW + 149) == []
    list(session.receive_data(b"PONG learn.chat\r\n", NOW + 149))
    assert session.tick(NOW + 200) == []
    session.tick(NOW + 239)
    steps = session.tick(NOW + 299)
    assert steps[0].data.startswith(b"ERROR :Closing Link: * (Ping timeout") and steps[1] == ToRoom(
        codec.encode(Kind.LEAVE))


def test_pings_go_through_the_rooms_query_limit_and_come_back_in_order():
    pair = Pair(query_rate=1)  # a bucket of 2: the third PING waits in the room
    assert pair.irc(1, "PING :a", "PING b c", "PING :d") == [":learn.chat PONG learn.chat :a",
                                                             ":learn.chat PONG learn.chat :b"]
    pair.apply(pair.room.tick(NOW + 1))
    assert pair.lines(1) == [":learn.chat PONG learn.chat :d"]


# ----- whatever a client sends, the session answers with lines IRC can carry -----------------

COMMAND_WORDS = ["NICK", "USER", "CAP", "JOIN", "PART", "PRIVMSG", "NOTICE", "NAMES", "WHO", "MODE", "PING",
                 "PONG", "PASS", "FOO", "CAP LS", "CAP REQ", "JOIN #chat", "PRIVMSG #chat", "MODE #chat"]
words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=300)
client_lines = st.builds(lambda command, params: " ".join([command, *params]),
                         st.sampled_from(COMMAND_WORDS), st.lists(words, max_size=4))


def assert_carriable(lines: list[str]) -> None:
    for line in lines:
        assert len(line.encode()) + 2 <= 512 and not set(line) & set("\0\r\n"), line


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(client_lines, max_size=12), announce=st.text(st.characters(blacklist_categories=("Cs",)), max_size=600))
def test_any_client_lines_get_replies_that_fit_and_never_an_exception(lines, announce):
    pair = Pair(rate_limit=0)
    pair.binary(2, Kind.JOIN, b"ann")
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    for line in lines:
        if 1 not in pair.closed:
            assert_carriable(pair.irc(1, line))
    pair.apply(pair.room.announce(announce))
    pair.apply(pair.room.shutdown())
    assert_carriable(pair.lines(1))


def test_echoes_of_odd_client_words_stay_within_one_line():
    pair = Pair()
    pair.irc(1, "NICK bob", "USER bob 0 * :Bob")
    assert numerics(pair.irc(1, "JOIN :", "JOIN ::x", "NAMES " + "#" * 400, "X" * 400)) == ["403", "403", "366", "421"]
    pong = pair.irc(1, "PING :" + "p" * 500)
    assert len(pong) == 1 and len(pong[0]) + 2 <= 512 and pong[0].endswith("p" * 400)
    quit_line = pair.irc(1, "QUIT :" + "q" * 500)
    assert len(quit_line) == 1 and quit_line[0].startswith("ERROR :Closing Link: bob (Quit: qqq")
