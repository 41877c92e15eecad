"""The chat room as a state machine: frames in, frames out. No sockets, no clock.

This is the whole behaviour of PROTOCOL.md in one place, the way h11 keeps HTTP apart
from I/O. A driver (an event loop, or the fork engine's hub) tells the room what
happened -- a connection accepted, a frame decoded, a connection gone, time passing --
and gets back a list of effects to carry out, in order:

    Send(conn, data)            queue `data` for one connection
    Broadcast(data, exclude)    queue `data` for every member (but `exclude`)
    Close(conn)                 flush what is queued, then shut down and close
    Defer(conn, kind, payload, until)
                                this frame (a WHO or PING over its rate) is not handled yet:
                                give it back at `until`, and read nothing more from `conn`
                                before then (the sender is slowed down, never answered wrongly)
    Log(event, text)            a line for the server's log

Doing the effects in the order given is what gives every member one single order of
broadcasts. `now` is always passed in (seconds, monotonic), so tests can drive time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from capstone import codec
from capstone.codec import ADMIN_KINDS, CHAT_KINDS, ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid


@dataclass(frozen=True)
class Limits:
    max_payload: int = codec.DEFAULT_MAX_PAYLOAD
    join_timeout: float = 10.0  # seconds from accept to a successful JOIN; 0 = no limit
    rate_limit: float = 20.0  # SAYs per second per member; 0 = no limit
    max_queue: int = 1 << 20  # bytes queued for one slow reader (enforced by the driver)
    max_buffered: int = 64 << 20  # bytes queued for all connections together (enforced by the driver)
    query_rate: float = 100.0  # WHO and PING per second per connection (bucket of twice that); 0 = no limit


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Broadcast:
    data: bytes
    exclude: int | None = None


@dataclass(frozen=True, slots=True)
class Close:
    conn: int


@dataclass(frozen=True, slots=True)
class Defer:
    conn: int
    kind: int
    payload: bytes
    until: float


@dataclass(frozen=True, slots=True)
class Log:
    event: str  # join, leave, drop, admin, error
    text: str


Effect = Send | Broadcast | Close | Defer | Log


@dataclass(slots=True)
class Connection:
    id: int
    admin: bool
    accepted_at: float
    name: str | None = None  # set once joined
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
    _members_frame: bytes | None = field(default=None, init=False, repr=False)  # MEMBERS, once per change

    # ----- what the driver reports ---------------------------------------------------

    def connect(self, conn: int, now: float, admin: bool = False) -> list[Effect]:
        self.connections[conn] = Connection(conn, admin, now, query_tokens=2 * self.limits.query_rate,
                                            queries_refilled_at=now)
        if not admin and self.limits.join_timeout > 0:
            self.waiting[conn] = now
        return []

    def receive(self, conn: int, kind: int, payload: bytes, now: float) -> list[Effect]:
        """One decoded frame from `conn`."""
        connection = self.connections.get(conn)
        if connection is None:  # already closing: nothing it sends counts any more
            return []
        if connection.admin:
            return self._admin_frame(connection, kind, payload)
        return self._chat_frame(connection, kind, payload, now)

    def too_large(self, conn: int, length: int) -> list[Effect]:
        """A header announced more than max_payload: error, then close."""
        if conn not in self.connections:  # already closing: its error was the last frame
            return []
        return self._close_with_error(
            conn, ErrorCode.TOO_LARGE,
            f"a frame of {length} bytes is over the limit of {self.limits.max_payload}")

    def disconnect(self, conn: int, why: str = "closed the connection") -> list[Effect]:
        """The connection is gone (EOF, reset, slow reader dropped): tell the others."""
        connection = self.connections.pop(conn, None)
        if connection is None:
            return []
        self.waiting.pop(conn, None)
        return self._remove_member(connection, why)

    def tick(self, now: float) -> list[Effect]:
        """Time passed: close connections that did not JOIN within the join timeout."""
        effects: list[Effect] = []
        timeout = self.limits.join_timeout
        while self.waiting:
            conn, accepted_at = next(iter(self.waiting.items()))
            if accepted_at + timeout > now:
                break
            effects += self._close_with_error(
                conn, ErrorCode.TIMEOUT, f"no JOIN within {timeout:g} seconds")
        return effects

    def next_deadline(self) -> float | None:
        """When `tick` next has work to do (None: nobody is waiting to join)."""
        for accepted_at in self.waiting.values():  # accept order = deadline order
            return accepted_at + self.limits.join_timeout
        return None

    def announce(self, text: str, source: str = "console") -> list[Effect]:
        """The administrator's shout (console line or ADMIN_SAY): ANNOUNCE to every member."""
        return [Broadcast(codec.encode_text(Kind.ANNOUNCE, text)),
                Log("admin", f"{source} announced: {text}")]

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
            return self._query(connection, kind, payload, now) or [Send(connection.id, self.members_frame())]
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
        return [Defer(connection.id, kind, payload, now + (1 - connection.query_tokens) / rate)]

    def members_frame(self) -> bytes:
        """MEMBERS for WHO and LIST: encoded once per change, the same bytes for every asker."""
        if self._members_frame is None:
            self._members_frame = codec.encode_members(self.member_names())
        return self._members_frame

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
        key = name_key(name)
        if key in self.by_key:
            return self._error(conn, ErrorCode.NAME_TAKEN, f"the name {name} is taken")
        welcome = Send(conn, codec.encode_text(Kind.WELCOME, name))
        joined = Broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn)
        connection.name = name
        connection.tokens = 2 * self.limits.rate_limit
        connection.refilled_at = now
        self.waiting.pop(conn, None)
        self.members[conn] = connection
        self.by_key[key] = connection
        self._members_frame = None
        return [welcome, joined, Log("join", f"{name} joined")]

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
        return [Broadcast(codec.encode_message(connection.name, text), exclude=conn)]

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
        self.connections.pop(connection.id, None)
        self.waiting.pop(connection.id, None)
        return self._remove_member(connection, "left") + [Close(connection.id)]

    # ----- the administrator ---------------------------------------------------------

    def _admin_frame(self, connection: Connection, kind: int, payload: bytes) -> list[Effect]:
        conn = connection.id
        if kind not in ADMIN_KINDS:
            return self._error(conn, ErrorCode.BAD_FRAME, f"unknown admin frame kind 0x{kind:02x}")
        if kind == Kind.LIST:
            return [Send(conn, self.members_frame())]
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
        connection = self.connections.pop(conn, None)
        self.waiting.pop(conn, None)
        effects = self._error(conn, code, reason)
        if connection is not None and tell_others:
            effects += self._remove_member(connection, why or f"was disconnected ({code.name})")
        elif connection is not None:
            self._forget(connection)
        return effects + [Close(conn)]

    def _remove_member(self, connection: Connection, why: str) -> list[Effect]:
        if connection.name is None:
            return []
        self._forget(connection)
        return [Broadcast(codec.encode_text(Kind.LEFT, connection.name)), Log("leave", f"{connection.name} {why}")]

    def _forget(self, connection: Connection) -> None:
        if self.members.pop(connection.id, None) is not None:
            del self.by_key[name_key(connection.name)]
            self._members_frame = None
