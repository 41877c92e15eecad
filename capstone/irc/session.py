"""One IRC connection as a protocol adapter over the room. Sans-IO: no socket, no clock.

The room speaks only the binary protocol (PROTOCOL.md). An IrcSession stands between
an IRC client and the room, the way a translator sits between two people:

    IRC lines --receive_data()--> ToRoom(frame) for room.receive_data, ToClient(line)
    frame the room sends this connection --from_room()--> IRC lines
    broadcast frame --IrcNetwork.from_broadcast()--> IRC lines (the same for every reader)

So every rule of the room (one registry of names, the rate limit, the join timeout, the
order of broadcasts, kick and shutdown) applies to IRC users without a second copy of it.
What only IRC has lives here: the registration dance (CAP, NICK, USER), the numerics,
the server's own PING to a silent client, and the one channel that stands for the room.
A client's PING goes through the room's PING, so the room's limit on PINGs holds for it.

Registration, as real clients do it (measured): irssi sends CAP LS 302, JOIN :, CAP END,
NICK, USER; WeeChat CAP LS 302, NICK, USER, CAP END; ii only NICK and USER. Once a nick
and USER are in, and CAP negotiation (if any) has ended, the session sends JOIN and WHO
to the room: WELCOME answers with 001-005, and the member list that follows with 251,
422, the JOIN of the channel and its NAMES. A taken or refused name is 433 or 432, and the
client may try another NICK. The member is put in the channel at once (a forced JOIN, as
many networks do): the room has no notion of being connected but outside it.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from capstone import codec as frames
from capstone.codec import ErrorCode, Kind
from capstone.irc.codec import TOO_LONG, BadLine, LineDecoder, Message, format_line, format_reply, parse, split_text
from capstone.irc.names import NICKLEN, to_name, to_nick
from capstone.names import name_key, why_invalid

SERVER_NAME = "learn.chat"  # has a dot, which no nick has (names.py): a prefix tells them apart
NETWORK_NAME = "learn-chat"
VERSION = "learn-chat-1"
CHANNELLEN = 50
MEMBER_USER = "chat"  # the user part of nick!user@host: the room keeps no such thing
IDLE_PING = 90.0  # seconds of silence before the server sends PING
PING_TIMEOUT = 90.0  # seconds to answer it before the connection is closed
ACTION = "\x01ACTION "  # CTCP ACTION (/me): carried in the room as a message starting "/me "
LINE_ENDS = re.compile("\r\n|\r|\n")
ISUPPORT = ("CASEMAPPING=rfc7613", "CHANTYPES=#", f"CHANNELLEN={CHANNELLEN}", f"NICKLEN={NICKLEN}",
            f"NETWORK={NETWORK_NAME}", "PREFIX=", "CHANLIMIT=#:1", "CHANMODES=,,,n")


@dataclass(frozen=True, slots=True)
class ToRoom:
    """A binary frame for the room, as if the client had sent it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ToClient:
    """IRC lines for this client, straight from the adapter."""

    data: bytes


Step = ToRoom | ToClient


def channel_problem(channel: str) -> str | None:
    """None if `channel` can name the room's channel on IRC, else why not."""
    if not channel.startswith("#") or len(channel) < 2:
        return "an IRC channel name starts with # and has at least one more character"
    if len(channel.encode()) > CHANNELLEN:
        return f"an IRC channel name has at most {CHANNELLEN} bytes"
    if any(char in channel for char in " ,:\x07") or any(ord(char) < 32 for char in channel):
        return "an IRC channel name cannot hold a space, a comma, a colon or a control character"
    return None


