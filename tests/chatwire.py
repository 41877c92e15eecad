"""An independent client for the chat wire protocol, written from PROTOCOL.md alone.

It deliberately shares no code with the server (nothing from `capstone` or
`lessons.toolkit.framing`): a conformance suite that reused the server's own codec would agree
with the server's mistakes. Plain standard library, blocking sockets, and a timeout on
every read so that a silent server fails a test quickly instead of hanging it.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct("!IB")  # payload length (uint32), frame kind (uint8)
PING_LIMIT = 64  # bytes a PING may carry
DEFAULT_TIMEOUT = 10.0  # seconds any single read may wait; generous for a busy machine


class Kind(IntEnum):
    """Every frame kind the protocol page names."""

    JOIN = 0x01
    SAY = 0x02
    LEAVE = 0x03
    PING = 0x04
    WHO = 0x05
    ADMIN_SAY = 0x10
    KICK = 0x11
    LIST = 0x12
    WELCOME = 0x81
    ERROR = 0x82
    JOINED = 0x83
    LEFT = 0x84
    MESSAGE = 0x85
    ANNOUNCE = 0x86
    PONG = 0x87
    MEMBERS = 0x88
    OK = 0x90


class Code(IntEnum):
    """The ERROR codes of the protocol page."""

    NAME_TAKEN = 1
    NAME_INVALID = 2
    NOT_JOINED = 3
    ALREADY_JOINED = 4
    TOO_LARGE = 5
    BAD_FRAME = 6
    RATE_LIMITED = 7
    SHUTDOWN = 8
    TIMEOUT = 9
    KICKED = 10
    NO_SUCH_MEMBER = 11


BROADCAST_KINDS = frozenset({Kind.JOINED, Kind.LEFT, Kind.MESSAGE, Kind.ANNOUNCE})


def kind_name(kind: int) -> str:
    try:
        return Kind(kind).name
    except ValueError:
        return f"0x{kind:02x}"


@dataclass(frozen=True)
class Frame:
    kind: int
    payload: bytes

    @property
    def text(self) -> str:
        """The payload as UTF-8; a server frame that is not UTF-8 is itself a defect."""
        return self.payload.decode("utf-8")

    def error(self) -> tuple[int, str]:
        """(code, reason) of an ERROR frame: `!B` code, then a UTF-8 reason."""
        assert self.kind == Kind.ERROR, f"not an ERROR frame: {self}"
        assert len(self.payload) >= 1, "an ERROR frame must carry at least its code"
        return self.payload[0], self.payload[1:].decode("utf-8")

    def message(self) -> tuple[str, str]:
        """(sender, text) of a MESSAGE frame: `!B` name length in bytes, name, text."""
        assert self.kind == Kind.MESSAGE, f"not a MESSAGE frame: {self}"
        size = self.payload[0]
        name = self.payload[1 : 1 + size]
        assert len(name) == size, f"MESSAGE name length {size} runs past the payload"
        return name.decode("utf-8"), self.payload[1 + size :].decode("utf-8")

    def __repr__(self) -> str:
        shown = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        if self.kind == Kind.ERROR and self.payload:
            label = _code_name(self.payload[0])
            return f"Frame(ERROR {label} {self.payload[1:][:80]!r})"
        return f"Frame({kind_name(self.kind)} {shown!r})"


def _code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"code {code}"


def encode(kind: int, payload: bytes | str = b"") -> bytes:
    """One frame: the 5-byte header, then the payload (str is sent as UTF-8)."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return HEADER.pack(len(data), kind) + data


def message_payload(name: str, text: str) -> bytes:
    """The MESSAGE payload the server must produce for `name` saying `text`."""
    raw_name = name.encode("utf-8")
    return bytes([len(raw_name)]) + raw_name + text.encode("utf-8")


