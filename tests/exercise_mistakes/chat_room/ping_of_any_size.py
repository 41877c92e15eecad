"""PING is answered whatever its size; the protocol allows at most 64 bytes.

Caught by: test_ping_is_answered_with_pong
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def receive(self, conn, kind, payload, now):
        if kind == solution.Kind.PING:
            return [solution.Send(conn, solution.codec.encode(solution.Kind.PONG, payload))]
        return super().receive(conn, kind, payload, now)
