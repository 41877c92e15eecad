"""Exercise chat-room: the capstone's room, as a state machine with no sockets in it.

Lesson:  learn show capstone (the rules: learn show protocol)     Check:  learn exercise check chat-room

The notes' homework: a chat room like a QQ group. A name is required and unique;
everyone is told "xxx 进入了聊天室" when someone enters and "xxx 退出了聊天室" when they
leave; a message from one reaches all the others; the administrator's shout reaches all.

The real server keeps this logic apart from all I/O (as h11 does for HTTP): a driver
tells the room what happened and carries out the effects the room returns, in order:

    Send(conn, data)          these bytes to one connection
    Broadcast(data, exclude, to)
                              these bytes to every connection in `to` (but `exclude`)
    Close(conn)               flush, then close that connection

so the room is checked with no network at all, by the same rules as the real server
(PROTOCOL.md). A Broadcast names who receives it, as the real server's room does: make
it with `self.broadcast(data, exclude)` (given below), which puts the members of that
moment in `to`, so update `self.members` first (a newcomer added, a leaver removed).
The frames, names and effects are given below; the rules are yours:

- JOIN name: WELCOME (the normalized name) to the joiner, JOINED name to every other
  member. Errors: a payload that is not UTF-8 is BAD_FRAME; a second JOIN is
  ALREADY_JOINED; then why_invalid() -> NAME_INVALID; a name already used, compared by
  name_key() -> NAME_TAKEN. After an error the connection stays open and may try again.
- SAY text: MESSAGE (sender, text) to every other member. Not UTF-8, or text_problem()
  -> BAD_FRAME; before JOIN -> NOT_JOINED.
- LEAVE: LEFT name to the others (if it had joined), then Close(conn).
- PING payload: PONG with the same payload (no JOIN needed); over 64 bytes -> BAD_FRAME.
- WHO: MEMBERS (the names in join order) to the asker; before JOIN -> NOT_JOINED.
- any other kind -> BAD_FRAME.
- disconnect(conn): the connection is gone; if it was a member, LEFT to the others.
- announce(text): ANNOUNCE to every member.
Every error is Send(conn, codec.encode_error(code, reason)); a reason is a few words.
"""

from __future__ import annotations

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid  # noqa: F401 - yours to use
from capstone.room import Broadcast, Close, Send

Effect = Send | Broadcast | Close


class Room:
    """Frames in, effects out; no sockets, no clock."""

    def __init__(self) -> None:
        self.connections: set[int] = set()  # every open connection
        self.members: dict[int, str] = {}  # conn -> name, for those who joined, in join order
        self.by_key: dict[str, int] = {}  # name_key(name) -> conn: is a name taken?

    def connect(self, conn: int, now: float) -> list[Effect]:
        """A connection was accepted. Nothing to say yet: a client speaks first."""
        self.connections.add(conn)
        return []

    def receive(self, conn: int, kind: int, payload: bytes, now: float) -> list[Effect]:
        """One whole frame arrived from `conn`: what must happen now?"""
        # TODO 1: dispatch on `kind` (Kind.JOIN, Kind.SAY, Kind.LEAVE, Kind.PING, Kind.WHO);
        #         any other kind -> self.error(conn, ErrorCode.BAD_FRAME, "...").
        # TODO 2: JOIN: decode (UnicodeDecodeError -> BAD_FRAME), ALREADY_JOINED, then
        #         name = normalize(text); why_invalid(name) -> NAME_INVALID; name_key(name)
        #         in self.by_key -> NAME_TAKEN; else remember the member and return
        #         [Send(conn, codec.encode_text(Kind.WELCOME, name)),
        #          self.broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn)].
        # TODO 3: SAY: decode, text_problem(text) -> BAD_FRAME, not a member -> NOT_JOINED,
        #         else [self.broadcast(codec.encode_message(name, text), exclude=conn)].
        # TODO 4: LEAVE: forget the member, LEFT to the others, then Close(conn).
        # TODO 5: PING: PONG with the payload (over codec.MAX_PING bytes: BAD_FRAME).
        #         WHO: codec.encode_members(names in join order), or NOT_JOINED.
        raise NotImplementedError("TODO: write Room.receive()")

    def disconnect(self, conn: int) -> list[Effect]:
        """`conn` is gone (closed, reset): if it was a member, the others get LEFT."""
        # TODO: forget the connection; a member's name is freed and LEFT is broadcast.
        raise NotImplementedError("TODO: write Room.disconnect()")

    def announce(self, text: str) -> list[Effect]:
        """The administrator's shout: ANNOUNCE to every member."""
        # TODO: one self.broadcast() of codec.encode_text(Kind.ANNOUNCE, text), excluding nobody.
        raise NotImplementedError("TODO: write Room.announce()")

    def error(self, conn: int, code: ErrorCode, reason: str) -> list[Effect]:
        """An ERROR frame for one connection; the connection stays open."""
        return [Send(conn, codec.encode_error(code, reason))]

    def broadcast(self, data: bytes, exclude: int | None = None) -> Broadcast:
        """`data` for every member as of now (but `exclude`): call it after updating self.members."""
        return Broadcast(data, exclude, to=tuple(self.members))
