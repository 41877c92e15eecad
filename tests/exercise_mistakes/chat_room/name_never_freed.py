"""A member who leaves is removed from the members but their name stays taken.

Caught by: test_a_freed_name_can_be_taken_again
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def disconnect(self, conn):
        self.connections.discard(conn)
        name = self.members.pop(conn, None)
        if name is None:
            return []
        return [self.broadcast(solution.codec.encode_text(solution.Kind.LEFT, name))]
