"""WHO lists the names sorted alphabetically, not in join order.

Caught by: test_who_lists_the_members_in_join_order
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def receive(self, conn, kind, payload, now):
        if kind == solution.Kind.WHO and conn in self.members:
            return [solution.Send(conn, solution.codec.encode_members(sorted(self.members.values())))]
        return super().receive(conn, kind, payload, now)
