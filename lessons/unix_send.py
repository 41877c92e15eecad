"""unix_send.py from the notes, corrected: send a message over a Unix domain socket.

A Unix domain socket is addressed by a file path (or, on Linux, by an abstract name)
instead of an IP address and a port; the bytes never leave the kernel. The sender
connects, sends its message, then half-closes its side (`shutdown(SHUT_WR)`): that
end-of-file tells the receiver where the message ends, and the sender can still
read the receiver's reply.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from lessons.toolkit.common import RunFailure, UserError, platform_name, printable_bytes, run_instead
from lessons.toolkit.narrate import Narrator
from lessons.toolkit.unixsock import check_path_length, private_dir
from lessons.toolkit.i18n import _

DEFAULT_FILE_NAME = "unix-lesson.sock"
DEFAULT_MESSAGE = "你好, hello over a Unix domain socket"
MAX_REPLY = 4096
TIMEOUT = 10.0

Narrate = Callable[[str, str], None]


@dataclass(frozen=True)
class Endpoint:
    """Where the receiver listens: a socket file, or a name in Linux's abstract namespace."""

    path: Path | None = None
    abstract: str | None = None

    @property
    def address(self) -> str | bytes:
        """What bind() and connect() take: a path, or a name behind a NUL byte."""
        if self.abstract is not None:
            return b"\0" + self.abstract.encode()
        return str(self.path)

    def __str__(self) -> str:
        return f"@{self.abstract}" if self.abstract is not None else str(self.path)


def resolve_endpoint(path: Optional[Path], abstract: Optional[str]) -> Endpoint:
    """The options as an Endpoint; the default is a file in the user's private directory."""
    if path is not None and abstract is not None:
        raise UserError(_("give either --path or --abstract, not both."))
    if abstract is not None:
        if platform_name() != "linux":
            raise UserError(_("the abstract namespace exists only on Linux; use --path instead."))
        if not abstract:
            raise UserError(_("--abstract needs a non-empty name."))
        return Endpoint(abstract=abstract)
    chosen = path.absolute() if path is not None else private_dir() / DEFAULT_FILE_NAME  # absolute: clear in messages
    check_path_length(chosen)
    return Endpoint(path=chosen)


def connect_unix(endpoint: Endpoint) -> socket.socket:
    """Connect, turning each way it can fail into the sentence that explains it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(endpoint.address)
    except FileNotFoundError:
        sock.close()
        raise UserError(_("there is no socket file at {endpoint}; start `learn run unix-recv` "
                          "first.").format(endpoint=endpoint)) from None
    except ConnectionRefusedError:
        sock.close()
        raise UserError(_("nothing accepts connections on {endpoint} (a stale file, or no "
                          "receiver); start `learn run unix-recv` first.").format(endpoint=endpoint)) from None
    except PermissionError:
        sock.close()
        raise UserError(_("not allowed to connect to {endpoint}: the socket file or its directory "
                          "is closed to your user.").format(endpoint=endpoint)) from None
    except (TimeoutError, BlockingIOError):
        sock.close()
        raise UserError(_("{endpoint} is busy and did not accept the connection within "
                          "{seconds:.0f} s.").format(endpoint=endpoint, seconds=TIMEOUT)) from None
    return sock


def send_message(sock: socket.socket, message: bytes, narrate: Narrate) -> bytes:
    """Send, half-close so the receiver sees where the message ends, then read its reply."""
    narrate("send", f"{len(message)} bytes: {printable_bytes(message)}")
    try:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        reply = read_reply(sock)
    except (BrokenPipeError, ConnectionResetError):
        raise RunFailure(_("the receiver closed the connection before answering.")) from None
    except TimeoutError:
        raise RunFailure(_("the receiver did not answer within {seconds:.0f} s.").format(seconds=TIMEOUT)) from None
    narrate("recv", f"reply: {printable_bytes(reply)}")
    return reply


def read_reply(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while size < MAX_REPLY and (chunk := sock.recv(MAX_REPLY - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def main(
    path: Annotated[Optional[Path], typer.Option(help=_("The receiver's socket file (default: "
                                                        "<tmp>/learn-<uid>/unix-lesson.sock)."))] = None,
    abstract: Annotated[Optional[str], typer.Option(help=_("Connect to this name in Linux's abstract namespace instead."))] = None,
    message: Annotated[str, typer.Option(help=_("The text to send."))] = DEFAULT_MESSAGE,
    demo: Annotated[bool, typer.Option("--demo", help=_("Run receiver and sender together, "
                                                        "narrated (same as `learn run unix-recv "
                                                        "--demo`)."))] = False,
) -> None:
    """Send a message to unix-recv over a Unix domain socket."""
    if demo:  # the demo is the receiver's: it runs this sender in a second process
        run_instead("run", "unix-recv", "--demo")
    narrate = Narrator()
    endpoint = resolve_endpoint(path, abstract)
    with connect_unix(endpoint) as sock:
        narrate("send", _("connected to {endpoint} as pid {pid} uid {uid} gid {gid}").format(
            endpoint=endpoint, pid=os.getpid(), uid=os.getuid(), gid=os.getgid()))
        send_message(sock, os.fsencode(message), narrate)  # fsencode: argv bytes round-trip
