"""struct_recv.py from the notes, corrected: receive `i5sf` records over TCP.

The notes' receiver does `data = conn.recv(1024)` and unpacks `data` as one record.
TCP does not keep message boundaries: one recv() can return two records glued
together or a third of one, and unpack then raises struct.error. Three receivers:
- naive:  the notes' logic, kept so you can watch it fail (`--naive`);
- fixed:  every record is 13 bytes, so read exactly 13 with `recv_exact` (the default);
- length: each record travels behind a 4-byte length; `FrameDecoder` cuts the stream
  into frames whatever the recv() sizes (needed when messages vary in size).
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Annotated, Callable

import typer

from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, RunFailure, UserError, address_text, open_listener
from lessons.toolkit.exits import interrupt_when_output_closes, start_fresh_line
from lessons.toolkit.framing import LENGTH_HEADER, FrameDecoder, FrameTooLarge
from lessons.toolkit.sockio import IncompleteRead, recv_exact
from lessons.toolkit.i18n import _, ngettext
from lessons.toolkit.narrate import Narrator
from lessons.toolkit.record import (NOTES_RECORD, SAMPLES, WIRE_RECORD, Record, byte_count, decode, encode, hex_bytes,
                            sample_records, show)
from lessons.struct_send import Framing, Mode, Narrate, connect, send_records

RECV_SIZE = 1024  # the notes' recv(1024)
IDLE_TIMEOUT = 30.0  # a sender that goes quiet this long is dropped, so it cannot hold the receiver


@dataclass
class Outcome:
    """What one connection delivered, and why the receiver stopped early if it did."""

    peer: str
    records: list[Record] = field(default_factory=list)
    recv_sizes: list[int] = field(default_factory=list)
    error: str | None = None


class NarratedReader:
    """A socket whose recv() calls are counted and narrated: the lesson is in their sizes."""

    def __init__(self, sock: socket.socket, outcome: Outcome, narrate: Narrate) -> None:
        self.sock = sock
        self.outcome = outcome
        self.narrate = narrate

    def recv(self, size: int) -> bytes:
        data = self.sock.recv(size)
        if data:
            self.outcome.recv_sizes.append(len(data))
            self.narrate("recv", f"recv() -> {byte_count(len(data))}: {hex_bytes(data)}")
        return data

    def got(self, record: Record) -> None:
        self.outcome.records.append(record)
        self.narrate("recv", f"record {show(record)}")


def receive_naive(reader: NarratedReader) -> None:
    """The notes' receiver: whatever one recv(1024) returns is taken to be one record."""
    while data := reader.recv(RECV_SIZE):
        try:
            record = decode(data)
        except struct.error as err:
            reader.outcome.error = (_("one recv() returned {got} bytes but a record is {size}: "
                                      "struct.error: {err}").format(got=len(data), size=WIRE_RECORD.size, err=err))
            discard_rest(reader.sock)
            return
        reader.got(record)


def discard_rest(sock: socket.socket) -> None:
    """Read and drop the rest of the stream, so the sender finishes instead of hitting a reset."""
    while sock.recv(RECV_SIZE):
        pass


def receive_fixed(reader: NarratedReader) -> None:
    """Every record is WIRE_RECORD.size bytes: read exactly that many, as often as it takes."""
    while True:
        try:
            data = recv_exact(reader, WIRE_RECORD.size)  # type: ignore[arg-type]  # any object with recv()
        except IncompleteRead as cut:
            if cut.received:  # 0 bytes is a clean end between records
                reader.outcome.error = _("the sender closed in the middle of a record: {cut}").format(cut=cut)
            return
        reader.got(decode(data))


def receive_length_prefixed(reader: NarratedReader) -> None:
    """Each record behind a length header: feed recv()'s bytes to a FrameDecoder, take whole frames."""
    decoder = FrameDecoder(LENGTH_HEADER, max_payload=WIRE_RECORD.size)
    while data := reader.recv(RECV_SIZE):
        decoder.feed(data)
        try:
            for frame in decoder:
                reader.got(decode(frame.payload))
        except (FrameTooLarge, struct.error) as err:
            reader.outcome.error = _("not a record frame: {err}").format(err=err)
            return
    if decoder.pending:
        reader.outcome.error = _("the sender closed with {pending} bytes of an unfinished frame").format(pending=decoder.pending)


