"""SAY passes on any text that decodes: empty messages and control characters included.

Caught by: test_bad_messages_are_bad_frames
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def say(self, conn, payload):
        saved = solution.text_problem
        solution.text_problem = lambda text: ""
        try:
            return super().say(conn, payload)
        finally:
            solution.text_problem = saved
