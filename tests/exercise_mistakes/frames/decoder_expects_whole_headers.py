"""FrameDecoder buffers payloads but expects each header to arrive whole at the start of a feed.

Caught by: test_decoder_with_frames_split_at_every_byte
"""

from lessons.exercises.frames.solution import *  # noqa: F401,F403
from lessons.exercises.frames.solution import HEADER


class FrameDecoder:
    def __init__(self, max_payload=65536):
        self.max_payload = max_payload
        self.length = None  # the payload length being collected, once its header was seen
        self.payload = b""

    def feed(self, data):
        frames = []
        while data:
            if self.length is None:
                if len(data) < HEADER.size:
                    return frames  # "a header always comes in one piece"
                (self.length,) = HEADER.unpack_from(data)
                if self.length > self.max_payload:
                    raise FrameTooLarge(f"a frame of {self.length} bytes")
                data = data[HEADER.size:]
            take = data[:self.length - len(self.payload)]
            self.payload += take
            data = data[len(take):]
            if len(self.payload) == self.length:
                frames.append(self.payload)
                self.length, self.payload = None, b""
        return frames