Receive = Callable[[NarratedReader], None]
RECEIVER_HELP = {
    "naive": _("the notes' code, one recv(1024) taken as one record"),
    "fixed": _("recv_exact({size}) per record").format(size=WIRE_RECORD.size),
    "length": _("a FrameDecoder cuts length-prefixed frames out of the stream"),
}
RECEIVERS: dict[str, Receive] = {
    "naive": receive_naive,
    "fixed": receive_fixed,
    "length": receive_length_prefixed,
}


def serve_one(listener: socket.socket, receiver: str, narrate: Narrate) -> Outcome:
    """Accept one sender and read it to the end; its mistakes end its connection, not the server."""
    conn, address = listener.accept()
    outcome = Outcome(peer=address_text(address))
    narrate("accept", _("connection from {peer}, {receiver} receiver").format(peer=outcome.peer, receiver=receiver))
    with conn:
        conn.settimeout(IDLE_TIMEOUT)
        try:
            RECEIVERS[receiver](NarratedReader(conn, outcome, narrate))
        except TimeoutError:
            outcome.error = _("the sender went quiet for {seconds:.0f} s without finishing").format(seconds=IDLE_TIMEOUT)
        except ConnectionError as err:
            outcome.error = _("the connection failed: {reason}").format(reason=err.strerror or err)
    report(outcome, receiver, narrate)
    return outcome


def report(outcome: Outcome, receiver: str, narrate: Narrate) -> None:
    if outcome.error:
        narrate("error", _("{receiver} receiver gave up on {peer}: {error}").format(
            receiver=receiver, peer=outcome.peer, error=outcome.error))
        return
    sizes = "+".join(map(str, outcome.recv_sizes)) or "0"
    count = len(outcome.records)
    narrate("summary", ngettext("{count} record from {peer}; recv() returned {sizes} bytes",
                                "{count} records from {peer}; recv() returned {sizes} bytes", count).format(
                                    count=count, peer=outcome.peer, sizes=sizes))


def receiver_name(naive: bool, framing: Framing) -> str:
    if naive and framing is Framing.length:
        raise UserError(_("--naive reads bare records as the notes do; it cannot be combined with --framing length."))
    return "naive" if naive else framing.value


def main(
    host: Annotated[str, typer.Option(help=_("Address to listen on."))] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help=_("Port to listen on (0 picks a free one)."))] = DEFAULT_PORT,
    naive: Annotated[bool, typer.Option("--naive", help=_("Use the notes' receiver: one recv(1024) = one record."))] = False,
    framing: Annotated[Framing, typer.Option(help=_("fixed: read 13 bytes per record; length: "
                                                    "records behind a 4-byte length (match the "
                                                    "sender)."))] = Framing.fixed,
    once: Annotated[bool, typer.Option("--once", help=_("Exit after the first sender."))] = False,
    demo: Annotated[bool, typer.Option("--demo", help=_("Run sender and receivers together, narrated, and exit."))] = False,
) -> None:
    """Receive the notes' i5sf records, the notes' way (--naive) or correctly."""
    narrate = Narrator()
    if demo:
        run_demo(narrate)
        return
    receiver = receiver_name(naive, framing)
    with open_listener(host, port) as listener:
        try:
            interrupt_when_output_closes()  # `| head -1` ends a receiver that waits for senders
            print(f"listening on {address_text(listener.getsockname())}", flush=True)  # the line scripts wait for
            narrate("listen", f"{receiver} receiver: {RECEIVER_HELP[receiver]}")
            while True:
                serve_one(listener, receiver, narrate)
                if once:
                    return
        except KeyboardInterrupt:  # a receiver runs until stopped: Ctrl-C is how, so exit 0
            start_fresh_line()
            narrate("close", _("stopped"))


# ---------------------------------------------------------------- the narrated demo

@dataclass(frozen=True)
class Scenario:
    mode: Mode
    receiver: str
    count: int
    why: str

    @property
    def framing(self) -> Framing:
        return Framing.length if self.receiver == "length" else Framing.fixed


