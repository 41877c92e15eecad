"""Names are compared as typed: "Alice" may join while "alice" is in the room.

Caught by: test_names_are_unique_without_regard_to_case
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def join(self, conn, payload):
        try:
            name = solution.normalize(payload.decode())
        except UnicodeDecodeError:
            return self.error(conn, solution.ErrorCode.BAD_FRAME, "a name must be UTF-8")
        if name in self.members.values():
            return self.error(conn, solution.ErrorCode.NAME_TAKEN, f"the name {name} is taken")
        self.by_key.pop(solution.name_key(name), None)  # the reference's own check sees no one
        return super().join(conn, payload)