@dataclass(frozen=True)
class IrcNetwork:
    """What every IRC session of one listener shares: the channel, the names, the timings."""

    channel: str = "#chat"
    server: str = SERVER_NAME
    max_payload: int = frames.DEFAULT_MAX_PAYLOAD  # the room's: a longer PRIVMSG becomes several SAYs
    idle_ping: float = IDLE_PING
    ping_timeout: float = PING_TIMEOUT

    def new_session(self, now: float) -> IrcSession:
        return IrcSession(self, now)

    def source(self, name: str) -> str:
        """nick!user@host of a room member."""
        return f"{to_nick(name)}!{MEMBER_USER}@{self.server}"

    def from_broadcast(self, data: bytes) -> bytes:
        """The IRC lines for one broadcast frame: the same bytes for every IRC reader, so a
        driver translates a broadcast once, whatever the number of IRC members."""
        kind, payload = unpack(data)
        if kind == Kind.MESSAGE:
            name, text = frames.decode_message(payload)
            return self.text_lines(self.source(name), "PRIVMSG", text)
        if kind == Kind.JOINED:
            return format_line("JOIN", self.channel, prefix=self.source(payload.decode()))
        if kind == Kind.LEFT:
            return format_line("QUIT", "left the room", prefix=self.source(payload.decode()))
        if kind == Kind.ANNOUNCE:
            return self.text_lines(self.server, "NOTICE", payload.decode())
        return b""

    def text_lines(self, source: str, command: str, text: str, target: str | None = None) -> bytes:
        """A room text as whole IRC lines: one per line of the text, each long line cut
        (between characters) into pieces that fit 512 bytes. Nothing is ever dropped."""
        target = target or self.channel
        action = text.startswith("/me ") and command == "PRIVMSG"
        if action:
            text = text[len("/me "):]
        head = len(f":{source} {command} {target} :\r\n".encode()) + (len(ACTION) + 1 if action else 0)
        lines = []
        for line in LINE_ENDS.split(text.replace("\0", "\ufffd")):  # an ANNOUNCE is not checked at all
            for piece in split_text(line or " ", 512 - head):  # an empty line stays a line
                piece = f"{ACTION}{piece}\x01" if action else piece
                lines.append(format_line(command, target, piece, prefix=source))
        return b"".join(lines)


def unpack(data: bytes) -> tuple[int, bytes]:
    """(kind, payload) of one whole frame, as the room makes them."""
    _length, kind = frames.HEADER.unpack_from(data)
    return kind, data[frames.HEADER.size:]


