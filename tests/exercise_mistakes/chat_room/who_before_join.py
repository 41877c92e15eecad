"""WHO is answered before JOIN, with the member list, instead of NOT_JOINED.

Caught by: test_speaking_before_joining_is_an_error
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def receive(self, conn, kind, payload, now):
        if kind == solution.Kind.WHO:
            return [solution.Send(conn, solution.codec.encode_members(list(self.members.values())))]
        return super().receive(conn, kind, payload, now)
