"""The decoder reads the length with struct "I" (native, little-endian here) instead of "!I" (network order).

Caught by: test_decoder_returns_one_whole_frame
"""

import struct

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import FrameDecoder as _Reference

NATIVE = struct.Struct("I")


class FrameDecoder(_Reference):
    def feed(self, data):
        self.buffer += data
        frames = []
        while len(self.buffer) >= NATIVE.size:
            (length,) = NATIVE.unpack_from(self.buffer)
            if length > self.max_payload:
                raise FrameTooLarge(f"a frame of {length} bytes")
            end = NATIVE.size + length
            if len(self.buffer) < end:
                break
            frames.append(bytes(self.buffer[NATIVE.size:end]))
            del self.buffer[:end]
        return frames
