"""IRC lines as bytes, without sockets: cut a stream into lines, parse one, format one.

The classic alternative to a length prefix: a message ends where `\r\n` is, and a line
has at most 512 bytes with its `\r\n` (RFC 1459 section 2.3; Modern IRC, "Messages").
A reader therefore cannot know how much is coming; it keeps what it has until a line
end shows up, and must refuse to keep more than 512 bytes waiting, or one client that
never sends `\n` would grow the buffer forever. Clients often end lines with a bare
`\n`; like most servers we accept both.

    [@tags] [:prefix] COMMAND [param ...] [:trailing param]

Tags (IRCv3) are parsed but we offer no capability that makes a client send them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LINE = 512  # bytes, the \r\n included
MAX_TAGS = 4096  # bytes of an @tags section a client may add in front (IRCv3 message-tags)
MAX_ECHO = 100  # bytes of a client's word (a command, a channel) a reply puts back


@dataclass(frozen=True)
class Message:
    command: str  # upper case: PRIVMSG, 001...
    params: tuple[str, ...] = ()
    prefix: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class BadLine(ValueError):
    """A line that is not UTF-8, or holds a NUL or a carriage return inside: answered with
    a notice saying why, never guessed at."""


class TooLong:
    """Stands in the stream for a line over MAX_LINE bytes (its bytes were thrown away)."""


TOO_LONG = TooLong()


class LineDecoder:
    """Bytes in, whole lines out, however the stream was cut. Sans-IO, like FrameDecoder."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.buffer = bytearray()
        self.skipping = False  # inside a line that was too long: drop bytes up to its end

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next_line(self) -> bytes | TooLong | None:
        """The next line without its line end, TOO_LONG for a line that was cut away,
        or None until more bytes come."""
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                if len(self.buffer) >= self._limit():  # no room left for its \n: stop keeping it
                    self.buffer.clear()
                    if not self.skipping:
                        self.skipping = True
                        return TOO_LONG
                return None
            too_long = end + 1 > self._limit()
            line = bytes(self.buffer[:end])
            del self.buffer[:end + 1]
            if self.skipping:  # the end of a line already reported as too long
                self.skipping = False
                continue
            if too_long:
                return TOO_LONG
            return line[:-1] if line.endswith(b"\r") else line

    def _limit(self) -> int:
        """Bytes the line at the front may have with its line end: a tags section comes on top."""
        return self.max_line + (MAX_TAGS if self.buffer[:1] == b"@" else 0)


def parse(line: bytes) -> Message | None:
    """One line (without its line end) as a Message; None for an empty line (ignored)."""
    try:
        text = line.decode()
    except UnicodeDecodeError:
        raise BadLine("this line was not UTF-8 and was ignored; set your client to UTF-8") from None
    if "\0" in text or "\r" in text:
        raise BadLine("a line cannot hold a NUL or a carriage return inside; it was ignored")
    tags: dict[str, str] = {}
    if text.startswith("@"):
        raw_tags, _, text = text[1:].partition(" ")
        tags = dict(_tag(item) for item in raw_tags.split(";") if item)
        text = text.lstrip(" ")
    prefix = None
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
        text = text.lstrip(" ")
    head, has_trailing, trailing = text.partition(" :")  # middle parameters never start with ':'
    words = [word for word in head.split(" ") if word]  # a space separates, a tab does not
    if not words:
        return None
    params = words[1:] + ([trailing] if has_trailing else [])
    return Message(words[0].upper(), tuple(params), prefix, tags)


def _tag(item: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    return key, value


def format_line(command: str, *params: str, prefix: str | None = None) -> bytes:
    """One line, \\r\\n included. The last parameter becomes trailing (`:`) when it must.

    Raises ValueError for what IRC cannot carry (a line end inside, a space in a middle
    parameter, more than MAX_LINE bytes): splitting text to fit is the caller's job."""
    parts = [":" + prefix] if prefix else []
    parts.append(command)
    for position, param in enumerate(params):
        if "\r" in param or "\n" in param or "\0" in param:
            raise ValueError(f"an IRC parameter cannot contain a line end or NUL: {param!r}")
        last = position == len(params) - 1
        if last and (position > 0 or not param or " " in param or param.startswith(":")):
            param = ":" + param  # as most servers do: a text last parameter always gets its colon
        elif not param or " " in param or param.startswith(":"):
            raise ValueError(f"only the last IRC parameter may be empty, hold a space or start with ':': {param!r}")
        parts.append(param)
    line = " ".join(parts).encode() + b"\r\n"
    if len(line) > MAX_LINE:
        raise ValueError(f"an IRC line has at most {MAX_LINE} bytes, this one {len(line)}")
    return line


def format_reply(command: str, *params: str, prefix: str | None = None) -> bytes:
    """format_line for replies that echo what a client sent (a command, a channel, a token):
    it never fails on them. A middle parameter that cannot be one (empty, a space, a leading
    `:`, over MAX_ECHO bytes) becomes `*`, and the last one is shortened (between
    characters) until the line fits MAX_LINE bytes."""
    middle = [param if _fits_middle(param) else "*" for param in params[:-1]]
    last = params[-1:]
    if last:
        room = MAX_LINE - len(format_line(command, *middle, "x", prefix=prefix))  # one byte spare for a ':'
        if len(last[0].encode()) > room:
            last = (split_text(last[0], room)[0],)
    return format_line(command, *middle, *last, prefix=prefix)


def _fits_middle(param: str) -> bool:
    return bool(param) and " " not in param and not param.startswith(":") and len(param.encode()) <= MAX_ECHO


def split_text(text: str, budget: int) -> list[str]:
    """Cut `text` into pieces of at most `budget` UTF-8 bytes each, between characters,
    preferring the last space that fits, so nothing is lost and no character is broken
    (a character longer than the budget is a piece of its own)."""
    pieces: list[str] = []
    raw = text.encode()
    while len(raw) > budget:
        cut = budget
        while cut > 0 and (raw[cut] & 0xC0) == 0x80:  # not inside a multi-byte character
            cut -= 1
        if cut == 0:  # a budget smaller than the first character: that character alone
            cut = budget
            while cut < len(raw) and (raw[cut] & 0xC0) == 0x80:
                cut += 1
        space = raw.rfind(b" ", 0, cut)
        if space > budget // 2:  # a word boundary, unless it would waste most of the line
            cut = space + 1
        pieces.append(raw[:cut].decode())
        raw = raw[cut:]
    pieces.append(raw.decode())
    return pieces
