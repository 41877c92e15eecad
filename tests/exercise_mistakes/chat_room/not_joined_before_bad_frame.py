"""SAY looks at membership before the payload: a non-UTF-8 SAY before JOIN is NOT_JOINED, not BAD_FRAME.

Caught by: test_a_bad_frame_comes_before_not_joined
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def say(self, conn, payload):
        if conn not in self.members:
            return self.error(conn, solution.ErrorCode.NOT_JOINED, "JOIN before SAY")
        return super().say(conn, payload)
