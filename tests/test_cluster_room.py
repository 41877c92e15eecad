"""ClusterRoom without NATS: the room's side of the seam, frames in, effects out.

The broker is replaced by what it is to the room: a list of commands the room hands over
and a list of results the test hands back (stream events with their sequence numbers,
refused claims, the broker's state). Real NATS is in test_cluster.py; here are the
rules that need no network: nothing is delivered before the stream says so, a JOIN waits
for its claim, duplicates are dropped, a lost name closes its member.
"""

from __future__ import annotations

from capstone import codec
from capstone.cluster import events
from capstone.cluster.backend import ClusterRoom
from capstone.cluster.broker import BrokerState, Claim, ClaimRefused, Delivered, Kick, Leave, Publish, Sync, Synced
from capstone.codec import ErrorCode, Kind
from capstone.room import Broadcast, Close, Defer, Limits, Resume, Send

NOW = 100.0


class HandOver:
    """The broker as the room sees it: commands out, results in."""

    def __init__(self) -> None:
        self.commands: list = []
        self.results: list = []

    def submit(self, command) -> None:  # noqa: ANN001
        self.commands.append(command)

    def take(self, most: int) -> list:
        taken, self.results = self.results[:most], self.results[most:]
        return taken


def new_room() -> tuple[ClusterRoom, HandOver]:
    broker = HandOver()
    return ClusterRoom(Limits(rate_limit=0), broker, node="n1"), broker


def deliver(room: ClusterRoom, broker: HandOver, *results) -> list:  # noqa: ANN002
    broker.results += results
    return room.on_wakeup(NOW)


def frame(kind: int, payload: bytes | str = b"") -> bytes:
    return codec.encode(kind, payload.encode() if isinstance(payload, str) else payload)


def error_of(send: Send) -> tuple[int, str]:
    return codec.decode_error(send.data[codec.HEADER.size:])


def join(room: ClusterRoom, broker: HandOver, conn: int, name: str, seq: int) -> list:
    """conn joins: its claim goes out, and its JOINED comes back as stream event `seq`."""
    room.connect(conn, NOW)
    room.receive_data(conn, frame(Kind.JOIN, name), NOW)
    claim = broker.commands[-1]
    assert claim == Claim(claim.mid, name)
    return deliver(room, broker, Delivered(seq, events.joined(claim.mid, name)[0], 0))


def test_a_join_waits_for_its_claim_and_its_own_joined():
    room, broker = new_room()
    room.connect(1, NOW)
    effects = room.receive_data(1, frame(Kind.JOIN, "ann") + frame(Kind.WHO), NOW)
    assert effects == [Defer(1, float("inf"))]  # nothing more is read until the claim is back
    mid = broker.commands[0].mid
    effects = deliver(room, broker, Delivered(1, events.joined(mid, "ann")[0], 0))
    sends = [effect for effect in effects if isinstance(effect, Send)]
    assert sends == [Send(1, frame(Kind.WELCOME, "ann"))]
    sync = broker.commands[-1]  # the WHO behind the JOIN: first, how long is the stream now?
    assert isinstance(sync, Sync) and Resume(1) not in effects
    effects = deliver(room, broker, Synced(sync.token, 1))
    assert effects == [Send(1, frame(Kind.MEMBERS, "ann")), Resume(1)]


def test_who_and_list_wait_until_the_node_has_caught_up_with_the_stream():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    room.connect(9, NOW, admin=True)
    assert room.receive_data(9, frame(Kind.LIST), NOW) == [Defer(9, float("inf"))]
    # The stream already holds bob's JOINED (event 2), which this node has not applied yet
    assert deliver(room, broker, Synced(broker.commands[-1].token, 2)) == []
    effects = deliver(room, broker, Delivered(2, events.joined("n2.1", "bob")[0], 0))
    assert effects[-2:] == [Send(9, frame(Kind.MEMBERS, "ann\nbob")), Resume(9)]


def test_a_refused_claim_is_name_taken_and_the_connection_reads_on():
    room, broker = new_room()
    room.connect(1, NOW)
    room.receive_data(1, frame(Kind.JOIN, "ann") + frame(Kind.PING, b"x"), NOW)
    effects = deliver(room, broker, ClaimRefused(broker.commands[0].mid, "the name ann is taken"))
    assert effects[0] == Send(1, codec.encode_error(ErrorCode.NAME_TAKEN, "the name ann is taken"))
    assert effects[1:] == [Send(1, frame(Kind.PONG, b"x")), Resume(1)]


