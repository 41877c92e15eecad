"""Checks for frames: recv_exact on real sockets fed by hostile peers, and the decoder fed
in every split there is. A wrong frame is shown as a hexdump, expected against received.
"""

from __future__ import annotations

import random
import socket
import struct
from types import ModuleType
from typing import Iterator

import pytest

from lessons.exercises import peers
from lessons.exercises.harness import compare_bytes, describe_exception
from lessons.toolkit.i18n import N_, _

HEADER = struct.Struct("!I")
PAYLOADS = [b"zhang", b"", b"\x00\x01\x02 binary \xff", "收到了".encode(), b"x" * 3000]


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def stream_of(payloads: list[bytes]) -> bytes:
    return b"".join(frame(payload) for payload in payloads)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(peer, yours): a connected Unix socket pair; your functions read from the second."""
    peer, yours = socket.socketpair()
    try:
        yield peer, yours
    finally:
        peer.close()
        yours.close()


def assert_frames(got: list[bytes], expected: list[bytes], how: str) -> None:
    """Frame by frame; the first wrong one is shown as two hexdumps. `how` is already translated."""
    assert isinstance(got, list), _("feed() should return a list of payloads; it returned {type}.").format(
        type=type(got).__name__)
    for index, (want, have) in enumerate(zip(expected, got)):
        assert have == want, _("{how}, frame {number} of {total} is wrong:").format(
            how=how, number=index + 1, total=len(expected)) + "\n" + compare_bytes(want, have)
    too_many = _("{how}, your decoder returned {got} frames; expected {expected} (it returned a frame "
                 "before all of it had arrived?).")
    too_few = _("{how}, your decoder returned {got} frames; expected {expected} (a frame that was "
                "complete was not returned, or was kept for later).")
    assert len(got) == len(expected), (too_many if len(got) > len(expected) else too_few).format(
        how=how, got=len(got), expected=len(expected))


# ----- recv_exact ------------------------------------------------------------------------


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_exact() collects bytes that arrive one per recv()"))
def test_recv_exact_gets_bytes_that_arrive_one_at_a_time(learner: ModuleType, pair) -> None:
    peer, yours = pair
    data = b"\x00\x00\x00\x05zhang"
    peers.in_background(lambda: peers.trickle(peer, yours, data))
    got = learner.recv_exact(yours, len(data))
    assert got == data, (_("with the bytes arriving one at a time, recv_exact() returned the wrong bytes:") + "\n"
                         + compare_bytes(data, got) + "\n"
                         + _("One recv() is not one message: loop until all arrived."))


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_exact() over real TCP, the peer sending one byte per send()"))
def test_recv_exact_over_tcp_with_bytes_sent_one_per_send(learner: ModuleType) -> None:
    client, server_side = peers.tcp_pair()
    try:
        data = stream_of(PAYLOADS[:3])
        peers.in_background(lambda: peers.send_bytewise(client, data))
        got = learner.recv_exact(server_side, len(data))
        assert got == data, _("recv_exact() over TCP returned the wrong bytes:") + "\n" + compare_bytes(data, got)
    finally:
        client.close()
        server_side.close()


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_exact() leaves the bytes of the next message in the socket"))
def test_recv_exact_takes_no_more_than_asked(learner: ModuleType, pair) -> None:
    peer, yours = pair
    peer.sendall(b"HEADrest of it")  # merged: two reads' worth in one send
    first = learner.recv_exact(yours, 4)
    assert first == b"HEAD", _("recv_exact(sock, 4) returned the wrong bytes:") + "\n" + compare_bytes(b"HEAD", first)
    second = learner.recv_exact(yours, 10)
    assert second == b"rest of it", (
        _("after recv_exact(sock, 4), recv_exact(sock, 10) returned the wrong bytes (did the first call "
          "read more than 4 and drop the rest? ask recv() only for what is still missing):") + "\n"
        + compare_bytes(b"rest of it", second))


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_exact() asks recv() only for the bytes still missing, not for `count` every time"))
def test_recv_exact_asks_only_for_what_is_still_missing(learner: ModuleType, pair) -> None:
    peer, yours = pair
    first, second = b"record one!!!", b"RECORD TWO!!!"  # 13 bytes each

    def part_then_rest_and_next() -> None:
        peer.sendall(first[:5])
        peers.wait_until_read(yours)  # your first recv() has taken the 5 bytes
        peer.sendall(first[5:] + second)  # the missing 8, glued to the next record

    peers.in_background(part_then_rest_and_next)
    got = learner.recv_exact(yours, 13)
    assert got == first, (
        _("5 bytes arrived, then the other 8 together with the next 13-byte record; recv_exact(sock, 13) "
          "returned the wrong bytes (after the first 5, recv() must be asked for 13 - 5 = 8 bytes, not 13: "
          "anything more is the next record's):") + "\n" + compare_bytes(first, got))
    rest = learner.recv_exact(yours, 13)
    assert rest == second, (_("the next recv_exact(sock, 13) returned the wrong bytes:") + "\n"
                            + compare_bytes(second, rest))


@pytest.mark.limit(10)
@pytest.mark.if_hangs(N_("The peer had closed: from then on recv() returns b'' at once, every time. "
                         "Check for b'' and raise EOFError."))
@pytest.mark.title(N_("recv_exact() raises EOFError when the peer half-closes mid-frame (no hang, no short read)"))
def test_recv_exact_raises_eoferror_when_the_peer_stops_mid_frame(learner: ModuleType, pair) -> None:
    peer, yours = pair
    peer.sendall(b"\x00\x00\x00\x08abc")  # a frame of 8 bytes, cut after 3
    peers.half_close(peer)
    try:
        got = learner.recv_exact(yours, 11)
    except EOFError:
        return
    pytest.fail(_("the peer sent 7 of 11 bytes and shut down its side; recv_exact() returned {got} "
                  "instead of raising EOFError. Returning fewer bytes than asked lets the caller "
                  "unpack half a record.").format(got=repr(got)), pytrace=False)


@pytest.mark.limit(10)
@pytest.mark.if_hangs(N_("The peer had reset the connection: recv() raises ConnectionResetError, or returns b'' "
                         "once the error is consumed. Let the exception out, or raise EOFError on b''."))
@pytest.mark.title(N_("recv_exact() raises (EOFError or ConnectionResetError) when the peer resets mid-frame"))
def test_recv_exact_fails_when_the_peer_resets_mid_frame(learner: ModuleType) -> None:
    client, server_side = peers.tcp_pair()
    try:
        client.sendall(b"\x00\x00\x00\x10half")
        peers.reset(client)
        try:
            got = learner.recv_exact(server_side, 20)
        except (EOFError, ConnectionResetError):
            return
        pytest.fail(_("the peer reset the connection mid-frame; recv_exact() returned {got} instead of "
                      "raising.").format(got=repr(got)), pytrace=False)
    finally:
        server_side.close()


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_frame() reads each frame of several merged into one send()"))
def test_recv_frame_reads_frames_merged_into_one_send(learner: ModuleType, pair) -> None:
    peer, yours = pair
    peers.in_background(lambda: peers.send_merged(peer, [frame(payload) for payload in PAYLOADS]))
    for index, payload in enumerate(PAYLOADS):
        got = learner.recv_frame(yours)
        assert got == payload, (_("frames merged into one send(): recv_frame() call {number} returned the "
                                  "wrong payload:").format(number=index + 1) + "\n" + compare_bytes(payload, got))


@pytest.mark.limit(15)
@pytest.mark.title(N_("recv_frame() reads a frame whose header and payload arrive one byte per recv()"))
def test_recv_frame_reads_a_frame_whose_bytes_arrive_one_at_a_time(learner: ModuleType, pair) -> None:
    peer, yours = pair
    payload = "收到了, one byte at a time".encode()
    peers.in_background(lambda: peers.trickle(peer, yours, frame(payload)))
    got = learner.recv_frame(yours)
    assert got == payload, (_("with every byte arriving on its own, recv_frame() returned the wrong payload "
                              "(read the header with recv_exact too: one recv(4) may return 1 byte):") + "\n"
                            + compare_bytes(payload, got))


# ----- FrameDecoder ----------------------------------------------------------------------


def new_decoder(learner: ModuleType, max_payload: int = 65536):
    return learner.FrameDecoder(max_payload=max_payload)


@pytest.mark.title(N_("The decoder returns a frame fed whole"))
def test_decoder_returns_one_whole_frame(learner: ModuleType) -> None:
    assert_frames(new_decoder(learner).feed(frame(b"zhang")), [b"zhang"], _("fed one whole frame"))


@pytest.mark.title(N_("The decoder gets every frame right when fed one byte at a time"))
def test_decoder_with_frames_split_at_every_byte(learner: ModuleType) -> None:
    decoder = new_decoder(learner)
    data = stream_of(PAYLOADS)
    got: list[bytes] = []
    for index in range(len(data)):
        got += decoder.feed(data[index:index + 1])
    assert_frames(got, PAYLOADS, _("fed one byte at a time"))


@pytest.mark.title(N_("The decoder returns every frame of several merged into one feed, in order"))
def test_decoder_with_frames_merged_into_one_feed(learner: ModuleType) -> None:
    assert_frames(new_decoder(learner).feed(stream_of(PAYLOADS)), PAYLOADS, _("fed 5 frames in one piece"))


@pytest.mark.title(N_("The decoder keeps half a frame until the rest arrives"))
def test_decoder_keeps_a_partial_frame_for_later(learner: ModuleType) -> None:
    decoder = new_decoder(learner)
    data = stream_of([b"first", b"second"])
    cut = len(frame(b"first")) + 6  # the whole first frame, then the second's header and 2 bytes
    assert_frames(decoder.feed(data[:cut]), [b"first"], _("fed one frame and a half"))
    assert_frames(decoder.feed(data[cut:]), [b"second"], _("then fed the rest of the second frame"))


@pytest.mark.title(N_("The decoder survives 200 frames cut at random places (seeded, so repeatable)"))
def test_decoder_with_random_splits(learner: ModuleType) -> None:
    chance = random.Random(20240501)
    payloads = [bytes(chance.randrange(256) for _byte in range(chance.choice((0, 1, 7, 300))))
                for _frame in range(200)]
    data = stream_of(payloads)
    decoder, got, start = new_decoder(learner), [], 0
    while start < len(data):
        size = chance.randint(1, 40)
        got += decoder.feed(data[start:start + size])
        start += size
    assert_frames(got, payloads, _("fed 200 frames in random pieces"))


@pytest.mark.title(N_("The decoder raises FrameTooLarge from the header alone, before any payload arrives"))
def test_decoder_rejects_an_oversized_header_at_once(learner: ModuleType) -> None:
    decoder = new_decoder(learner, max_payload=1000)
    try:
        got = decoder.feed(HEADER.pack(1001))
    except ValueError:  # FrameTooLarge is a ValueError
        return
    except MemoryError as err:
        pytest.fail(_("an oversized header made your decoder run out of memory ({error}).").format(
            error=describe_exception(err)), pytrace=False)
    pytest.fail(_("a header announcing 1001 bytes (max_payload=1000) was accepted (feed returned {got}): "
                  "raise FrameTooLarge as soon as the header is complete, or a peer can make you wait "
                  "for, and buffer, up to 4 GiB.").format(got=repr(got)), pytrace=False)


@pytest.mark.limit(15)
@pytest.mark.title(N_("The decoder behind a real TCP socket, the peer sending byte by byte and in bulk"))
def test_decoder_behind_a_real_socket(learner: ModuleType) -> None:
    client, server_side = peers.tcp_pair()
    try:
        data = stream_of(PAYLOADS)
        middle = len(data) // 2

        def hostile_peer() -> None:
            peers.send_bytewise(client, data[:middle])
            peers.send_merged(client, [data[middle:]])
            peers.half_close(client)

        peers.in_background(hostile_peer)
        decoder, got = new_decoder(learner), []
        server_side.settimeout(peers.DEADLINE)
        while chunk := server_side.recv(7):
            got += decoder.feed(chunk)
        assert_frames(got, PAYLOADS, _("behind a TCP socket read 7 bytes at a time"))
    finally:
        client.close()
        server_side.close()
