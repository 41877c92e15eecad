"""JOINED is broadcast to everyone, the newcomer included.

Caught by: test_everyone_else_is_told_who_entered
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        return [self.broadcast(effect.data) if isinstance(effect, solution.Broadcast) else effect
                for effect in super().join(conn, payload)]
