"""struct_send.py from the notes, corrected: pack `i5sf` records and send them over TCP.

Three ways to send, to show that TCP keeps bytes in order but not message boundaries:
- plain:  one `sendall` per record (the notes' program, with one record);
- merged: every record in a single `sendall`, as happens when a sender writes faster
  than the receiver reads (here on purpose, so it happens every time);
- split:  the bytes in small pieces with pauses, as a slow or congested path delivers them.
The receiver (`learn run struct-recv`) must cope with all three; the notes' receiver
copes with the first only.
"""

from __future__ import annotations

import socket
import time
from enum import Enum
from typing import Annotated, Callable, Optional

import typer

from lessons.toolkit.common import (DEFAULT_HOST, DEFAULT_PORT, RunFailure, UserError, address_text, check_client_host,
                            run_instead)
from lessons.toolkit.framing import encode_frame
from lessons.toolkit.i18n import _, ngettext
from lessons.toolkit.narrate import Narrator
from lessons.toolkit.record import Record, byte_count, encode, hex_bytes, sample_records, show

# 5 does not divide 13, so no piece of the split stream ends on a record boundary by luck.
PIECE_SIZE = 5
DEFAULT_PAUSE = 0.05
MAX_COUNT = 1000

Narrate = Callable[[str, str], None]


class Mode(str, Enum):
    plain = "plain"
    merged = "merged"
    split = "split"


class Framing(str, Enum):
    fixed = "fixed"  # records back to back; the receiver knows each is 13 bytes
    length = "length"  # each record behind a 4-byte length header (lessons.toolkit.framing)


def wire_bytes(record: Record, framing: Framing) -> bytes:
    data = encode(record)
    return encode_frame(data) if framing is Framing.length else data


def connect(host: str, port: int) -> socket.socket:
    """A TCP connection with Nagle off, so each small piece leaves at once."""
    check_client_host(host)
    where = address_text((host, port))
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except ConnectionRefusedError:
        raise UserError(_("nothing is listening on {where}; start `learn run struct-recv` first.")
                        .format(where=where)) from None
    except socket.gaierror as err:
        raise UserError(_("cannot resolve host {host!r}: {reason}.").format(host=host, reason=err.strerror)) from None
    except TimeoutError:
        raise UserError(_("{where} did not answer within 10 s.").format(where=where)) from None
    except OSError as err:
        raise UserError(_("cannot connect to {where}: {reason}.").format(where=where,
                                                                         reason=err.strerror or err)) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def chunks_to_send(records: list[Record], mode: Mode, framing: Framing) -> list[bytes]:
    """What each send() call will carry, decided before any I/O."""
    encoded = [wire_bytes(record, framing) for record in records]
    if mode is Mode.plain:
        return encoded
    stream = b"".join(encoded)
    if mode is Mode.merged:
        return [stream]
    return [stream[at:at + PIECE_SIZE] for at in range(0, len(stream), PIECE_SIZE)]


def send_records(sock: socket.socket, records: list[Record], mode: Mode, framing: Framing,
                 narrate: Narrate, pause: float = DEFAULT_PAUSE) -> int:
    """Send `records` the `mode` way; returns the number of bytes sent."""
    for record in records:
        narrate("send", f"record {show(record)} -> {len(wire_bytes(record, framing))} bytes")
    sent = 0
    for index, chunk in enumerate(chunks_to_send(records, mode, framing)):
        if mode is Mode.split and index:
            time.sleep(pause)  # the pause is the point: the receiver sees each piece alone
        narrate("send", f"send() {byte_count(len(chunk))}: {hex_bytes(chunk)}")
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            raise RunFailure(_("the receiver closed the connection after {sent} bytes.").format(sent=sent)) from None
        sent += len(chunk)
    return sent


def record_count(mode: Mode, count: Optional[int]) -> int:
    """The notes send one record; merging and splitting need at least two to show anything."""
    if count is None:
        return 1 if mode is Mode.plain else 2
    if not 1 <= count <= MAX_COUNT:
        raise UserError(_("--count must be between 1 and {most}.").format(most=MAX_COUNT))
    return count


def main(
    host: Annotated[str, typer.Option(help=_("The receiver's address."))] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help=_("The receiver's port."))] = DEFAULT_PORT,
    mode: Annotated[Mode, typer.Option(help=_("plain: a send per record; merged: all in one send; "
                                              "split: small pieces with pauses."))] = Mode.plain,
    count: Annotated[Optional[int], typer.Option(help=_("Records to send (default 1 for plain, 2 otherwise)."))] = None,
    framing: Annotated[Framing, typer.Option(help=_("fixed: bare 13-byte records; length: each "
                                                    "behind a 4-byte length (use the same on the "
                                                    "receiver)."))] = Framing.fixed,
    pause: Annotated[float, typer.Option(help=_("Seconds between pieces in split mode."))] = DEFAULT_PAUSE,
    demo: Annotated[bool, typer.Option("--demo", help=_("Run sender and receivers together, "
                                                        "narrated (same as `learn run struct-recv "
                                                        "--demo`)."))] = False,
) -> None:
    """Pack the notes' i5sf records and send them to struct-recv."""
    if demo:  # the demo is the receiver's: it runs this sender against each of its receivers
        run_instead("run", "struct-recv", "--demo")
    if not 0 <= pause <= 5:
        raise UserError(_("--pause must be between 0 and 5 seconds."))
    records = sample_records(record_count(mode, count))
    narrate = Narrator()
    with connect(host, port) as sock:
        narrate("send", _("connected to {address}, mode {mode}, framing {framing}").format(
            address=address_text((host, port)), mode=mode.value, framing=framing.value))
        sent = send_records(sock, records, mode, framing, narrate, pause)
    narrate("summary", sent_summary(len(records), sent))


def sent_summary(records: int, sent: int) -> str:
    return ngettext("sent {count} record, {bytes} bytes, then closed the connection",
                    "sent {count} records, {bytes} bytes, then closed the connection", records).format(
                        count=records, bytes=sent)
