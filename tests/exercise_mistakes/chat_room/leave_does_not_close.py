"""LEAVE tells the others but does not close the connection.

Caught by: test_leaving_tells_the_others_and_closes
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def leave(self, conn):
        return self.disconnect(conn)
