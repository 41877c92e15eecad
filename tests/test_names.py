"""Member names (PROTOCOL.md, "Names"), checked through the room's answer to a JOIN.

Every test sends JOIN frames to a fresh capstone.room.Room and reads the one frame the
joiner gets back: WELCOME with the accepted name, or ERROR with a code. The bytes are
read with struct "!IB" as the protocol page writes it, not with capstone.codec, and the
hypothesis tests compare with `expected_name`, the rules as written on the page.
"""

from __future__ import annotations

import struct
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capstone.room import Room, Send

HEADER = struct.Struct("!IB")
JOIN, WELCOME, ERROR = 0x01, 0x81, 0x82
NAME_TAKEN, NAME_INVALID, BAD_FRAME = 1, 2, 6

RESERVED = ("admin", "administrator", "server", "system", "管理员")


def join_answers(*payloads: bytes | str) -> list[str | int]:
    """JOIN each payload on its own connection to one room, in order.

    Each answer is the accepted name (from WELCOME) or the ERROR code.
    """
    room, answers = Room(), []
    for conn, payload in enumerate(payloads, start=1):
        raw = payload.encode() if isinstance(payload, str) else payload
        room.connect(conn, 0.0)
        sent = b"".join(e.data for e in room.receive(conn, JOIN, raw, 0.0)
                        if isinstance(e, Send) and e.conn == conn)
        length, kind = HEADER.unpack_from(sent)
        assert len(sent) == HEADER.size + length, "exactly one frame answers a JOIN"
        body = sent[HEADER.size:]
        assert kind in (WELCOME, ERROR), hex(kind)
        answers.append(body.decode() if kind == WELCOME else body[0])
    return answers


def answer(name: bytes | str) -> str | int:
    return join_answers(name)[0]


def expected_name(raw: str) -> str | None:
    """The name the page says a JOIN of `raw` gets, or None for NAME_INVALID."""
    name = unicodedata.normalize("NFKC", raw).strip()
    if not 1 <= len(name) <= 32:
        return None
    if any(unicodedata.category(char).startswith("C") or char in "\u2028\u2029" for char in name):
        return None
    if name.casefold() in {unicodedata.normalize("NFKC", word).casefold() for word in RESERVED}:
        return None
    return name


# ----- NFKC, then strip; WELCOME carries the result ---------------------------------------


@pytest.mark.parametrize("raw, accepted", [
    ("alice", "alice"),
    ("ａｌｉｃｅ", "alice"),  # fullwidth letters
    ("ﬁsh", "fish"),  # the fi ligature
    ("Ⅻ", "XII"),  # a roman numeral
    ("x²", "x2"),
    ("e\u0301", "é"),  # combining accent composed
    (" alice ", "alice"),
    ("\talice\n", "alice"),
    ("\u2028alice\u2029", "alice"),
    ("\u3000alice\u00a0", "alice"),  # ideographic and no-break space
    ("\x1falice\x1c", "alice"),  # str.strip() removes these separators too
    ("alice smith", "alice smith"),
    ("a\u00a0b", "a b"),  # no-break space becomes a space inside the name
    ("Zoë 😀", "Zoë 😀"),
])
def test_welcome_carries_the_normalized_name(raw: str, accepted: str) -> None:
    assert answer(raw) == accepted


# ----- 1 to 32 code points, counted after normalization --------------------------------------


@pytest.mark.parametrize("raw, ok", [
    ("x" * 32, True),
    ("x" * 33, False),
    ("ｘ" * 32, True),
    ("ｘ" * 33, False),
    ("ﬃ" * 10, True),  # 10 code points sent, 30 after NFKC
    ("ﬃ" * 11, False),  # 11 sent, 33 after NFKC
    ("😀" * 32, True),  # 128 bytes, 32 code points
    ("e\u0301" * 32, True),  # 64 sent, 32 after composition
    ("q\u0301" * 17, False),  # no composed form: 34 code points, though 17 letters
    ("  " + "x" * 32 + "\n\t", True),  # whitespace around does not count
    ("", False),
    ("   ", False),
    ("\t\n\u2028\u2029", False),  # nothing left once stripped
])
def test_a_name_has_1_to_32_code_points(raw: str, ok: bool) -> None:
    expected = unicodedata.normalize("NFKC", raw).strip() if ok else NAME_INVALID
    assert answer(raw) == expected


# ----- forbidden characters -------------------------------------------------------------------


@pytest.mark.parametrize("char", [
    "\u200b",  # zero-width space, Cf
    "\u200d",  # zero-width joiner, Cf
    "\ufeff",  # byte order mark, Cf
    "\u00ad",  # soft hyphen, Cf
    "\ue000",  # private use, Co
    "\U000f0000",  # supplementary private use, Co
    "\u0378",  # unassigned, Cn
    "\U0010fffe",  # noncharacter, Cn
    "\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f",  # Cc
    "\u2028", "\u2029",  # line and paragraph separator
])
def test_a_forbidden_character_inside_a_name_is_name_invalid(char: str) -> None:
    assert answer(f"al{char}ice") == NAME_INVALID


@pytest.mark.parametrize("char", ["\u200b", "\ufeff", "\ue000", "\u0378", "\x00", "\x7f"])
def test_strip_does_not_remove_non_whitespace_format_or_control_characters(char: str) -> None:
    assert answer(f"{char}alice") == NAME_INVALID
    assert answer(f"alice{char}") == NAME_INVALID


