"""capstone.irc.codec and capstone.irc.names: IRC lines and nicks, pure, no sockets."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstone.irc.codec import (MAX_LINE, TOO_LONG, BadLine, LineDecoder, Message, format_line, format_reply, parse,
                                split_text)
from capstone.irc.names import NEVER_IN_NICK, NOT_FIRST, to_name, to_nick
from capstone.names import normalize, why_invalid

# A line's bytes: anything but the line end (a \r inside is kept; at the end it is dropped).
line_bodies = st.binary(max_size=80).map(lambda raw: raw.replace(b"\n", b"").rstrip(b"\r"))
endings = st.sampled_from([b"\r\n", b"\n"])


def all_lines(decoder: LineDecoder) -> list:
    lines = []
    while (line := decoder.next_line()) is not None:
        lines.append(line)
    return lines


@given(bodies=st.lists(st.tuples(line_bodies, endings), max_size=15), data=st.data())
def test_every_split_of_the_stream_gives_the_same_lines(bodies, data):
    stream = b"".join(body + ending for body, ending in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder, lines, start = LineDecoder(), [], 0
    for cut in cuts + [len(stream)]:
        decoder.feed(stream[start:cut])
        lines += all_lines(decoder)
        start = cut
    assert lines == [body for body, _ending in bodies]


@given(sizes=st.lists(st.integers(0, 700), max_size=8), data=st.data())
def test_a_line_over_512_bytes_is_reported_once_and_the_next_ones_survive(sizes, data):
    """However the stream is cut, a line too long is one TOO_LONG and nothing of it leaks."""
    bodies = [b"x" * size for size in sizes]
    stream = b"".join(body + b"\r\n" for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder, got, start = LineDecoder(), [], 0
    for cut in cuts + [len(stream)]:
        decoder.feed(stream[start:cut])
        got += all_lines(decoder)
        start = cut
        assert len(decoder.buffer) <= MAX_LINE
    assert got == [TOO_LONG if len(body) + 2 > MAX_LINE else body for body in bodies]


def test_a_line_of_exactly_512_bytes_with_its_crlf_is_accepted():
    decoder = LineDecoder()
    decoder.feed(b"x" * 510 + b"\r\n" + b"y" * 511 + b"\r\n")
    assert all_lines(decoder) == [b"x" * 510, TOO_LONG]


def test_tags_may_come_on_top_of_the_512_bytes():
    decoder = LineDecoder()
    line = b"@" + b"t" * 1000 + b" PRIVMSG #chat :" + b"x" * 480
    decoder.feed(line + b"\r\n")
    assert all_lines(decoder) == [line]


@pytest.mark.parametrize(("line", "message"), [
    (b"NICK bob", Message("NICK", ("bob",))),
    (b"privmsg #chat :hello there", Message("PRIVMSG", ("#chat", "hello there"))),
    (b":bob!u@h PRIVMSG #chat ::-)", Message("PRIVMSG", ("#chat", ":-)"), "bob!u@h")),
    (b"USER bob 0 * :Bob B", Message("USER", ("bob", "0", "*", "Bob B"))),
    (b"PRIVMSG #chat :", Message("PRIVMSG", ("#chat", ""))),
    (b"CAP  LS   302", Message("CAP", ("LS", "302"))),
    (b"@a=1;b :p PING :x y", Message("PING", ("x y",), "p", {"a": "1", "b": ""})),
    (b"PRIVMSG #chat :tab\there", Message("PRIVMSG", ("#chat", "tab\there"))),
    (b"JOIN :", Message("JOIN", ("",))),
])
def test_parse(line, message):
    assert parse(line) == message


@pytest.mark.parametrize("line", [b"PRIVMSG #chat :caf\xe9", b"PRIVMSG #chat :a\0b", b"NI\rCK x"])
def test_an_empty_line_is_ignored_and_bad_bytes_are_refused(line):
    assert parse(b"") is None and parse(b"   ") is None
    with pytest.raises(BadLine):
        parse(line)


def test_a_reply_that_echoes_a_client_never_fails_and_always_fits():
    assert format_reply("403", "bob", "", "No such channel") == b"403 bob * :No such channel\r\n"
    assert format_reply("403", "bob", ":x", "No") == b"403 bob * :No\r\n"
    line = format_reply("PONG", "learn.chat", "é" * 400, prefix="learn.chat")
    assert len(line) <= MAX_LINE and parse(line[:-2]).params[1] == "é" * ((MAX_LINE - 31) // 2)
    assert format_reply("421", "bob", "X" * 600, "Unknown command").startswith(b"421 bob * :")


def test_format_puts_a_colon_only_where_needed():
    assert format_line("PRIVMSG", "#chat", "hi", prefix="bob!u@h") == b":bob!u@h PRIVMSG #chat :hi\r\n"
    assert format_line("JOIN", "#chat") == b"JOIN #chat\r\n"
    assert format_line("QUIT", "") == b"QUIT :\r\n"
    assert format_line("PRIVMSG", "#chat", "hi there") == b"PRIVMSG #chat :hi there\r\n"
    assert format_line("CAP", "*", "LS", "") == b"CAP * LS :\r\n"
    assert format_line("PRIVMSG", "#chat", ":)") == b"PRIVMSG #chat ::)\r\n"


@pytest.mark.parametrize("params", [("a b", "x"), ("", "x"), ("x\r\ny",), ("x" * 600,)])
def test_format_refuses_what_irc_cannot_carry(params):
    with pytest.raises(ValueError):
        format_line("PRIVMSG", *params)


@given(command=st.sampled_from(["PRIVMSG", "NOTICE", "001"]),
       middle=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \r\n\0:"),
                               min_size=1, max_size=10), max_size=3),
       last=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=40))
def test_format_then_parse_gives_the_parameters_back(command, middle, last):
    line = format_line(command, *middle, last)
    assert parse(line.removesuffix(b"\r\n")).params == (*middle, last)


@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=600), budget=st.integers(1, 100))
def test_split_text_loses_nothing_and_fits_the_budget(text, budget):
    pieces = split_text(text, budget)
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= budget or len(piece) == 1 for piece in pieces)


# ----- names -----------------------------------------------------------------------------

room_names = st.text(min_size=1, max_size=32).map(normalize).filter(lambda name: why_invalid(name) is None)


@given(name=room_names)
def test_a_room_name_becomes_a_nick_irc_can_carry_and_comes_back(name):
    nick = to_nick(name)
    assert to_name(nick) == name
    assert not any(char in nick for char in NEVER_IN_NICK)
    assert nick[0] not in NOT_FIRST
    assert len(nick) == len(name)
    assert parse(format_line("PRIVMSG", "#chat", "x", prefix=f"{nick}!chat@learn.chat")[:-2]).prefix == f"{nick}!chat@learn.chat"


def test_the_twins_are_what_nfkc_turns_back():
    assert to_nick("ann lee") == "ann\u3000lee"
    assert to_nick("#1 a,b") == "＃1\u3000a，b"
    assert to_nick("a#") == "a#"  # only a leading # reads as a channel
    for char in NEVER_IN_NICK + NOT_FIRST:
        assert unicodedata.normalize("NFKC", to_nick(char)) == char
