"""A frame of a kind the room does not know is ignored instead of answered with BAD_FRAME.

Caught by: test_unknown_kinds_are_bad_frames
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def receive(self, conn, kind, payload, now):
        if kind not in set(solution.Kind):
            return []
        return super().receive(conn, kind, payload, now)
