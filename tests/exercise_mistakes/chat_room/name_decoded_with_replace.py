"""JOIN decodes the name with errors="replace", so bytes that are not UTF-8 become a name.

Caught by: test_a_name_that_is_not_utf8_is_a_bad_frame
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        return super().join(conn, payload.decode(errors="replace").encode())
