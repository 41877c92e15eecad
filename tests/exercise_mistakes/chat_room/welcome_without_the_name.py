"""WELCOME is sent empty: the joiner never learns the name the server gave it (normalized, it may differ).

Caught by: test_joining_gets_a_welcome
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        effects = super().join(conn, payload)
        welcome = solution.codec.encode(solution.Kind.WELCOME, b"")
        return [solution.Send(conn, welcome) if isinstance(effect, solution.Send) and
                effect.data[4] == solution.Kind.WELCOME else effect for effect in effects]
