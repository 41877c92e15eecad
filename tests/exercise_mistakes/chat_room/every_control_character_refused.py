"""SAY refuses every character below 0x20, the newline and the tab too.

Caught by: test_newline_and_tab_are_allowed_in_a_message
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def say(self, conn, payload):
        if any(byte < 0x20 for byte in payload):
            return self.error(conn, solution.ErrorCode.BAD_FRAME, "no control characters")
        return super().say(conn, payload)
