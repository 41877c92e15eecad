"""The chat room as a state machine: bytes in, frames out. No sockets, no clock.

This is the whole behaviour of PROTOCOL.md in one place, the way h11 keeps HTTP apart
from I/O. A driver (an event loop, or the fork engine's hub) tells the room what
happened -- a connection accepted, bytes received, a connection gone, time passing --
and gets back a list of effects to carry out, in order:

    Send(conn, data)            queue `data` for one connection
    Broadcast(data, exclude, to)
                                queue `data` for every connection in `to` (the members
                                when the room made it) but `exclude`
    Close(conn)                 flush what is queued, then shut down and close; the room
                                has forgotten `conn`: whatever it sends counts for nothing
    Defer(conn, until)          a WHO or PING over its rate waits (the room keeps it and the
                                bytes after it): read nothing more from `conn` until Resume
    Resume(conn)                `tick` handled what waited: read from `conn` again
    Log(event, text)            a line for the server's log

`receive_data` is the whole input side: the room cuts the stream into frames itself, so
an oversized header (TOO_LARGE), bytes after a Close and the frames held back by a Defer
are the room's business, not the driver's. `receive` takes one frame already cut (the
chat-room exercise works at that level) and is the same thing.

Doing the effects in the order given is what gives every member one single order of
broadcasts. `now` is always passed in (seconds, monotonic), so tests can drive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from capstone import codec
from capstone.codec import ADMIN_KINDS, CHAT_KINDS, ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid
from lessons.toolkit.framing import FrameDecoder, FrameTooLarge
from lessons.toolkit.i18n import _


@dataclass(frozen=True)
class Limits:
    max_payload: int = codec.DEFAULT_MAX_PAYLOAD
    join_timeout: float = 10.0  # seconds from accept to a successful JOIN; 0 = no limit
    rate_limit: float = 20.0  # SAYs per second per member; 0 = no limit
    query_rate: float = 100.0  # WHO and PING per second per connection (bucket of twice that); 0 = no limit


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    data: bytes
    exclude: int | None = None
    # Who receives it: the members when the room made it, in join order. Not compared: two
    # broadcasts of the same bytes are the same effect, whoever is in the room.
    to: tuple[int, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class Close:
    conn: int


@dataclass(frozen=True, slots=True)
class Defer:
    conn: int
    until: float


@dataclass(frozen=True, slots=True)
class Resume:
    conn: int


@dataclass(frozen=True, slots=True)
class Log:
    event: str  # join, leave, drop, admin, error
    text: str


Effect = Send | Broadcast | Close | Defer | Resume | Log


@dataclass(slots=True)
class Connection:
    id: int
    admin: bool
    accepted_at: float
    decoder: FrameDecoder
    name: str | None = None  # set once joined
    held: tuple[int, bytes] | None = None  # (kind, payload) of a deferred WHO/PING
    tokens: float = 0.0
    refilled_at: float = 0.0
    query_tokens: float = 0.0  # the WHO/PING bucket, full at connect
    queries_refilled_at: float = 0.0


@dataclass
class Room:
    limits: Limits = field(default_factory=Limits)
    connections: dict[int, Connection] = field(default_factory=dict)
    members: dict[int, Connection] = field(default_factory=dict)  # in join order
    by_key: dict[str, Connection] = field(default_factory=dict)
    waiting: dict[int, float] = field(default_factory=dict)  # conn -> accept time, not joined yet
    deferred: dict[int, float] = field(default_factory=dict)  # conn -> when its held frame is handled
    _members_frame: bytes | None = field(default=None, init=False, repr=False)  # MEMBERS, once per change
    _member_ids: tuple[int, ...] | None = field(default=None, init=False, repr=False)  # Broadcast.to, likewise

    # ----- what the driver reports ---------------------------------------------------

    def connect(self, conn: int, now: float, admin: bool = False) -> list[Effect]:
        self.connections[conn] = Connection(conn, admin, now, codec.new_decoder(self.limits.max_payload),
                                            query_tokens=2 * self.limits.query_rate, queries_refilled_at=now)
        if not admin and self.limits.join_timeout > 0:
            self.waiting[conn] = now
        return []

    def receive_data(self, conn: int, data: bytes, now: float) -> list[Effect]:
        """Bytes from `conn`, cut anywhere: the effects of every whole frame in them.

        Stops at a Close (the rest counts for nothing) and at a Defer (the rest waits in
        the room until `tick` hands the deferred frame back)."""
        connection = self.connections.get(conn)
        if connection is None:  # already closed: nothing it sends counts any more
            return []
        connection.decoder.feed(data)
        if connection.held is not None:
            return []
        return self._frames(connection, now)

    def receive(self, conn: int, kind: int, payload: bytes, now: float) -> list[Effect]:
        """One frame already cut from the stream: the same as receiving its bytes."""
        return self.receive_data(conn, codec.encode(kind, payload), now)

    def disconnect(self, conn: int, why: str = "closed the connection") -> list[Effect]:
        """The connection is gone (EOF, reset, slow reader dropped): tell the others."""
        connection = self._forget_connection(conn)
        if connection is None:
            return []
        return self._remove_member(connection, why)

    def tick(self, now: float) -> list[Effect]:
        """Time passed: close connections that did not JOIN within the join timeout, then
        hand back the deferred frames whose time has come."""
        effects: list[Effect] = []
        timeout = self.limits.join_timeout
        while self.waiting:
            conn, accepted_at = next(iter(self.waiting.items()))
            if accepted_at + timeout > now:
                break
            effects += self._close_with_error(
                conn, ErrorCode.TIMEOUT, f"no JOIN within {timeout:g} seconds")
        if self.deferred:
            for conn in [conn for conn, until in self.deferred.items() if until <= now]:
                if conn in self.deferred:  # not closed by an earlier frame
                    effects += self._resume(self.connections[conn], now)
        return effects

    def next_deadline(self) -> float | None:
        """When `tick` next has work to do (None: nobody waits to join, no frame is deferred)."""
        deadlines = [min(self.deferred.values())] if self.deferred else []
        for accepted_at in self.waiting.values():  # accept order = deadline order
            deadlines.append(accepted_at + self.limits.join_timeout)
            break
        return min(deadlines, default=None)

    def announce(self, text: str, source: str = "console") -> list[Effect]:
        """The administrator's shout (console line or ADMIN_SAY): ANNOUNCE to every member."""
        return [self._broadcast(codec.encode_text(Kind.ANNOUNCE, text)),
                Log("admin", _("{source} announced: {text}").format(source=source, text=text))]

    def kick(self, wanted: str) -> list[Effect] | None:
        """Remove the member called `wanted` (matched as JOIN compares names); None: nobody is."""
        victim = self.by_key.get(name_key(normalize(wanted)))
        if victim is None:
            return None
        return self._close_with_error(victim.id, ErrorCode.KICKED, "the administrator removed you",
                                      why="was kicked by the administrator")

    def shutdown(self) -> list[Effect]:
        """The server is stopping: ERROR SHUTDOWN to every connection, then close each."""
        effects: list[Effect] = []
        for conn in list(self.connections):
            effects += self._close_with_error(conn, ErrorCode.SHUTDOWN, "the server is stopping",
                                              tell_others=False)
        return effects

    def member_names(self) -> list[str]:
        return [member.name for member in self.members.values()]

    # ----- cutting the stream into frames ------------------------------------------

    def _frames(self, connection: Connection, now: float) -> list[Effect]:
        """Every whole frame received so far, until the connection closes or a frame waits."""
        effects: list[Effect] = []
        decoder, conn, connections = connection.decoder, connection.id, self.connections
        try:
            while (frame := decoder.next_frame()) is not None:
                effects += self._frame(connection, frame.fields[0], frame.payload, now)
                if connection.held is not None or conn not in connections:
                    break
        except FrameTooLarge as err:  # the stream cannot be resynchronised: error, then close
            effects += self._close_with_error(
                conn, ErrorCode.TOO_LARGE,
                f"a frame of {err.length} bytes is over the limit of {self.limits.max_payload}")
        return effects

    def _frame(self, connection: Connection, kind: int, payload: bytes, now: float) -> list[Effect]:
        if connection.admin:
            return self._admin_frame(connection, kind, payload)
        return self._chat_frame(connection, kind, payload, now)

    def _resume(self, connection: Connection, now: float) -> list[Effect]:
        """The deferred frame's token is back: handle it, then the frames that waited behind it."""
        del self.deferred[connection.id]
        kind, payload = connection.held
        connection.held = None
        effects = self._frame(connection, kind, payload, now)
        if connection.held is None and connection.id in self.connections:
            effects += self._frames(connection, now)
        if connection.held is None and connection.id in self.connections:
            effects.append(Resume(connection.id))
        return effects

    # ----- chat connections ----------------------------------------------------------

    def _chat_frame(self, connection: Connection, kind: int, payload: bytes, now: float) -> list[Effect]:
        if kind not in CHAT_KINDS:
            return self._error(connection.id, ErrorCode.BAD_FRAME, f"unknown frame kind 0x{kind:02x}")
        if kind == Kind.SAY:
            return self._say(connection, payload, now)
        if kind == Kind.JOIN:
            return self._join(connection, payload, now)
        if kind == Kind.PING:
            if len(payload) > codec.MAX_PING:
                return self._error(connection.id, ErrorCode.BAD_FRAME,
                                   f"a PING carries at most {codec.MAX_PING} bytes")
            return self._query(connection, kind, payload, now) or [
                Send(connection.id, codec.encode(Kind.PONG, payload))]
        if kind == Kind.WHO:
            if connection.name is None:
                return self._error(connection.id, ErrorCode.NOT_JOINED, "JOIN before WHO")
            return self._query(connection, kind, payload, now) or self._members_reply(connection)
        return self._leave(connection)

    def _query(self, connection: Connection, kind: int, payload: bytes, now: float) -> list[Effect]:
        """WHO and PING cost the server more than the sender (a WHO of 5 bytes can fetch 100 KB),
        so they have a bucket of their own; past it the frame waits ([Defer]) instead of being
        refused: every WHO still gets its MEMBERS and every PING its PONG, only later."""
        rate = self.limits.query_rate
        if rate <= 0:
            return []
        capacity = 2 * rate
        connection.query_tokens = min(capacity, connection.query_tokens + (now - connection.queries_refilled_at) * rate)
        connection.queries_refilled_at = now
        if connection.query_tokens >= 1 - 1e-9:
            connection.query_tokens -= 1
            return []
        until = now + (1 - connection.query_tokens) / rate
        connection.held = (kind, payload)
        self.deferred[connection.id] = until
        return [Defer(connection.id, until)]

    def _members_reply(self, connection: Connection) -> list[Effect]:
        """MEMBERS for a WHO or a LIST. (A cluster room first catches up with its stream.)"""
        return [Send(connection.id, self.members_frame())]

    def members_frame(self) -> bytes:
        """MEMBERS for WHO and LIST: encoded once per change, the same bytes for every asker."""
        if self._members_frame is None:
            self._members_frame = codec.encode_members(self.member_names())
        return self._members_frame

    def _broadcast(self, data: bytes, exclude: int | None = None) -> Broadcast:
        """To every member (but `exclude`); the tuple of members is made once per change."""
        if self._member_ids is None:
            self._member_ids = tuple(self.members)
        return Broadcast(data, exclude, self._member_ids)

    def _join(self, connection: Connection, payload: bytes, now: float) -> list[Effect]:
        conn = connection.id
        try:
            raw = payload.decode()
        except UnicodeDecodeError:
            return self._error(conn, ErrorCode.BAD_FRAME, "a name must be UTF-8")
        if connection.name is not None:
            return self._error(conn, ErrorCode.ALREADY_JOINED, f"already joined as {connection.name}")
        name = normalize(raw)
        problem = why_invalid(name)
        if problem:
            return self._error(conn, ErrorCode.NAME_INVALID, problem)
        return self._admit(connection, name, now)

    def _admit(self, connection: Connection, name: str, now: float) -> list[Effect]:
        """A valid name: the member joins if nobody holds it. (A cluster room claims it from
        its broker here instead, and admits the member when the claim comes back.)"""
        key = name_key(name)
        if key in self.by_key:
            return self._error(connection.id, ErrorCode.NAME_TAKEN, f"the name {name} is taken")
        self.by_key[key] = connection
        return self._welcome(connection, name, now)

    def _welcome(self, connection: Connection, name: str, now: float) -> list[Effect]:
        """`connection` is a member from now on: WELCOME to it, JOINED to the others."""
        conn = connection.id
        connection.name = name
        connection.tokens = 2 * self.limits.rate_limit
        connection.refilled_at = now
        self.waiting.pop(conn, None)
        self.members[conn] = connection
        self._members_changed()
        return [Send(conn, codec.encode_text(Kind.WELCOME, name)),
                self._broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn), Log("join", _("{name} joined").format(name=name))]

    def _say(self, connection: Connection, payload: bytes, now: float) -> list[Effect]:
        conn = connection.id
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return self._error(conn, ErrorCode.BAD_FRAME, "a message must be UTF-8")
        problem = text_problem(text)
        if problem:
            return self._error(conn, ErrorCode.BAD_FRAME, problem)
        if connection.name is None:
            return self._error(conn, ErrorCode.NOT_JOINED, "JOIN before SAY")
        if not self._take_token(connection, now):
            return self._error(conn, ErrorCode.RATE_LIMITED,
                               f"more than {self.limits.rate_limit:g} messages per second; this one was dropped")
        return self._said(connection, text)

    def _said(self, connection: Connection, text: str) -> list[Effect]:
        """An accepted SAY: MESSAGE to every other member (a cluster room publishes it instead)."""
        return [self._broadcast(codec.encode_message(connection.name, text), exclude=connection.id)]

    def _take_token(self, connection: Connection, now: float) -> bool:
        """Token bucket: 2N tokens, refilled continuously at N per second."""
        rate = self.limits.rate_limit
        if rate <= 0:
            return True
        capacity = 2 * rate
        connection.tokens = min(capacity, connection.tokens + (now - connection.refilled_at) * rate)
        connection.refilled_at = now
        if connection.tokens < 1 - 1e-9:  # float refill: 0.05 s at 20/s may come out as 0.99999...
            return False
        connection.tokens -= 1
        return True

    def _leave(self, connection: Connection) -> list[Effect]:
        self._forget_connection(connection.id)
        return self._remove_member(connection, "left") + [Close(connection.id)]

    # ----- the administrator ---------------------------------------------------------

    def _admin_frame(self, connection: Connection, kind: int, payload: bytes) -> list[Effect]:
        conn = connection.id
        if kind not in ADMIN_KINDS:
            return self._error(conn, ErrorCode.BAD_FRAME, f"unknown admin frame kind 0x{kind:02x}")
        if kind == Kind.LIST:
            return self._members_reply(connection)
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return self._error(conn, ErrorCode.BAD_FRAME, "admin text must be UTF-8")
        if kind == Kind.ADMIN_SAY:
            return self.announce(text, source="admin socket") + [Send(conn, codec.encode(Kind.OK))]
        return self._kick(conn, text)

    def _kick(self, admin_conn: int, wanted: str) -> list[Effect]:
        effects = self.kick(wanted)
        if effects is None:
            return self._error(admin_conn, ErrorCode.NO_SUCH_MEMBER, f"nobody is called {wanted}")
        return effects + [Send(admin_conn, codec.encode(Kind.OK))]

    # ----- shared steps ----------------------------------------------------------------

    def _error(self, conn: int, code: ErrorCode, reason: str) -> list[Effect]:
        return [Send(conn, codec.encode_error(code, reason))]

    def _close_with_error(self, conn: int, code: ErrorCode, reason: str,
                          why: str | None = None, tell_others: bool = True) -> list[Effect]:
        """Error frame last, then close; a member's departure is broadcast as LEFT."""
        connection = self._forget_connection(conn)
        effects = self._error(conn, code, reason)
        if connection is not None and tell_others:
            effects += self._remove_member(connection, why or f"was disconnected ({code.name})")
        elif connection is not None:
            self._forget(connection)
        return effects + [Close(conn)]

    def _forget_connection(self, conn: int) -> Connection | None:
        """The connection is closed: nothing it sent or sends later counts (a held frame neither)."""
        self.waiting.pop(conn, None)
        self.deferred.pop(conn, None)
        return self.connections.pop(conn, None)

    def _remove_member(self, connection: Connection, why: str) -> list[Effect]:
        if connection.name is None:
            return []
        self._forget(connection)
        return [self._broadcast(codec.encode_text(Kind.LEFT, connection.name)),
                Log("leave", f"{connection.name} {why}")]

    def _forget(self, connection: Connection) -> None:
        if self.members.pop(connection.id, None) is not None:
            del self.by_key[name_key(connection.name)]
            self._members_changed()

    def _members_changed(self) -> None:
        self._members_frame = self._member_ids = None
