"""SAY is broadcast to every member, the sender included.

Caught by: test_a_message_reaches_everyone_else
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def say(self, conn, payload):
        return [self.broadcast(effect.data) if isinstance(effect, solution.Broadcast) else effect
                for effect in super().say(conn, payload)]
