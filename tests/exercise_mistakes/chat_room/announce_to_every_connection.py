"""announce() sends to every open connection, strangers who never joined included.

Caught by: test_an_announcement_reaches_every_member
"""

from capstone.exercises.chat_room import solution
from capstone.exercises.chat_room.solution import *  # noqa: F401,F403


class Room(solution.Room):
    def announce(self, text):
        frame = solution.codec.encode_text(solution.Kind.ANNOUNCE, text)
        return [solution.Send(conn, frame) for conn in sorted(self.connections)]
