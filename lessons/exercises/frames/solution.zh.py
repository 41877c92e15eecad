"""练习 frames 的参考答案：recv_exact，和一个逐步解码的帧解码器。

课程：learn show struct-recv        检查：learn exercise check frames
"""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct("!I")  # 载荷长度，4 个字节，网络字节序


class FrameTooLarge(ValueError):
    """帧头声明的字节数超过了解码器能接受的上限。"""


def encode_frame(payload: bytes) -> bytes:
    """一帧的字节：先是长度，然后是载荷。"""
    return HEADER.pack(len(payload)) + payload


def recv_exact(sock: socket.socket, count: int) -> bytes:
    """从 `sock` 正好读出 `count` 个字节；字节没到齐对端就关闭了，抛出 EOFError。"""
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))  # 只要还缺的：多出来的属于下一条消息
        if not chunk:
            raise EOFError(f"the peer closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> bytes:
    """一帧的载荷：先用 recv_exact 读帧头，再正好读那么多字节。"""
    (length,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return recv_exact(sock, length)


class FrameDecoder:
    """字节进来，完整的帧出去，怎么切开都行。不做 I/O：套接字归调用者管。"""

    def __init__(self, max_payload: int = 65536) -> None:
        self.max_payload = max_payload
        self.buffer = bytearray()  # 已经收到、但还没有作为完整帧返回的字节

    def feed(self, data: bytes) -> list[bytes]:
        """加入 `data`；返回现在已经完整的所有帧的载荷，先到的在前。"""
        self.buffer += data
        frames = []
        while len(self.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer)
            if length > self.max_payload:
                raise FrameTooLarge(f"a frame of {length} bytes; the limit is {self.max_payload}")
            end = HEADER.size + length
            if len(self.buffer) < end:
                break  # 载荷还在路上
            frames.append(bytes(self.buffer[HEADER.size:end]))
            del self.buffer[:end]
        return frames
