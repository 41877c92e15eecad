"""A line client for the echo servers, so that `nc` is optional.

Interactive: each line you type is sent (with its newline, as nc does) and the answer is
printed once all of it is back. Scripted: `--send TEXT --count N` sends TEXT N times,
waits for each answer and exits 0. It connects to 127.0.0.1 by default: the notes'
clients connected to 0.0.0.0, which is a server's "every address", not a place to go.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Annotated, Optional

import typer

from lessons.toolkit.common import (DEFAULT_HOST, DEFAULT_PORT, RunFailure, UserError, address_text, check_client_host,
                            printable_bytes)
from lessons.echo_driver import preview, read_answer
from lessons.toolkit.exits import interrupt_when_output_closes, start_fresh_line
from lessons.toolkit.i18n import ngettext
from lessons.toolkit.i18n import _

def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Connect, or explain in one sentence why not."""
    check_client_host(host)
    where = address_text((host, port))
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise UserError(_("nothing is listening on {where}; start a server first, e.g. `learn run "
                          "poll-server`.").format(where=where)) from None
    except socket.gaierror as err:
        raise UserError(_("cannot resolve host {host!r}: {reason}.").format(host=host, reason=err.strerror)) from None
    except TimeoutError:
        raise UserError(_("{where} did not answer within {timeout} s.").format(where=where, timeout=timeout)) from None
    except OSError as err:
        raise UserError(_("cannot connect to {where}: {reason}.").format(where=where, reason=err.strerror or err)) from None


def send_and_wait(conn: socket.socket, message: bytes, timeout: float) -> bytes:
    """Send one message and return its whole answer; a closed connection is a RunFailure."""
    try:
        conn.sendall(message)
    except OSError:
        raise RunFailure(_("the server closed the connection.")) from None
    answer = read_answer(conn, message, timeout)
    if answer.closed:
        raise RunFailure(_("the server closed the connection before answering."))
    if not answer.complete:
        got = f"only {len(answer.data)} bytes ('{preview(answer.data)}')" if answer.data else "nothing"
        raise RunFailure(_("no complete answer within {timeout} s, {got} came back.").format(timeout=timeout, got=got))
    return answer.data


def scripted(conn: socket.socket, text: str, count: int, timeout: float) -> None:
    message = text.encode()
    started = time.perf_counter()
    for number in range(1, count + 1):
        answer = send_and_wait(conn, message, timeout)
        print(f"answer {number}/{count}: {printable_bytes(answer)}", flush=True)
    elapsed_ms = (time.perf_counter() - started) * 1000
    summary = ngettext("{count} answer in {total:.1f} ms ({each:.2f} ms per round trip)",
                       "{count} answers in {total:.1f} ms ({each:.2f} ms per round trip)", count)
    print(summary.format(count=count, total=elapsed_ms, each=elapsed_ms / count), flush=True)


def interactive(conn: socket.socket, timeout: float) -> None:
    print(_("connected to {address}; type a line and press Enter, Ctrl-D to quit.").format(
        address=address_text(conn.getpeername())), file=sys.stderr, flush=True)
    interrupt_when_output_closes()  # `| head -1`: stop now, not at the next line typed
    try:
        for line in sys.stdin:
            answer = send_and_wait(conn, line.encode(), timeout)
            print(printable_bytes(answer.removesuffix(b"\n")), flush=True)
    except KeyboardInterrupt:  # Ctrl-C ends the session like Ctrl-D: exit 0
        start_fresh_line()


def main(
    host: Annotated[str, typer.Option(help=_("The server's address."))] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help=_("The server's port."))] = DEFAULT_PORT,
    send: Annotated[Optional[str], typer.Option(help=_("Send TEXT instead of reading lines from stdin."))] = None,
    count: Annotated[int, typer.Option(min=1, help=_("With --send: how many times to send it."))] = 1,
    timeout: Annotated[float, typer.Option(min=0.1, help=_("Seconds to wait for a connection or an answer."))] = 5.0,
) -> None:
    """Talk to an echo server: lines from stdin, or --send TEXT --count N."""
    if count != 1 and send is None:
        raise UserError(_("--count needs --send TEXT."))
    if send == "":
        raise UserError(_("--send needs some text: an empty message gets no answer."))
    with connect(host, port, timeout) as conn:
        if send is None:
            interactive(conn, timeout)
        else:
            scripted(conn, send, count, timeout)
