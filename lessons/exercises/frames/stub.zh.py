"""练习 frames：recv_exact，和一个逐步解码长度前缀帧的解码器。

课程：learn show struct-recv        检查：learn exercise check frames

TCP 传送的是字节流，不是一条一条的消息：一次 recv() 可能只拿到半条记录，也可能拿到
两条半。讲义里的接收端把一次 recv(1024) 当成一条完整的记录来解包，这就是粘包
（sticky packets）问题。解决办法：在每条消息前面写上它的长度（这就是一帧，frame），
然后正好读这么多字节。

这里的一帧是 4 字节大端的长度（struct "!I"），后面跟着这么多字节的载荷。

1. recv_exact(sock, count)：一直阻塞，直到正好收到 `count` 个字节；如果对端先关闭了，
   抛出 EOFError（绝不能返回更少的字节，也不能无限循环）。
2. recv_frame(sock)：用 recv_exact 读出一帧的载荷。
3. FrameDecoder.feed(data)：完全不碰套接字。收到什么字节就喂给它，怎么切开都行；
   它按顺序返回现在已经完整的每一帧的载荷，剩下的留到下次。如果帧头声明的长度超过
   `max_payload`，马上抛出 FrameTooLarge，不等任何载荷字节到达。
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
    # TODO：循环，直到凑够 `count` 个字节。每次只向 recv() 要还缺的那些字节
    # （绝不多要：多出来的属于下一条消息）。recv() 返回 b"" 说明对端关闭了：
    # 抛出 EOFError，并说明已经收到了多少字节。
    raise NotImplementedError("TODO：写出 recv_exact()")


def recv_frame(sock: socket.socket) -> bytes:
    """一帧的载荷：先用 recv_exact 读帧头，再正好读那么多字节。"""
    # TODO：(length,) = HEADER.unpack(recv_exact(sock, HEADER.size))，然后读载荷。
    raise NotImplementedError("TODO：写出 recv_frame()")


class FrameDecoder:
    """字节进来，完整的帧出去，怎么切开都行。不做 I/O：套接字归调用者管。"""

    def __init__(self, max_payload: int = 65536) -> None:
        self.max_payload = max_payload
        self.buffer = bytearray()  # 已经收到、但还没有作为完整帧返回的字节

    def feed(self, data: bytes) -> list[bytes]:
        """加入 `data`；返回现在已经完整的所有帧的载荷，先到的在前。"""
        # TODO 1：把 data 追加到 self.buffer。
        # TODO 2：只要缓冲区里有一个完整的帧头，就读出长度
        #         （HEADER.unpack_from(self.buffer)）；超过 max_payload -> 抛出
        #         FrameTooLarge；整个载荷都到了，就把这一帧从缓冲区里切下来，
        #         留下它的载荷；没到齐就停下，等更多字节。
        raise NotImplementedError("TODO：写出 FrameDecoder.feed()")