def test_a_say_is_published_not_delivered_and_comes_back_in_stream_order():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    join(room, broker, 2, "bob", seq=2)
    assert room.receive_data(1, frame(Kind.SAY, "hi"), NOW) == []  # nothing local first
    publish = broker.commands[-1]
    assert isinstance(publish, Publish) and publish.event["text"] == "hi"
    effects = deliver(room, broker, Delivered(3, publish.event, 0))
    assert effects == [Broadcast(codec.encode_message("ann", "hi"), exclude=1)]
    assert effects[0].to == (1, 2)


def test_a_duplicate_from_the_stream_is_dropped_by_sequence():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    event = events.announced("n2", "hello", 1)[0]
    assert deliver(room, broker, Delivered(2, event, 0)) != []
    assert deliver(room, broker, Delivered(2, event, 0)) == []


def test_who_lists_members_of_every_node_in_stream_order():
    room, broker = new_room()
    deliver(room, broker, Delivered(1, events.joined("n2.1", "zoe")[0], 0))
    join(room, broker, 1, "ann", seq=2)
    assert room.member_names() == ["zoe", "ann"]
    deliver(room, broker, Delivered(3, events.left("n2.1", "zoe", events.LEFT_ON_ITS_OWN)[0], 0))
    assert room.member_names() == ["ann"]


def test_a_lost_name_closes_its_member_with_shutdown_and_the_others_hear_left():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    join(room, broker, 2, "bob", seq=2)
    mid = broker.commands[0].mid
    effects = deliver(room, broker, Delivered(3, events.left(mid, "ann", events.LEFT_LOST)[0], 0))
    code, _reason = error_of(effects[0])
    assert (effects[0].conn, code) == (1, ErrorCode.SHUTDOWN)
    assert Close(1) in effects
    left = next(effect for effect in effects if isinstance(effect, Broadcast))
    assert left.data == frame(Kind.LEFT, "ann") and left.to == (2,)
    assert broker.commands[-1] == Leave(mid, "ann", quiet=True)  # the stream has its LEFT already


def test_a_closed_member_is_left_through_the_stream():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    effects = room.disconnect(1)
    assert not any(isinstance(effect, Broadcast) for effect in effects)
    assert broker.commands[-1] == Leave(broker.commands[0].mid, "ann")


def test_without_the_broker_join_and_say_are_refused_with_a_reason():
    room, broker = new_room()
    join(room, broker, 1, "ann", seq=1)
    deliver(room, broker, BrokerState(up=False))
    room.connect(2, NOW)
    refused_join = room.receive_data(2, frame(Kind.JOIN, "bob"), NOW)
    refused_say = room.receive_data(1, frame(Kind.SAY, "hi"), NOW)
    for effects, code in ((refused_join, ErrorCode.NAME_TAKEN), (refused_say, ErrorCode.RATE_LIMITED)):
        got, reason = error_of(effects[0])
        assert got == code and "broker" in reason
    deliver(room, broker, BrokerState(up=True))
    assert room.receive_data(1, frame(Kind.SAY, "hi"), NOW) == []
    assert isinstance(broker.commands[-1], Publish)


def test_the_room_reports_how_far_behind_the_stream_it_is():
    room, broker = new_room()
    behind = deliver(room, broker, Delivered(1, events.announced("n2", "old news", 1)[0], 5000))
    assert any("5000 events behind" in effect.text for effect in behind if hasattr(effect, "text"))
    in_step = deliver(room, broker, Delivered(2, events.announced("n2", "news", 2)[0], 0))
    assert any("in step with the room's stream at event #2" in effect.text
               for effect in in_step if hasattr(effect, "text"))


def test_a_kick_of_another_nodes_member_goes_through_the_broker():
    room, broker = new_room()
    deliver(room, broker, Delivered(1, events.joined("n2.7", "zoe")[0], 0))
    assert room.kick("ZOE") is not None
    assert broker.commands[-1] == Kick("n2.7", "zoe")
    assert room.kick("nobody") is None
