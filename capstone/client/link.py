"""Where the chat is, and one connection to it: connect, send bytes, receive frames.

Every way of finding no server there (refused, no such file, no such host, no
permission) becomes one sentence the user can act on (exit 2).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from capstone import codec
from capstone.client.view import View
from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, UserError, address_text
from lessons.toolkit.framing import Frame

CLIENT_MAX_FRAME = 16 << 20  # server frames may exceed its payload limit (long MEMBERS)
CONNECT_TIMEOUT = 10.0
FIRST_BYTES = 64  # kept from the start of the stream, to show what a non-chat server said


@dataclass(frozen=True)
class Target:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None

    def __str__(self) -> str:
        return self.unix if self.unix else address_text((self.host, self.port))


class Link:
    """One connection to the chat: the socket plus the decoder, kept from JOIN to the end."""

    def __init__(self, sock: socket.socket, where: str = "") -> None:
        self.sock = sock
        self.where = where
        self.decoder = codec.new_decoder(CLIENT_MAX_FRAME)
        self.first_bytes = b""  # what the server said first, to name a server that is no chat

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _received(self, data: bytes) -> None:
        if len(self.first_bytes) < FIRST_BYTES:
            self.first_bytes += data[:FIRST_BYTES - len(self.first_bytes)]
        self.decoder.feed(data)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames now complete (FrameTooLarge if absurdly big)."""
        self._received(data)
        return list(self.decoder)

    def next_frame(self, timeout: float) -> Frame | None:
        """Blocking: the next frame, None at EOF; TimeoutError if nothing comes in time."""
        deadline = time.monotonic() + timeout
        while (frame := self.decoder.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                return None
            self._received(data)
        return frame

    def close(self) -> None:
        self.sock.close()


def open_link(target: Target, view: View) -> Link:
    """Connect, turning every way of finding no server into one sentence (exit 2)."""
    where = str(target)
    texts = view.texts
    try:
        if target.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(target.unix)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.gaierror:
        raise UserError(texts["bad_host"].format(host=target.host)) from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise UserError(texts["no_server"].format(where=where)) from None
    except PermissionError:
        raise UserError(texts["forbidden"].format(where=where)) from None
    except OSError as err:
        raise UserError(view.unreachable(where, err)) from None
    return Link(sock, where)
