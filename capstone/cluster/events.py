"""The room's events as they travel through the JetStream stream, and the names bucket's keys.

Every event is one small JSON object. A member is known by its member id (`mid`), made by
the node that serves it and never reused, so a LEFT can never hit a later member who took
the same name. Message ids (the `Nats-Msg-Id` header) let JetStream drop a republished
event: a node that retries after a lost acknowledgement, or two nodes that both notice a
dead node's member, put one event in the stream, not two.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from capstone.names import name_key

ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

JOIN, SAY, LEFT, ANNOUNCE = "join", "say", "left", "announce"
# Why a member left; the node serving it closes the connection with a matching error.
LEFT_ON_ITS_OWN, LEFT_KICKED, LEFT_LOST = "left", "kicked", "lost"


@dataclass(frozen=True)
class RoomNames:
    """The NATS names one room uses: its stream, the stream's subject, its names bucket."""

    room: str

    @property
    def stream(self) -> str:
        return f"CHAT_{self.room}"

    @property
    def subject(self) -> str:
        return f"chat.{self.room}.events"

    @property
    def bucket(self) -> str:
        return f"chat_{self.room}_names"


def name_bucket_key(name: str) -> str:
    """KV keys allow only [-/_=.a-zA-Z0-9]: the casefolded name in hex (one key per JOIN rule)."""
    return name_key(name).encode().hex()


def encode(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def decode(data: bytes) -> dict | None:
    """An event, or None for something that is not one of ours (it is skipped, never fatal)."""
    event = decode_json(data)
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def encode_claim(node: str, mid: str, name: str) -> bytes:
    """The value of a name's key: who holds it."""
    return encode({"node": node, "mid": mid, "name": name})


def decode_claim(data: bytes) -> dict:
    claim = decode_json(data)
    return claim if isinstance(claim, dict) else {}


def decode_json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def joined(mid: str, name: str) -> tuple[dict, str]:
    """(event, message id)"""
    return {"type": JOIN, "mid": mid, "name": name}, f"{mid}.join"


def said(mid: str, name: str, text: str, serial: int) -> tuple[dict, str]:
    return {"type": SAY, "mid": mid, "name": name, "text": text}, f"{mid}.say.{serial}"


def left(mid: str, name: str, why: str) -> tuple[dict, str]:
    """One id for every LEFT of a member: a leave, a kick and a lease expiry noticed by two
    nodes are one event in the stream, whichever came first."""
    return {"type": LEFT, "mid": mid, "name": name, "why": why}, f"{mid}.left"


def announced(node: str, text: str, serial: int) -> tuple[dict, str]:
    return {"type": ANNOUNCE, "text": text}, f"{node}.announce.{serial}"
