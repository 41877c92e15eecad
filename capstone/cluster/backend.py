"""`ClusterRoom`: the room when several nodes serve it, and the stream is its single sequencer.

It is the ordinary `Room` for everything local -- framing, validation, rate limits, the
join timeout, WHO/PING pacing -- and differs only where order or names are concerned:

- JOIN claims the name from the broker (an atomic KV create) and holds the connection
  (the room's Defer: nothing more is read from it) until the claim comes back;
- JOINED, MESSAGE, LEFT and ANNOUNCE are published to the room's stream, never delivered
  at once: a node delivers to its members only what comes back from the stream, in
  stream sequence order, its own members' events included. So every member of every node
  sees one order. A joiner gets WELCOME when its own JOINED comes back;
- the member list (WHO, admin list) is the stream's: every member of every node, in the
  order of their JOINED events;
- a LEFT from the stream for a member this node still serves (kicked on another node, or
  its name lost while this node was cut off) closes that member with an error;
- while the broker is unreachable, JOIN is answered with NAME_TAKEN and SAY with
  RATE_LIMITED, each with a reason that says why (PROTOCOL.md's codes: the connection stays
  open, the client may try again; docs/protocol.md).
"""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass

from capstone import codec
from capstone.cluster import events
from capstone.cluster.broker import (Broker, BrokerState, Claim, ClaimRefused, Delivered, Kick, Leave, Note, Publish,
                                     Sync, Synced)
from capstone.codec import ErrorCode, Kind
from capstone.names import name_key, normalize
from capstone.room import Connection, Defer, Effect, Limits, Log, Resume, Room, Send
from lessons.toolkit.i18n import _

WAKE_BATCH = 512  # stream events applied per wake-up, so a long replay never starves the members
LAG_WARNING = 1000  # events behind the stream worth a log line
LAG_LOG_EVERY = 5.0  # seconds between two such lines


@dataclass(frozen=True)
class Seat:
    """A member of the room, on whichever node: its member id and its name."""

    mid: str
    name: str


