"""What `learn bench chat` sends: the load's options, and the stamp every message carries.

Every SAY text carries who sent it, its sequence number and the send time
(`time.monotonic_ns()`, one clock for every process on the machine), in fixed-width
fields so that a receiver can slice them out without splitting:

    "0003 0000042 0000001234567890123 xxxxxxxx..."   (sender, seq, send ns; padded to B bytes)

so each receiving member can measure latency (receipt - send), notice a lost message
(fewer than expected), a sender's messages out of sequence, and record the order it saw
everything in.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from lessons.toolkit.i18n import _


@dataclass(frozen=True)
class Load:
    """What to send: the options of `learn bench chat`."""

    clients: int = 100
    senders: int = 20
    messages: int = 200
    size: int = 64
    rate: float = 0.0  # messages per second per sender; 0 = as fast as the server takes them
    workers: int = 2
    timeout: float = 120.0

    @property
    def expected_deliveries(self) -> int:
        """A MESSAGE goes to every member but its sender."""
        return self.senders * self.messages * (self.clients - 1)

    def check(self) -> str | None:
        """None if the load makes sense, else the reason in one sentence."""
        if self.clients < 2:
            return _("--clients must be at least 2 (someone has to listen).")
        if not 1 <= self.senders <= self.clients:
            return _("--senders must be between 1 and --clients.")
        if self.messages < 1 or self.workers < 1:
            return _("--messages and --workers must be at least 1.")
        if not MIN_SIZE <= self.size <= 4096:
            return _("--size must be between {least} bytes (room for the stamp) and 4096 (the "
                     "payload limit).").format(least=MIN_SIZE)
        if self.senders > 9999 or self.messages > 9_999_999:
            return _("at most 9999 senders and 9,999,999 messages each fit the stamp.")
        if self.rate < 0:
            return _("--rate cannot be negative.")
        return None


STAMP = struct.Struct("4s x 7s x 19s x")  # the fixed-width head of a text: sender, seq, ns
MIN_SIZE = STAMP.size + 1


def message_text(sender: int, seq: int, size: int) -> bytes:
    """One SAY text of exactly `size` bytes, stamped with the time it is made."""
    head = b"%04d %07d %019d " % (sender, seq, time.monotonic_ns())
    return head + b"x" * (size - len(head))

