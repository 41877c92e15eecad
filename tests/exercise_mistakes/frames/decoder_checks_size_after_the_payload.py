"""FrameDecoder checks max_payload only once the whole payload has arrived, so it buffers up to 4 GiB first.

Caught by: test_decoder_rejects_an_oversized_header_at_once
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import HEADER, FrameDecoder as _Reference


class FrameDecoder(_Reference):
    def feed(self, data):
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer)
            end = HEADER.size + length
            if len(self.buffer) < end:
                break
            if length > self.max_payload:
                raise FrameTooLarge(f"a frame of {length} bytes")
            frames.append(bytes(self.buffer[HEADER.size:end]))
            del self.buffer[:end]
        return frames