class IrcSession:
    def __init__(self, network: IrcNetwork, now: float) -> None:
        self.network = network
        self.decoder = LineDecoder()
        self.nick: str | None = None  # the nick asked for (IRC form), then the one accepted
        self.has_user = False
        self.negotiating = False  # CAP LS/REQ seen and no CAP END yet: registration waits
        self.joining = False  # JOIN sent to the room, its answer not seen yet
        self.registered = False  # WELCOME came back: a member of the room
        self.closing = False  # QUIT, PART or a timeout: nothing more is read
        self.queries: deque[str] = deque()  # what each WHO sent to the room is for, oldest first
        self.pongs: deque[str] = deque()  # the token of each PING sent to the room, oldest first
        self.heard_at = now
        self.pinged_at: float | None = None

    # ----- from the client ------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> Iterator[Step]:
        """Bytes from the client, cut anywhere: what to send the room and the client, in order.

        Lazily, one line at a time: the driver hands each ToRoom to the room (and the room's
        answer to `from_room`) before the next line is read, so a client that sends NICK,
        USER and PRIVMSG in one packet finds itself registered by the time of the PRIVMSG."""
        self.heard_at, self.pinged_at = now, None
        self.decoder.feed(data)
        return self._steps()

    def _steps(self) -> Iterator[Step]:
        while not self.closing and (line := self.decoder.next_line()) is not None:
            if line is TOO_LONG:
                yield self._numeric("417", "Input line was too long")
                continue
            try:
                message = parse(line)
            except BadLine as why:
                yield self._notice(str(why))
                continue
            if message is not None:
                yield from self._command(message)

    def tick(self, now: float) -> list[Step]:
        """Time passed: PING a silent client; close one that did not answer in time."""
        if self.closing:
            return []
        if self.pinged_at is None and now - self.heard_at >= self.network.idle_ping:
            self.pinged_at = now
            return [ToClient(format_line("PING", self.network.server))]
        if self.pinged_at is not None and now - self.pinged_at >= self.network.ping_timeout:
            return self._close(f"Ping timeout: {self.network.ping_timeout:g} seconds")
        return []

    def _command(self, message: Message) -> list[Step]:
        handler, needed, before_registration = COMMANDS.get(message.command, (None, 0, False))
        if handler is None:
            return [self._numeric("421", message.command, "Unknown command")]
        if not self.registered and not before_registration:
            return [self._numeric("451", "You have not registered")]
        if len(message.params) < needed:
            if message.command == "NICK":
                return [self._numeric("431", "No nickname given")]
            return [self._numeric("461", message.command, "Not enough parameters")]
        return handler(self, message.params)

    def _cap(self, params: tuple[str, ...]) -> list[Step]:
        """We offer no capability: LS and LIST are empty, every REQ is refused."""
        sub = params[0].upper()
        target = self.nick or "*"
        if sub == "LS":
            self.negotiating = not self.registered
            return [self._reply("CAP", target, "LS", "")]
        if sub == "LIST":
            return [self._reply("CAP", target, "LIST", "")]
        if sub == "REQ":
            self.negotiating = not self.registered
            return [self._reply("CAP", target, "NAK", params[1] if len(params) > 1 else "")]
        if sub == "END":
            self.negotiating = False
            return self._register()
        return [self._numeric("410", params[0], "Invalid CAP command")]

    def _nick(self, params: tuple[str, ...]) -> list[Step]:
        if self.registered:
            return [self._notice("this room cannot rename a member; reconnect with the new nick")]
        if self.joining:  # the answer to the last nick is on its way
            return []
        name = to_name(params[0])
        problem = why_invalid(name)
        if problem:
            return [self._numeric("432", params[0], f"Erroneous nickname: {problem}")]
        self.nick = to_nick(name)
        return self._register()

    def _user(self, params: tuple[str, ...]) -> list[Step]:
        if self.registered or self.has_user:
            return [self._numeric("462", "You may not reregister")]
        self.has_user = True
        return self._register()

    def _register(self) -> list[Step]:
        """NICK, USER and the end of CAP are in: ask the room for the name, then the members."""
        if self.registered or self.joining or self.negotiating or not (self.nick and self.has_user):
            return []
        self.joining = True
        self.queries.append("welcome")
        return [ToRoom(frames.encode_text(Kind.JOIN, to_name(self.nick))), ToRoom(frames.encode(Kind.WHO))]

    def _ping(self, params: tuple[str, ...]) -> list[Step]:
        """Through the room's own PING, so that the room's limit on PINGs holds for IRC too."""
        self.pongs.append(params[0])
        return [ToRoom(frames.encode(Kind.PING))]

    def _pong(self, params: tuple[str, ...]) -> list[Step]:
        return []  # hearing anything at all was the point

    def _pass(self, params: tuple[str, ...]) -> list[Step]:
        return [self._numeric("462", "You may not reregister")] if self.registered else []

    def _quit(self, params: tuple[str, ...]) -> list[Step]:
        reason = params[0] if params else "Client Quit"
        return self._close(f"Quit: {reason}")

    def _join(self, params: tuple[str, ...]) -> list[Step]:
        steps: list[Step] = []
        for channel in params[0].split(","):
            if channel == "0":  # "leave every channel"
                return self._part((self.network.channel,))
            if not self._is_ours(channel):
                steps.append(self._no_such_channel(channel))
        return steps  # our channel: already in it since registration

    def _part(self, params: tuple[str, ...]) -> list[Step]:
        for channel in params[0].split(","):
            if not self._is_ours(channel):
                return [self._numeric("442", channel, "You're not on that channel")]
        part = format_line("PART", self.network.channel, prefix=self._self_source())
        return [ToClient(part)] + self._close(f"left {self.network.channel}, the only channel of this server")

    def _privmsg(self, params: tuple[str, ...]) -> list[Step]:
        if len(params) < 2 or not params[1]:
            return [self._numeric("412", "No text to send")]
        steps: list[Step] = []
        for target in params[0].split(","):
            if self._is_ours(target):
                steps += self._say(params[1])
            elif target.startswith("#"):
                steps.append(self._no_such_channel(target))
            else:
                steps.append(self._notice(f"this room has no private messages; {target} did not get yours. "
                                          f"Write to {self.network.channel}, where everyone reads"))
        return steps

    def _say(self, text: str) -> list[Step]:
        if text.startswith(ACTION):  # /me waves -> "/me waves", as the room's own clients write it
            text = "/me " + text[len(ACTION):].removesuffix("\x01")
        pieces = split_text(text, self.network.max_payload)
        return [ToRoom(frames.encode_text(Kind.SAY, piece)) for piece in pieces]

    def _names(self, params: tuple[str, ...]) -> list[Step]:
        if params and not self._is_ours(params[0]):
            return [self._numeric("366", params[0], "End of /NAMES list")]
        self.queries.append("names")
        return [ToRoom(frames.encode(Kind.WHO))]

    def _who(self, params: tuple[str, ...]) -> list[Step]:
        mask = params[0] if params else "*"
        self.queries.append("who " + mask)
        return [ToRoom(frames.encode(Kind.WHO))]

    def _mode(self, params: tuple[str, ...]) -> list[Step]:
        """No modes to speak of: enough answers that clients do not complain."""
        target = params[0]
        if self._is_ours(target):
            if len(params) == 1:
                return [self._numeric("324", target, "+n")]
            if params[1].lstrip("+") == "b":
                return [self._numeric("368", target, "End of channel ban list")]
            return [self._numeric("482", target, "You're not channel operator")]
        if target.startswith("#"):
            return [self._no_such_channel(target)]
        if name_key(to_name(target)) != name_key(to_name(self.nick)):
            return [self._numeric("502", "Can't change mode for other users")]
        return [self._numeric("221", "+")]

    # ----- from the room --------------------------------------------------------------

    def from_room(self, data: bytes) -> bytes:
        """The IRC lines for one frame the room sent this connection alone."""
        kind, payload = unpack(data)
        if kind == Kind.WELCOME:
            return self._welcome(payload.decode())
        if kind == Kind.MEMBERS:
            return self._members(payload.decode().split("\n") if payload else [])
        if kind == Kind.PONG:
            return self._reply("PONG", self.network.server, self.pongs.popleft()).data
        if kind == Kind.ERROR:
            return self._error(*frames.decode_error(payload))
        return b""

    def _welcome(self, name: str) -> bytes:
        self.registered, self.joining, self.nick = True, False, to_nick(name)
        network = self.network
        return b"".join(self._line(numeric, *params) for numeric, *params in (
            ("001", f"Welcome to the {NETWORK_NAME} room, {self.nick}"),
            ("002", f"Your host is {network.server}, running version {VERSION}"),
            ("003", "This server was created for this room"),
            ("004", network.server, VERSION, "i", "n"),
            ("005", *ISUPPORT, "are supported by this server"),
        ))

    def _members(self, names: list[str]) -> bytes:
        purpose = self.queries.popleft() if self.queries else "names"
        if purpose == "names":
            return self._names_lines(names)
        if purpose == "welcome":
            count = len(names)
            return b"".join([
                self._line("251", f"There are {count} users and 0 invisible on 1 servers"),
                self._line("422", "MOTD File is missing"),
                format_line("JOIN", self.network.channel, prefix=self._self_source()),
                self._names_lines(names),
            ])
        return self._who_lines(purpose.removeprefix("who "), names)

    def _names_lines(self, names: list[str]) -> bytes:
        """353 lines with as many nicks as fit in 512 bytes each, then 366."""
        channel = self.network.channel
        head = len(f":{self.network.server} 353 {self.nick} = {channel} :\r\n".encode())
        lines, batch, size = [], [], head
        for nick in map(to_nick, names):
            extra = len(nick.encode()) + (1 if batch else 0)
            if batch and size + extra > 512:
                lines.append(self._line("353", "=", channel, " ".join(batch)))
                batch, size, extra = [], head, extra - 1
            batch.append(nick)
            size += extra
        if batch:
            lines.append(self._line("353", "=", channel, " ".join(batch)))
        lines.append(self._line("366", channel, "End of /NAMES list"))
        return b"".join(lines)

    def _who_lines(self, mask: str, names: list[str]) -> bytes:
        """352 for each member the mask names (the channel, `*`, or one nick), then 315."""
        if mask not in ("*", "0") and not self._is_ours(mask):
            wanted = name_key(to_name(mask))
            names = [name for name in names if name_key(name) == wanted]
        network = self.network
        lines = [self._line("352", network.channel, MEMBER_USER, network.server, network.server,
                            to_nick(name), "H", f"0 {to_nick(name)}") for name in names]
        lines.append(self._line("315", mask, "End of WHO list"))
        return b"".join(lines)

    def _error(self, code: int, reason: str) -> bytes:
        if code == ErrorCode.NOT_JOINED and self.queries:  # the WHO behind a refused JOIN
            self.queries.popleft()
            return b""
        if code in (ErrorCode.NAME_TAKEN, ErrorCode.NAME_INVALID):
            asked, self.nick, self.joining = self.nick, None, False  # the WHO behind it pops its query
            if code == ErrorCode.NAME_TAKEN:
                return self._line("433", asked, "Nickname is already in use")
            return self._line("432", asked, f"Erroneous nickname: {reason}")
        if code == ErrorCode.KICKED:
            kick = format_line("KICK", self.network.channel, self.nick or "*", reason, prefix=self.network.server)
            return kick + self._closing_link(reason)
        if code in frames.CLOSING_ERRORS:
            return self._closing_link(reason)
        return self._notice(reason).data

    # ----- shared steps ---------------------------------------------------------------

    def _close(self, reason: str) -> list[Step]:
        """ERROR to the client, then LEAVE to the room: the others hear QUIT, the room closes us."""
        self.closing = True
        return [ToClient(self._closing_link(reason)), ToRoom(frames.encode(Kind.LEAVE))]

    def _closing_link(self, reason: str) -> bytes:
        return format_reply("ERROR", f"Closing Link: {self.nick or '*'} ({reason})")

    def _is_ours(self, channel: str) -> bool:
        return channel.casefold() == self.network.channel.casefold()

    def _self_source(self) -> str:
        return f"{self.nick}!{MEMBER_USER}@{self.network.server}"

    def _no_such_channel(self, channel: str) -> ToClient:
        return self._numeric("403", channel, f"No such channel; this server has one, {self.network.channel}")

    def _line(self, numeric: str, *params: str) -> bytes:
        return format_reply(numeric, self.nick or "*", *params, prefix=self.network.server)

    def _numeric(self, numeric: str, *params: str) -> ToClient:
        return ToClient(self._line(numeric, *params))

    def _reply(self, command: str, *params: str) -> ToClient:
        return ToClient(format_reply(command, *params, prefix=self.network.server))

    def _notice(self, text: str) -> ToClient:
        return ToClient(self.network.text_lines(self.network.server, "NOTICE", text, target=self.nick or "*"))


# command -> (handler, parameters needed, allowed before registration)
COMMANDS = {
    "CAP": (IrcSession._cap, 1, True),
    "NICK": (IrcSession._nick, 1, True),
    "USER": (IrcSession._user, 4, True),
    "PASS": (IrcSession._pass, 0, True),
    "PING": (IrcSession._ping, 1, True),
    "PONG": (IrcSession._pong, 0, True),
    "QUIT": (IrcSession._quit, 0, True),
    "JOIN": (IrcSession._join, 1, False),
    "PART": (IrcSession._part, 1, False),
    "PRIVMSG": (IrcSession._privmsg, 1, False),
    "NOTICE": (IrcSession._privmsg, 1, False),
    "NAMES": (IrcSession._names, 0, False),
    "WHO": (IrcSession._who, 0, False),
    "MODE": (IrcSession._mode, 1, False),
}
