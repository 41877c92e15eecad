"""FrameDecoder.feed empties its buffer after the frames it returns, losing the start of the next frame.

Caught by: test_decoder_keeps_a_partial_frame_for_later
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import FrameDecoder as _Reference


class FrameDecoder(_Reference):
    def feed(self, data):
        frames = super().feed(data)
        if frames:
            self.buffer = bytearray()  # "done with this chunk"
        return frames
