"""JOIN accepts any name: empty, too long, with control characters, or reserved.

Caught by: test_invalid_names_are_refused
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        saved = solution.why_invalid
        solution.why_invalid = lambda name: ""
        try:
            return super().join(conn, payload)
        finally:
            solution.why_invalid = saved
