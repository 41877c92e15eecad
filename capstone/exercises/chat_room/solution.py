"""Exercise chat-room, the reference solution: the room as a sans-IO state machine.

Lesson:  learn show capstone (the rules: learn show protocol)     Check:  learn exercise check chat-room

The full server's room (capstone/room.py) adds what this one leaves out: the
administrator's socket, the join timeout and the rate limit.
"""

from __future__ import annotations

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid
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
        if kind == Kind.JOIN:
            return self.join(conn, payload)
        if kind == Kind.SAY:
            return self.say(conn, payload)
        if kind == Kind.LEAVE:
            return self.leave(conn)
        if kind == Kind.PING:
            if len(payload) > codec.MAX_PING:
                return self.error(conn, ErrorCode.BAD_FRAME, f"a PING carries at most {codec.MAX_PING} bytes")
            return [Send(conn, codec.encode(Kind.PONG, payload))]
        if kind == Kind.WHO:
            if conn not in self.members:
                return self.error(conn, ErrorCode.NOT_JOINED, "JOIN before WHO")
            return [Send(conn, codec.encode_members(list(self.members.values())))]
        return self.error(conn, ErrorCode.BAD_FRAME, f"unknown frame kind 0x{kind:02x}")

    def join(self, conn: int, payload: bytes) -> list[Effect]:
        try:
            name = normalize(payload.decode())
        except UnicodeDecodeError:
            return self.error(conn, ErrorCode.BAD_FRAME, "a name must be UTF-8")
        if conn in self.members:
            return self.error(conn, ErrorCode.ALREADY_JOINED, f"already joined as {self.members[conn]}")
        problem = why_invalid(name)
        if problem:
            return self.error(conn, ErrorCode.NAME_INVALID, problem)
        if name_key(name) in self.by_key:
            return self.error(conn, ErrorCode.NAME_TAKEN, f"the name {name} is taken")
        self.members[conn] = name
        self.by_key[name_key(name)] = conn
        return [Send(conn, codec.encode_text(Kind.WELCOME, name)),
                self.broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn)]

    def say(self, conn: int, payload: bytes) -> list[Effect]:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return self.error(conn, ErrorCode.BAD_FRAME, "a message must be UTF-8")
        problem = text_problem(text)
        if problem:
            return self.error(conn, ErrorCode.BAD_FRAME, problem)
        if conn not in self.members:
            return self.error(conn, ErrorCode.NOT_JOINED, "JOIN before SAY")
        return [self.broadcast(codec.encode_message(self.members[conn], text), exclude=conn)]

    def leave(self, conn: int) -> list[Effect]:
        return self.disconnect(conn) + [Close(conn)]

    def disconnect(self, conn: int) -> list[Effect]:
        """`conn` is gone (closed, reset): if it was a member, the others get LEFT."""
        self.connections.discard(conn)
        name = self.members.pop(conn, None)
        if name is None:
            return []
        del self.by_key[name_key(name)]
        return [self.broadcast(codec.encode_text(Kind.LEFT, name))]

    def announce(self, text: str) -> list[Effect]:
        """The administrator's shout: ANNOUNCE to every member."""
        return [self.broadcast(codec.encode_text(Kind.ANNOUNCE, text))]

    def error(self, conn: int, code: ErrorCode, reason: str) -> list[Effect]:
        """An ERROR frame for one connection; the connection stays open."""
        return [Send(conn, codec.encode_error(code, reason))]

    def broadcast(self, data: bytes, exclude: int | None = None) -> Broadcast:
        """`data` for every member as of now (but `exclude`): call it after updating self.members."""
        return Broadcast(data, exclude, to=tuple(self.members))