SCENARIOS = (
    Scenario(Mode.plain, "naive", 1, _("the notes' program: one record, one send(), one recv()")),
    Scenario(Mode.merged, "naive", 2, _("two records in one send(): one recv() returns both")),
    Scenario(Mode.split, "naive", 2, _("a record in 5-byte pieces: one recv() returns a piece")),
    Scenario(Mode.plain, "fixed", 1, _("the fix: recv_exact(13) per record")),
    Scenario(Mode.merged, "fixed", 2, _("recv_exact takes 13 bytes and leaves the rest for the next record")),
    Scenario(Mode.split, "fixed", 2, _("recv_exact loops until the 13 bytes are there")),
    Scenario(Mode.split, "length", 2, _("the general fix: a 4-byte length before each record, and a FrameDecoder")),
)


def explain_record(narrate: Narrate) -> None:
    """The three surprises of `i5sf`, computed here and now rather than quoted."""
    first = SAMPLES[0]
    padding = NOTES_RECORD.size - WIRE_RECORD.size
    narrate("demo", _("struct.Struct('i5sf').size == {size}, struct.Struct('!i5sf').size == "
                      "{wire_size}: native alignment adds {padding} padding bytes before the float").format(
        size=NOTES_RECORD.size, wire_size=WIRE_RECORD.size, padding=padding))
    narrate("demo", f"  'i5sf'  {hex_bytes(NOTES_RECORD.pack(*first))}")
    narrate("demo", f"  '!i5sf' {hex_bytes(WIRE_RECORD.pack(*first))}")
    for sent in SAMPLES:
        back = decode(encode(sent))
        narrate("demo", _("sent name={name!r} height={height!r}  ->  came back name={back_name!r} "
                          "height={back_height!r}").format(
            name=sent.name, height=sent.height, back_name=back.name, back_height=back.height))
    narrate("demo", _("5s pads short names with NUL bytes and silently cuts long ones; a 32-bit "
                      "float keeps 1.75 exactly but not 3.14 or 1.8"))


def run_scenario(listener: socket.socket, scenario: Scenario, narrate: Narrate) -> tuple[Outcome, list[Record]]:
    """Receiver in a thread, sender here, on a real loopback connection."""
    results: list[Outcome] = []
    thread = threading.Thread(target=lambda: results.append(serve_one(listener, scenario.receiver, narrate)),
                              daemon=True)
    thread.start()
    records = sample_records(scenario.count)
    host, port = listener.getsockname()[:2]
    with connect(host, port) as sock:
        send_records(sock, records, scenario.mode, scenario.framing, narrate)
    thread.join(timeout=IDLE_TIMEOUT)
    if not results:
        raise RunFailure(_("the demo's receiver did not finish; see the messages above."))
    return results[0], records


def delivered(outcome: Outcome, records: list[Record]) -> bool:
    """Every record arrived, byte for byte (compared packed: NUL padding and float rounding included)."""
    return outcome.error is None and [encode(r) for r in outcome.records] == [encode(r) for r in records]


def run_demo(narrate: Narrate) -> None:
    rule = getattr(narrate, "rule", lambda title: narrate("demo", title))
    rule(_("The notes' record: struct i5sf"))
    explain_record(narrate)
    verdicts = []
    with open_listener(DEFAULT_HOST, 0) as listener:
        for scenario in SCENARIOS:
            rule(f"{scenario.mode.value} sender, {scenario.receiver} receiver")
            narrate("demo", scenario.why)
            outcome, records = run_scenario(listener, scenario, narrate)
            verdicts.append((scenario, delivered(outcome, records)))
    rule("Summary")
    for scenario, ok in verdicts:
        result = _("all records arrived") if ok else _("FAILED")
        if not ok and scenario.receiver == "naive":
            result += _(" (the notes' bug)")
        narrate("summary", f"{scenario.mode.value:>6} sender, {scenario.receiver:>6} receiver: {result}")
    broken_fixes = [s for s, ok in verdicts if not ok and s.receiver != "naive"]
    if broken_fixes:
        raise RunFailure(_("a corrected receiver lost records, which should never happen; please report it."))
    narrate("summary", _("one recv() is not one record: read exactly a record's size, or frame each message"))