@pytest.mark.parametrize("payload", [b"\xff", b"al\xe9", b"\xed\xa0\x80", b"\xc0\xaf", b"alice\xc3"])
def test_a_join_that_is_not_utf8_is_bad_frame_not_name_invalid(payload: bytes) -> None:
    """A surrogate (Cs) cannot arrive any other way: UTF-8 has no encoding for it."""
    assert answer(payload) == BAD_FRAME


# ----- unique without regard to case -----------------------------------------------------------


@pytest.mark.parametrize("first, second", [
    ("alice", "ALICE"),
    ("ALICE", "alice"),
    ("Straße", "STRASSE"),
    ("strasse", "Straße"),
    ("Σίσυφος", "ΣΊΣΥΦΟΣ"),  # final sigma folds like sigma
    ("ａｌｉｃｅ", "Alice"),
    (" bob", "BOB\t"),
    ("ﬁsh", "FISH"),
])
def test_names_that_casefold_alike_are_taken(first: str, second: str) -> None:
    assert join_answers(first, second)[1] == NAME_TAKEN


@pytest.mark.parametrize("first, second", [("alice", "alicé"), ("alice", "alice2"), ("bob", "b ob")])
def test_different_names_are_both_welcome(first: str, second: str) -> None:
    assert join_answers(first, second) == [first, second]


# ----- reserved names ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "admin", "ADMIN", "Admin", "Ａｄｍｉｎ", "ａｄｍｉｎ", "administrator", "AdMiNiStRaToR",
    "server", " server ", "SERVER", "\tServer\n", "system", "SyStEm", "ｓｙｓｔｅｍ",
    "管理员", " 管理员\u3000",
])
def test_reserved_names_in_any_case_or_nfkc_form_are_name_invalid(raw: str) -> None:
    assert answer(raw) == NAME_INVALID


@pytest.mark.parametrize("raw", ["admin2", "admins", "the admin", "serverless", "管理"])
def test_names_that_only_contain_a_reserved_word_are_welcome(raw: str) -> None:
    assert answer(raw) == raw


# ----- the rules as a whole, on random strings -------------------------------------------------

TRICKY = (
    "aAzZ09 _-.ßſΣσςİıﬁﬃＡｚ０²Ⅻé\u0301"  # letters that case-fold or normalize
    "\t\n\r\x0b\x0c\x1c\x1f\x85\u00a0\u2028\u2029\u3000\u200a"  # whitespace, in and out of strip
    "\x00\x07\x7f\x9f\u200b\u200d\ufeff\u00ad\ue000\u0378\U0010fffe"  # C* categories
    "管理员😀"
)
PLAIN = "abcdeXYZ é李"
ASSIGNED = st.characters(codec="utf-8", exclude_categories=["Cn", "Co"])  # most code points are Cn or Co
NAME_TEXT = st.text(st.one_of(st.sampled_from(PLAIN), st.sampled_from(TRICKY), ASSIGNED), max_size=12)
AROUND = st.text(st.sampled_from(" \t\n\u2028\u2029\u3000"), max_size=3)
NEAR_32 = st.text(st.sampled_from("abc ﬃｘé\u0301"), min_size=24, max_size=34)  # ﬃ is 3 after NFKC
LONG_NAME_TEXT = st.builds(lambda before, body, after: before + body + after, AROUND, NEAR_32, AROUND)


@settings(max_examples=400, deadline=None)
@given(st.one_of(NAME_TEXT, LONG_NAME_TEXT))
def test_a_name_is_accepted_exactly_when_the_rules_say_so(raw: str) -> None:
    expected = expected_name(raw)
    assert answer(raw) == (NAME_INVALID if expected is None else expected)


FULLWIDTH = {chr(code): chr(code + 0xFEE0) for code in range(0x21, 0x7F)}


@st.composite
def disguised(draw: st.DrawFn, name: str) -> str:
    """`name` with each letter's case and width chosen at random, and whitespace around it."""
    letters = []
    for char in name:
        char = draw(st.sampled_from([char, char.upper(), char.lower()]))
        letters.append(draw(st.sampled_from([char, FULLWIDTH.get(char, char)])))
    return draw(AROUND) + "".join(letters) + draw(AROUND)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(RESERVED).flatmap(disguised))
def test_a_disguised_reserved_name_is_still_name_invalid(raw: str) -> None:
    assert answer(raw) == NAME_INVALID


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["alice", "Bob", "straße", "ZOË", "x1"]).flatmap(
    lambda name: st.tuples(st.just(name), disguised(name))))
def test_a_disguised_copy_of_a_members_name_is_taken(pair: tuple[str, str]) -> None:
    first, second = pair
    assert join_answers(first, second) == [first, NAME_TAKEN]


@settings(max_examples=200, deadline=None)
@given(NAME_TEXT, NAME_TEXT)
def test_the_second_of_two_names_is_taken_exactly_when_they_casefold_alike(first: str,
                                                                           second: str) -> None:
    one, two = expected_name(first), expected_name(second)
    answers = join_answers(first, second)
    assert answers[0] == (NAME_INVALID if one is None else one)
    if two is None:
        assert answers[1] == NAME_INVALID
    elif one is not None and one.casefold() == two.casefold():
        assert answers[1] == NAME_TAKEN
    else:
        assert answers[1] == two