class FrameReader:
    """Sans-IO frame splitter: feed any pieces of the stream, take whole frames out."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            length, kind = HEADER.unpack_from(self.buffer)
            end = HEADER.size + length
            if len(self.buffer) < end:
                break
            frames.append(Frame(kind, bytes(self.buffer[HEADER.size : end])))
            del self.buffer[:end]
        return frames


class PeerClosed(Exception):
    """The server ended the stream: cleanly (EOF) or with a reset."""

    def __init__(self, reset: bool, leftover: int) -> None:
        how = "reset the connection" if reset else "closed the connection"
        super().__init__(f"the server {how} ({leftover} bytes of an unfinished frame left)")
        self.reset = reset
        self.leftover = leftover


class WireClient:
    """One blocking connection to the chat server (or its admin socket)."""

    def __init__(self, sock: socket.socket, label: str = "client") -> None:
        self.sock = sock
        self.label = label
        self.reader = FrameReader()
        self.pending: list[Frame] = []
        self.closed_by_peer: PeerClosed | None = None

    # ----- connecting -------------------------------------------------------------
    @classmethod
    def tcp(cls, address: tuple[str, int], label: str = "client", rcvbuf: int | None = None) -> WireClient:
        """Connect over TCP; `rcvbuf` shrinks the receive buffer before the handshake."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(DEFAULT_TIMEOUT)
        sock.connect(address)
        return cls(sock, label)

    @classmethod
    def unix(cls, path: str, label: str = "client") -> WireClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(DEFAULT_TIMEOUT)
        sock.connect(path)
        return cls(sock, label)

    # ----- sending ----------------------------------------------------------------
    def send_frame(self, kind: int, payload: bytes | str = b"") -> None:
        self.sock.sendall(encode(kind, payload))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # ----- receiving --------------------------------------------------------------
    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame; TimeoutError if none within `timeout`, PeerClosed at the end."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.closed_by_peer is not None:
                raise self.closed_by_peer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.label}: no frame within {timeout} s")
            self._receive_some(remaining)
        return self.pending.pop(0)

    def _receive_some(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return
        except ConnectionResetError:
            self.closed_by_peer = PeerClosed(reset=True, leftover=len(self.reader.buffer))
            return
        if not data:
            self.closed_by_peer = PeerClosed(reset=False, leftover=len(self.reader.buffer))
            return
        self.pending.extend(self.reader.feed(data))

    def has_data(self, wait: float) -> bool:
        """True when a frame (or the end) is already here or arrives within `wait` s."""
        if self.pending or self.closed_by_peer is not None:
            return True
        readable, _, _ = select.select([self.sock], [], [], wait)
        return bool(readable)

    def expect(self, kind: int, payload: bytes | str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Frame:
        """The next frame, which must be of `kind` (and carry `payload`, when given)."""
        frame = self.recv_frame(timeout)
        assert frame.kind == kind, f"{self.label}: expected {kind_name(kind)}, got {frame!r}"
        if payload is not None:
            wanted = payload.encode("utf-8") if isinstance(payload, str) else payload
            assert frame.payload == wanted, f"{self.label}: expected {kind_name(kind)} {wanted!r}, got {frame!r}"
        return frame

    def expect_error(self, code: int, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next frame must be ERROR `code` with a UTF-8, human-readable reason."""
        frame = self.recv_frame(timeout)
        assert frame.kind == Kind.ERROR, f"{self.label}: expected ERROR {_code_name(code)}, got {frame!r}"
        got, reason = frame.error()
        assert got == code, f"{self.label}: expected ERROR {_code_name(code)}, got {frame!r}"
        assert reason.strip(), f"{self.label}: ERROR {_code_name(code)} has no reason text"
        return reason

    def expect_closed(self, timeout: float = DEFAULT_TIMEOUT, allow_reset: bool = False) -> None:
        """No further frame, then the end of the stream: an orderly EOF unless `allow_reset`."""
        try:
            frame = self.recv_frame(timeout)
        except PeerClosed as end:
            assert allow_reset or not end.reset, f"{self.label}: connection reset instead of an orderly close"
            assert end.leftover == 0, f"{self.label}: stream ended inside a frame ({end.leftover} bytes)"
            return
        except TimeoutError:
            raise AssertionError(f"{self.label}: connection still open after {timeout} s") from None
        raise AssertionError(f"{self.label}: expected the connection to close, got {frame!r}")

    def read_until_closed(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[list[Frame], PeerClosed]:
        """Every frame up to the end of the stream, and how it ended."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.recv_frame(max(0.0, deadline - time.monotonic())))
            except PeerClosed as end:
                return frames, end
            except TimeoutError:
                raise AssertionError(f"{self.label}: still open after {timeout} s; got {frames!r}") from None

    # ----- conversations ------------------------------------------------------------
    def join(self, name: str) -> str:
        """JOIN and return the name in the WELCOME."""
        self.send_frame(Kind.JOIN, name)
        return self.expect(Kind.WELCOME).text

    def ping(self, data: bytes = b"mark") -> None:
        """A PING round trip: proves every earlier reply has already arrived."""
        self.send_frame(Kind.PING, data)
        self.expect(Kind.PONG, data)

    def who(self) -> list[str]:
        self.send_frame(Kind.WHO)
        return self.expect(Kind.MEMBERS).text.split("\n")

    def frames_until_pong(self, data: bytes = b"sync", timeout: float = DEFAULT_TIMEOUT) -> list[Frame]:
        """Send a PING and return every frame that arrives before its PONG."""
        self.send_frame(Kind.PING, data)
        frames = []
        while True:
            frame = self.recv_frame(timeout)
            if frame.kind == Kind.PONG and frame.payload == data:
                return frames
            frames.append(frame)

    def assert_quiet(self) -> None:
        """Nothing is queued on this connection's own path: the next frame after a PING is
        its PONG. (Broadcasts from the fork engine's hub may still be in flight; for those
        use a marker broadcast, as the test suite's `quiet_until_marker` does.)"""
        extra = self.frames_until_pong(b"quiet?")
        assert not extra, f"{self.label}: unexpected frames {extra!r}"

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0): what a crashing client looks like."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def admin_say(admin: WireClient, text: str | bytes) -> None:
    admin.send_frame(Kind.ADMIN_SAY, text)
    admin.expect(Kind.OK, b"")


def admin_list(admin: WireClient) -> list[str]:
    """LIST on the admin channel: the member names in join order ([] when empty)."""
    admin.send_frame(Kind.LIST)
    text = admin.expect(Kind.MEMBERS).text
    return text.split("\n") if text else []


def gather(wanted: dict[WireClient, int], timeout: float) -> dict[WireClient, list[Frame]]:
    """Read from many clients at once until each has `wanted[client]` frames or has closed.

    One select loop instead of a thread per client: fifty members can be drained
    together, and a server that sends too little fails at the deadline, not never.
    """
    got: dict[WireClient, list[Frame]] = {client: [] for client in wanted}

    def unfinished() -> list[WireClient]:
        return [c for c in wanted if len(got[c]) < wanted[c] and not (c.closed_by_peer and not c.pending)]

    deadline = time.monotonic() + timeout
    while True:
        for client in wanted:
            while client.pending and len(got[client]) < wanted[client]:
                got[client].append(client.pending.pop(0))
        waiting = unfinished()
        if not waiting:
            return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            short = {c.label: f"{len(got[c])}/{wanted[c]}" for c in waiting}
            raise AssertionError(f"frames still missing after {timeout} s: {short}")
        readable, _, _ = select.select([c.sock for c in waiting], [], [], min(remaining, 1.0))
        by_socket = {c.sock: c for c in waiting}
        for sock in readable:
            by_socket[sock]._receive_some(0.0)


def read_all_until_closed(
    clients: list[WireClient], timeout: float
) -> dict[WireClient, tuple[list[Frame], PeerClosed, float]]:
    """Every client's frames up to its end of stream, how it ended, and when (monotonic)."""
    result: dict[WireClient, tuple[list[Frame], PeerClosed, float]] = {}
    frames: dict[WireClient, list[Frame]] = {client: [] for client in clients}
    deadline = time.monotonic() + timeout
    while len(result) < len(clients):
        for client in clients:
            if client in result:
                continue
            frames[client].extend(client.pending)
            client.pending.clear()
            if client.closed_by_peer is not None:
                result[client] = (frames[client], client.closed_by_peer, time.monotonic())
        open_clients = [c for c in clients if c not in result]
        if not open_clients:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            still = {c.label: frames[c] for c in open_clients}
            raise AssertionError(f"connections still open after {timeout} s: {still!r}")
        readable, _, _ = select.select([c.sock for c in open_clients], [], [], min(remaining, 1.0))
        by_socket = {c.sock: c for c in open_clients}
        for sock in readable:
            by_socket[sock]._receive_some(0.0)
    return result
