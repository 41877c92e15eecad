"""FrameDecoder.feed returns at most one frame per call and keeps the rest until the next feed.

Caught by: test_decoder_with_frames_merged_into_one_feed
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import HEADER, FrameDecoder as _Reference


class FrameDecoder(_Reference):
    def feed(self, data):
        self.buffer += data
        if len(self.buffer) < HEADER.size:
            return []
        (length,) = HEADER.unpack_from(self.buffer)
        if length > self.max_payload:
            raise FrameTooLarge(f"a frame of {length} bytes")
        end = HEADER.size + length
        if len(self.buffer) < end:
            return []
        frame = bytes(self.buffer[HEADER.size:end])
        del self.buffer[:end]
        return [frame]
