"""Long texts and the rate limit: a paste is split into SAYs, and SAYs leave at the server's pace.

One SAY frame carries at most 4096 bytes: the payload limit PROTOCOL.md sets by
default (WELCOME does not tell a client the server's own limits, so we assume the
default). A longer text -- a paste -- is split into several messages of at most 4096
bytes each, never inside a UTF-8 character: after the last line break in the piece,
else after the last space in its second half, else at the last whole character; the
line break at a cut is dropped, the others see one message per piece. The client says
how many messages it sent. SAYs are paced below the server's default rate limit (20
per second after a burst of 30, where the server allows 40: the margin covers the
time the server takes to read them), so a paste or a fast script is slowed down, not
dropped. A text over 40 messages (160 KiB) is refused with one sentence:
nothing of it is sent. A server started with a smaller --max-payload or
--rate-limit still refuses what is over its own limits, and the client shows why.

No I/O: the callers pass the time in.
"""

from __future__ import annotations

import time
from collections import deque

from capstone import codec
from capstone.codec import Kind

# PROTOCOL.md's defaults, which a client has to assume: WELCOME does not carry the server's limits.
MAX_SAY = codec.DEFAULT_MAX_PAYLOAD  # bytes in one SAY
SAY_RATE = 20.0  # SAYs per second, from a bucket of twice that...
SAY_BURST = 30  # ...of which we use 30: the server counts a SAY when it reads it, maybe later
MAX_PARTS = 40  # the whole bucket: a text needing more messages is refused


def split_payload(data: bytes, limit: int = MAX_SAY) -> list[bytes]:
    """UTF-8 `data` in pieces of at most `limit` bytes, never cutting a character.

    A piece ends at its last line break (which is dropped: the next message starts the
    next line), else after its last space in the second half, else at the last whole
    character that fits.
    """
    parts = []
    while len(data) > limit:
        end = limit
        while end > 0 and data[end] & 0xC0 == 0x80:  # data[end] continues a character
            end -= 1
        end = end or limit  # not UTF-8 at all: cut anyway, the server will say what it thinks
        newline = data.rfind(b"\n", 1, end)
        if newline > 0:
            parts.append(data[:newline])
            data = data[newline + 1:]
            continue
        space = data.rfind(b" ", end // 2, end)
        cut = space + 1 if space > 0 else end
        parts.append(data[:cut])
        data = data[cut:]
    if data:
        parts.append(data)
    return parts


class Pacer:
    """The server's default rate limit, mirrored: a SAY waits for a token instead of being
    dropped. Our bucket starts at our WELCOME, after the server's; it is 10 tokens smaller,
    because the server takes a SAY from its bucket when it reads it, which may be up to
    half a second (10 tokens' refill) after we sent it on a busy machine."""

    def __init__(self, rate: float = SAY_RATE, burst: int = SAY_BURST, now: float | None = None) -> None:
        self.rate, self.capacity = rate, burst
        self.tokens = self.capacity
        self.at = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def delay(self, now: float) -> float:
        """Seconds until a SAY may go."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


class Outbox:
    """Frames waiting to be sent, in order; SAYs leave at the Pacer's pace."""

    def __init__(self, pacer: Pacer | None = None) -> None:
        self.frames: deque[bytes] = deque()
        self.pacer = pacer or Pacer()

    def __len__(self) -> int:
        return len(self.frames)

    def extend(self, frames: tuple[bytes, ...]) -> None:
        self.frames.extend(frames)

    def delay(self, now: float) -> float | None:
        """Seconds until the next frame may go; None when nothing waits."""
        if not self.frames:
            return None
        return self.pacer.delay(now) if self.frames[0][4] == Kind.SAY else 0.0

    def pop(self, now: float) -> bytes:
        data = self.frames.popleft()
        if data[4] == Kind.SAY:
            self.pacer.take(now)
        return data