class ClusterRoom(Room):
    def __init__(self, limits: Limits, broker: Broker, node: str) -> None:
        super().__init__(limits)
        self.broker = broker
        self.node = node
        self.roster: dict[str, Seat] = {}  # name key -> seat, every member of the room, in join order
        self.seat_of: dict[str, str] = {}  # mid -> name key
        self.claims: dict[int, tuple[str, str]] = {}  # conn -> (mid, name): claimed, or a member, here
        self.conn_of: dict[str, int] = {}  # mid -> conn, for this node's claims and members
        self.last_seq = 0  # the last stream event applied; anything at or below it is a duplicate
        self.behind = 0  # events the stream held past the last one applied
        self.broker_up = True
        self._serials = itertools.count(1)
        self._lag_logged_at = -math.inf
        self.in_step = False  # caught up with the stream since the last lag warning
        self.reads: dict[int, tuple[int, int]] = {}  # Sync token -> (conn, stream seq to reach first)
        self._tokens = itertools.count(1)

    def wakeup_fd(self) -> int:
        return self.broker.wakeup_fd()

    def close(self, timeout: float) -> None:
        """After shutdown: give the broker up to `timeout` to publish the last LEFTs."""
        self.broker.close(timeout)

    # ----- the broker's results: the stream, claims, its state ---------------------------

    def on_wakeup(self, now: float) -> list[Effect]:
        """The broker woke the loop: apply what it handed over, in order."""
        results = self.broker.take(WAKE_BATCH)
        effects: list[Effect] = []
        for result in results:
            if isinstance(result, Delivered):
                effects += self._delivered(result, now)
            elif isinstance(result, ClaimRefused):
                effects += self._claim_refused(result, now)
            elif isinstance(result, BrokerState):
                effects.append(self._broker_state(result.up))
            elif isinstance(result, Note):
                effects.append(Log("cluster", result.text))
            elif isinstance(result, Synced):
                effects += self._synced(result, now)
        return effects + self._answer_reads(now) + self._lag_report(now)

    def _delivered(self, delivered: Delivered, now: float) -> list[Effect]:
        if delivered.seq <= self.last_seq:  # delivered again after a reconnection
            return []
        self.last_seq, self.behind = delivered.seq, delivered.pending
        event = delivered.event
        if event is None:
            return []
        kind = event["type"]
        if kind == events.JOIN:
            return self._on_joined(str(event.get("mid")), str(event.get("name")), now)
        if kind == events.SAY:
            return self._on_said(str(event.get("mid")), str(event.get("text")))
        if kind == events.LEFT:
            return self._on_left(str(event.get("mid")), str(event.get("why")))
        if kind == events.ANNOUNCE:
            return [self._broadcast(codec.encode_text(Kind.ANNOUNCE, str(event.get("text"))))]
        return []

    def _on_joined(self, mid: str, name: str, now: float) -> list[Effect]:
        key = name_key(name)
        effects: list[Effect] = []
        holder = self.roster.get(key)
        if holder is not None and holder.mid == mid:  # published twice, further apart than de-duplication
            return []
        if holder is not None:  # its lease ran out and the name changed hands:
            effects += self._on_left(holder.mid, events.LEFT_LOST)  # the old holder leaves first, for all
        self.roster[key] = Seat(mid, name)
        self.seat_of[mid] = key
        self._members_changed()
        connection = self.connections.get(self.conn_of.get(mid, -1))
        if connection is None:  # another node's member (or ours, gone while its JOINED travelled)
            return effects + [self._broadcast(codec.encode_text(Kind.JOINED, name)),
                              Log("join", _("{name} joined on another node").format(name=name))]
        connection.held = None
        return effects + self._welcome(connection, name, now) + self._read_on(connection, now)

    def _on_said(self, mid: str, text: str) -> list[Effect]:
        key = self.seat_of.get(mid)
        if key is None:  # its LEFT came first (a lost name): one order drops it everywhere
            return []
        return [self._broadcast(codec.encode_message(self.roster[key].name, text), exclude=self.conn_of.get(mid))]

    def _on_left(self, mid: str, why: str) -> list[Effect]:
        key = self.seat_of.pop(mid, None)
        if key is None:  # already gone: a second LEFT outside JetStream's de-duplication window
            return []
        seat = self.roster.pop(key)
        self._members_changed()
        effects: list[Effect] = []
        conn = self.conn_of.pop(mid, None)
        if conn is not None:
            del self.claims[conn]
            if conn in self.connections:  # ours and still here: kicked elsewhere, or its name lost
                self.broker.submit(Leave(mid, seat.name, quiet=True))
                effects += self._close_with_error(conn, *self._why_closed(why, seat.name), tell_others=False)
        effects.append(self._broadcast(codec.encode_text(Kind.LEFT, seat.name)))
        closed_here_before = conn is None and mid.startswith(f"{self.node}.")  # and logged then, with why
        if not closed_here_before:
            effects.append(Log("leave", f"{seat.name} {self._why_text(why)}"))
        return effects

    @staticmethod
    def _why_closed(why: str, name: str) -> tuple[ErrorCode, str]:
        if why == events.LEFT_KICKED:
            return ErrorCode.KICKED, "the administrator removed you"
        return ErrorCode.SHUTDOWN, (f"this server lost touch with the room long enough for your name {name} "
                                    "to expire; join again")

    @staticmethod
    def _why_text(why: str) -> str:
        if why == events.LEFT_KICKED:
            return _("was kicked by the administrator")
        if why == events.LEFT_LOST:
            return _("was lost with its node (the name's lease ran out)")
        return _("left on another node")

    def _claim_refused(self, refused: ClaimRefused, now: float) -> list[Effect]:
        conn = self.conn_of.pop(refused.mid, None)
        if conn is None:  # closed while the claim travelled
            return []
        del self.claims[conn]
        connection = self.connections[conn]
        connection.held = None
        return self._error(conn, ErrorCode.NAME_TAKEN, refused.reason) + self._read_on(connection, now)

    def _members_reply(self, connection: Connection) -> list[Effect]:
        """WHO and LIST answer for the whole room, so first the node catches up with the stream
        as it is now: a member who joined on another node a moment ago is listed too. The
        connection waits meanwhile, as for its JOIN."""
        if not self.broker_up:
            return super()._members_reply(connection)
        token = next(self._tokens)
        self.reads[token] = (connection.id, -1)  # -1: the stream's length is not known yet
        connection.held = (Kind.WHO, b"")
        self.broker.submit(Sync(token))
        return [Defer(connection.id, math.inf)]

    def _synced(self, synced: Synced, now: float) -> list[Effect]:
        if synced.token in self.reads:
            conn, _unknown = self.reads[synced.token]
            self.reads[synced.token] = (conn, synced.seq)
        return []

    def _answer_reads(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for token, (conn, seq) in list(self.reads.items()):
            if 0 <= seq <= self.last_seq or not self.broker_up:
                del self.reads[token]
                connection = self.connections.get(conn)
                if connection is not None:  # not closed while it waited
                    connection.held = None
                    effects += [Send(conn, self.members_frame())] + self._read_on(connection, now)
        return effects

    def _read_on(self, connection: Connection, now: float) -> list[Effect]:
        """The claim is settled: the frames that waited behind the JOIN, then read again."""
        effects = self._frames(connection, now)
        if connection.held is None and connection.id in self.connections:
            effects.append(Resume(connection.id))
        return effects

    def _broker_state(self, up: bool) -> Log:
        self.broker_up = up
        if up:
            return Log("cluster", _("in touch with the message broker again: JOIN and SAY work again"))
        return Log("cluster", _("lost the message broker: refusing JOIN and SAY while reconnecting"))

    def _lag_report(self, now: float) -> list[Effect]:
        """How far behind the stream the loop is: a line when it first catches up (after
        reading the room's history at start), then one every few seconds while it lags."""
        if self.behind == 0 and not self.in_step and self.last_seq:
            self.in_step = True
            return [Log("cluster", _("in step with the room's stream at event #{seq}: {count} in the room").format(
                seq=self.last_seq, count=len(self.roster)))]
        if self.behind < LAG_WARNING or now - self._lag_logged_at < LAG_LOG_EVERY:
            return []
        self._lag_logged_at = now
        self.in_step = False
        return [Log("cluster", _("{behind} events behind the room's stream (applied up to #{seq})").format(
            behind=self.behind, seq=self.last_seq))]

    # ----- where the room's own rules give way to the stream -----------------------------

    def _admit(self, connection: Connection, name: str, now: float) -> list[Effect]:
        conn = connection.id
        if not self.broker_up:
            return self._error(conn, ErrorCode.NAME_TAKEN, "the room cannot check names now: this server "
                               "lost its message broker; try again soon")
        mid = f"{self.node}.{next(self._serials)}"
        self.claims[conn] = (mid, name)
        self.conn_of[mid] = conn
        connection.held = (Kind.JOIN, b"")  # the room reads nothing more from it until the claim is back
        self.broker.submit(Claim(mid, name))
        return [Defer(conn, math.inf)]

    def _said(self, connection: Connection, text: str) -> list[Effect]:
        if not self.broker_up:
            connection.tokens += 1  # refused: it used no token
            return self._error(connection.id, ErrorCode.RATE_LIMITED, "this server lost its message broker: "
                               "your message was not sent; try again soon")
        mid, name = self.claims[connection.id]
        self.broker.submit(Publish(*events.said(mid, name, text, next(self._serials))))
        return []

    def announce(self, text: str, source: str = "console") -> list[Effect]:
        if not self.broker_up:
            return [Log("admin", _("not announced, the message broker is unreachable: {text}").format(text=text))]
        self.broker.submit(Publish(*events.announced(self.node, text, next(self._serials))))
        return [Log("admin", _("{source} announced: {text}").format(source=source, text=text))]

    def kick(self, wanted: str) -> list[Effect] | None:
        """Any member of the room, on any node: its LEFT goes to the stream, and its own node
        closes it with ERROR KICKED when that LEFT comes back."""
        seat = self.roster.get(name_key(normalize(wanted)))
        if seat is None:
            return None
        self.broker.submit(Kick(seat.mid, seat.name))
        return [Log("admin", _("asked the room to remove {name}").format(name=seat.name))]

    def member_names(self) -> list[str]:
        return [seat.name for seat in self.roster.values()]

    def _forget_connection(self, conn: int) -> Connection | None:
        """Closed here, whatever the reason: the room hears its LEFT through the stream."""
        connection = super()._forget_connection(conn)
        claim = self.claims.pop(conn, None)
        if claim is not None:
            mid, name = claim
            del self.conn_of[mid]
            self.broker.submit(Leave(mid, name))
        return connection

    def _remove_member(self, connection: Connection, why: str) -> list[Effect]:
        if connection.name is None:
            return []
        self._forget(connection)
        return [Log("leave", f"{connection.name} {why}")]  # LEFT itself comes back from the stream

    def _forget(self, connection: Connection) -> None:
        if self.members.pop(connection.id, None) is not None:
            self._members_changed()


def open_cluster_room(urls: list[str], room: str, limits: Limits, lease: float, replicas: int = 1) -> ClusterRoom:
    """Connect this node to the room's broker (UserError, exit 2, when it is unreachable)."""
    node = uuid.uuid4().hex[:12]
    broker = Broker(urls, room, node, lease, replicas)
    broker.start()
    return ClusterRoom(limits, broker, node)
