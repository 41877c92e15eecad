"""An independent IRC client for the tests, written from RFC 2812 section 2.3 alone.

Like tests/chatwire.py for the binary protocol, it shares no code with the server (nothing
from `capstone`): a test that parsed the server's lines with the server's own codec would
agree with its mistakes. Blocking socket, a deadline on every wait, no sleeps.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

TIMEOUT = 10.0  # seconds any single wait may take; generous for a loaded machine


@dataclass(frozen=True)
class Line:
    prefix: str
    command: str
    params: list[str]

    @property
    def nick(self) -> str:
        return self.prefix.split("!", 1)[0]


def parse_line(raw: str) -> Line:
    """RFC 2812: [':' prefix SPACE] command *( SPACE middle ) [ SPACE ':' trailing ]."""
    prefix = ""
    if raw.startswith(":"):
        prefix, raw = raw[1:].split(" ", 1)
    if " :" in raw:
        raw, trailing = raw.split(" :", 1)
        params = raw.split(" ")[1:] + [trailing]
    else:
        params = raw.split(" ")[1:]
    return Line(prefix, raw.split(" ")[0], [param for param in params])


class IrcClient:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT)
        self.buffer = b""
        self.seen: list[str] = []  # every raw line received, for failure messages

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def line(self, timeout: float = TIMEOUT) -> Line:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line within {timeout} s; seen so far: {self.seen[-20:]}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"the server closed the connection; seen: {self.seen[-20:]}")
            self.buffer += data
        raw, self.buffer = self.buffer.split(b"\r\n", 1)
        assert len(raw) + 2 <= 512, f"a line of {len(raw) + 2} bytes"
        text = raw.decode()
        self.seen.append(text)
        return parse_line(text)

    def until(self, command: str, timeout: float = TIMEOUT) -> list[Line]:
        """Every line up to and including the first `command`."""
        lines = [self.line(timeout)]
        while lines[-1].command != command:
            lines.append(self.line(timeout))
        return lines

    def register(self, nick: str) -> list[Line]:
        """As WeeChat does it: CAP LS, NICK, USER, CAP END; returns the lines up to NAMES' end."""
        self.send("CAP LS 302", f"NICK {nick}", f"USER {nick} 0 * :{nick}", "CAP END")
        return self.until("366")

    def sync(self, token: str = "sync") -> list[Line]:
        """Every line before the answer to a PING of ours: what the server had sent us until then."""
        self.send(f"PING :{token}")
        lines = self.until("PONG")
        assert lines[-1].params[-1] == token
        return lines[:-1]

    def closed(self, timeout: float = TIMEOUT) -> list[Line]:
        """The lines until the server closes the connection."""
        lines = []
        try:
            while True:
                lines.append(self.line(timeout))
        except EOFError:
            return lines

    def close(self) -> None:
        self.sock.close()
