"""What the user sees: server frames in, lines to show out; typed lines in, frames out. Pure.

Whatever the server relays is shown as text and never interpreted: names and messages
pass through `lessons.toolkit.common.printable` (no terminal escape sequence reaches the screen),
odd names are quoted so that nobody can pose as another member or as the administrator,
and the later lines of a multi-line message are indented behind a marker, so they cannot
pass for lines of their own. Nothing here does I/O, so every rule is unit-tested.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from capstone import codec
from capstone.client.pacing import MAX_PARTS, MAX_SAY, split_payload
from capstone.client.texts import TEXTS, texts_in
from capstone.codec import CLOSING_ERRORS, ErrorCode, Kind
from capstone.names import MAX_NAME
from lessons.toolkit.common import printable, printable_bytes
from lessons.toolkit.framing import Frame, FrameTooLarge
from lessons.toolkit.i18n import current_language

CONTINUATION = "  | "  # starts the 2nd, 3rd... line of a message; no name can start with a space
QUIT, WHO, HELP = "/quit", "/who", "/help"
COMMAND_WORD = re.compile(r"/[^\W\d_]+")  # "/who": a command; "/etc/hosts" or "/ x": a message
# A name that could be mistaken for something else is shown in quotes: one that holds
# ':' (another member's line), ',' (the member list), a quote or backslash (our quoting),
# starts with '[' ('[admin]') or with or ends in whitespace (a continuation line).
AMBIGUOUS_NAME = re.compile(r'[:,"\\]|^\[|^\s|\s$|^$')


@dataclass(frozen=True)
class Shown:
    """Lines to show; `style` says what they are (joined, left, message, announce...)."""

    style: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Ended:
    """The server ended the chat; `sentence` says why (the client exits 1).

    A `notice` (kicked, the server stopping) is nobody's error: it is printed as a plain
    sentence, not as `error: ...`.
    """

    sentence: str
    notice: bool = False


@dataclass(frozen=True)
class Outgoing:
    """What one typed line asks for: frames to send, something to show, or leaving."""

    frames: tuple[bytes, ...] = ()
    shown: Shown | None = None
    quit: bool = False


def display_name(name: str) -> str:
    """A name as shown: itself, or quoted when it could pass for something else."""
    if AMBIGUOUS_NAME.search(name) or printable(name) != name:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{printable(escaped)}"'
    return name


def text_block(template: str, text: str, **fields: str) -> tuple[str, ...]:
    """A multi-line text: the first line in `template`, the others behind CONTINUATION."""
    first, *rest = [printable(line.expandtabs(4)) for line in text.split("\n")]
    return (template.format(text=first, **fields),) + tuple(CONTINUATION + line for line in rest)


def fit_to_width(lines: tuple[str, ...], width: int) -> tuple[str, ...]:
    """Lines cut to fit `width` terminal columns, a wide (Chinese) character counting as two.

    A line is cut at its last space that fits, or next to a wide character (Chinese breaks
    between any two characters), or inside a word too long for a line; the later pieces go behind CONTINUATION, like the later lines
    of a message, so a cut line never starts at the edge where a name would stand.
    """
    from rich.cells import cell_len, get_character_cell_size

    fitted: list[str] = []
    for line in lines:
        prefix, body = "", line
        while cell_len(prefix + body) > width:
            room, used, fits, breaks = width - cell_len(prefix), 0, 0, 0
            for index, char in enumerate(body):
                size = get_character_cell_size(char)
                if char == " " or size == 2:  # a line may break at a space, and before or after a wide character
                    breaks = index if index > 0 else breaks
                used += size
                if used > room:
                    break
                fits = index + 1
                if size == 2:
                    breaks = fits
            cut = breaks or max(fits, 1)  # no break point: cut the word; always at least one character
            fitted.append(prefix + body[:cut].rstrip())
            prefix, body = CONTINUATION, body[cut:].lstrip()
        fitted.append(prefix + body)
    return tuple(fitted)


class View:
    """Turns server frames into what the user sees, and typed lines into frames, in one
    language. Pure: no I/O."""

    def __init__(self, lang: str | None = None) -> None:
        self.lang = lang or current_language()
        self.texts = texts_in(self.lang)

    # ----- frames from the server -----

    def frame(self, frame: Frame) -> Shown | Ended | None:
        (kind,), payload = frame.fields, frame.payload
        texts = self.texts
        text = payload.decode(errors="replace")
        if kind == Kind.JOINED:
            return Shown("joined", (texts["joined"].format(name=display_name(text)),))
        if kind == Kind.LEFT:
            return Shown("left", (texts["left"].format(name=display_name(text)),))
        if kind == Kind.MESSAGE:
            name, said = codec.decode_message(payload)
            return Shown("message", text_block(texts["message"], said, name=display_name(name)))
        if kind == Kind.ANNOUNCE:
            return Shown("announce", text_block(texts["announce"], text))
        if kind == Kind.MEMBERS:
            names = ", ".join(display_name(name) for name in text.split("\n")) if text else "-"
            return Shown("members", (texts["members"].format(names=names),))
        if kind == Kind.WELCOME:
            return Shown("welcome", (texts["welcome"].format(name=display_name(text)),))
        if kind == Kind.ERROR:
            return self.error(payload)
        return None  # PONG, or a kind from a newer server: nothing to show

    def error(self, payload: bytes) -> Shown | Ended:
        code, reason = codec.decode_error(payload)
        if code == ErrorCode.SHUTDOWN:
            return Ended(self.texts["shutdown"], notice=True)
        if code == ErrorCode.KICKED:
            return Ended(self.texts["kicked"], notice=True)
        if code in CLOSING_ERRORS:
            return Ended(self.texts["closed_because"].format(reason=self.reason(code, reason)))
        return Shown("problem", (self.texts["refused_frame"].format(reason=self.reason(code, reason)),))

    def join_refusal(self, payload: bytes, name: str) -> Shown | Ended | None:
        """The answer to a JOIN that was not WELCOME; None: the join timeout ran out (reconnect)."""
        code, reason = codec.decode_error(payload)
        if code == ErrorCode.TIMEOUT:
            return None
        if code in CLOSING_ERRORS:
            return self.error(payload)
        return Shown("problem", (self.texts["cannot_join"].format(reason=self.reason(code, reason, name)),))

    def reason(self, code: int, server_reason: str, name: str = "") -> str:
        """Why the server refused, in this language: English shows the server's own words,
        other languages our sentence for the error code (a server speaks English only)."""
        if self.lang == "en" and server_reason.strip():
            return printable(server_reason.rstrip("."))
        try:
            key = f"reason_{ErrorCode(code).name}"
        except ValueError:
            key = "reason_unknown"
        return self.texts[key].format(name=display_name(name), most=MAX_NAME, code=code)

    def closed(self) -> Ended:
        return Ended(self.texts["closed"])

    def lost(self, err: OSError) -> Ended:
        return Ended(self.texts["lost"].format(error=self.os_error(err)))

    def huge(self, err: FrameTooLarge) -> Ended:
        return Ended(self.texts["huge_frame"].format(length=err.length))

    def unreachable(self, where: str, err: OSError) -> str:
        return self.texts["unreachable"].format(where=where, error=self.os_error(err))

    def not_chat(self, where: str, first_bytes: bytes) -> str:
        """What a server that answers in anything but our frames said first, as text."""
        first_line = first_bytes.split(b"\n")[0].removesuffix(b"\r")[:40]
        return self.texts["not_chat"].format(where=where, answer=f'"{printable_bytes(first_line)}"')

    def os_error(self, err: OSError) -> str:
        """A failed connection in this language: our words for the usual errno values."""
        if isinstance(err, TimeoutError) and not err.errno:
            return self.texts["no_answer_short"]
        code = errno.errorcode.get(err.errno or 0, "")
        if f"errno_{code}" in TEXTS:
            return self.texts[f"errno_{code}"]
        if self.lang == "en":
            return os.strerror(err.errno) if err.errno else str(err)
        return self.texts["errno_unknown"].format(code=code or "?")

    def goodbye(self) -> str:
        return self.texts["goodbye"]

    # ----- lines the user typed -----

    def outgoing(self, line: str) -> Outgoing:
        """A typed line: a command (/who, /quit, /help), a refusal, or SAYs to send.

        A first word of `/` and letters is a command; a line starting with `//` is sent
        without its first slash, so `//who` says "/who".
        """
        words = line.split()
        if not words:
            return Outgoing()
        if COMMAND_WORD.fullmatch(words[0]):
            return self.command(words[0])
        if line.startswith("//"):
            line = line[1:]
        return self.say(line.encode("utf-8", "surrogateescape"))

    def command(self, word: str) -> Outgoing:
        if word == QUIT:
            return Outgoing(quit=True)
        if word == WHO:
            return Outgoing(frames=(codec.encode(Kind.WHO),))
        if word == HELP:
            return Outgoing(shown=Shown("hint", tuple(self.texts["help"].split("\n"))))
        refusal = self.texts["unknown_command"].format(command=printable(word))
        return Outgoing(shown=Shown("problem", (refusal,)))

    def say(self, data: bytes) -> Outgoing:
        """SAY frames for a text: one, several for a long text, or none and a refusal."""
        parts = split_payload(data, MAX_SAY)
        sizes = {"size": len(data), "count": len(parts), "limit": MAX_SAY}
        if len(parts) > MAX_PARTS:
            refusal = self.texts["too_long"].format(most=MAX_SAY * MAX_PARTS, parts=MAX_PARTS, **sizes)
            return Outgoing(shown=Shown("problem", (refusal,)))
        note = Shown("note", (self.texts["split"].format(**sizes),)) if len(parts) > 1 else None
        return Outgoing(frames=tuple(codec.encode(Kind.SAY, part) for part in parts), shown=note)
