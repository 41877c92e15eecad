"""Room names as IRC nicks, and back, without ambiguity.

A room name (PROTOCOL.md) may hold a space, a comma, `!`, `@`... which IRC cannot carry
in a nick: a space ends a parameter, a comma separates a list, `!` and `@` split
`nick!user@host`, a leading `#` or `:` reads as a channel or a trailing parameter
(Modern IRC, "Clients"). Each such character is shown as its full-width twin (U+FF01
to U+FF5E, and U+3000 for the space): `ann lee` is `ann　lee` on IRC, `#1` is `＃1`.

Why that is unambiguous: a room name is NFKC-normalized, and NFKC turns every full-width
twin back into its ASCII character, so no room name ever contains one. Going back is
therefore NFKC itself, the very normalization the room applies to any JOIN: an IRC
user who types the nick they see reaches the member they mean.
"""

from __future__ import annotations

from capstone.names import MAX_NAME, normalize

NEVER_IN_NICK = " ,*?!@."  # separators of IRC's syntax (the dot marks server names)
NOT_FIRST = "#&:$+%~"  # a channel, a trailing parameter, a mask, a membership prefix
NICKLEN = MAX_NAME  # in characters: a room name is never longer


def _twin(char: str) -> str:
    """The full-width character whose NFKC form is `char`."""
    return "\u3000" if char == " " else chr(ord(char) - 0x21 + 0xFF01)


def to_nick(name: str) -> str:
    """The nick IRC users see for the room member `name` (already normalized)."""
    chars = [_twin(char) if char in NEVER_IN_NICK else char for char in name]
    if chars and chars[0] in NOT_FIRST:
        chars[0] = _twin(chars[0])
    return "".join(chars)


def to_name(nick: str) -> str:
    """The room name an IRC nick stands for: NFKC, as the room normalizes every name."""
    return normalize(nick)
