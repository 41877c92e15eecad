"""A lost connection is announced as LEFT even when it never joined (an empty name).

Caught by: test_a_lost_connection_tells_the_others
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def disconnect(self, conn):
        effects = super().disconnect(conn)
        return effects or [self.broadcast(solution.codec.encode_text(solution.Kind.LEFT, ""))]
