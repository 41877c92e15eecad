"""A second JOIN is taken as a new name for the member instead of ALREADY_JOINED.

Caught by: test_joining_twice_is_an_error
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        old = self.members.pop(conn, None)
        if old is not None:
            del self.by_key[solution.name_key(old)]
        return super().join(conn, payload)
