"""练习 chat-room 的参考答案：把聊天室写成不含 I/O 的状态机。

课程：learn show capstone（规则见 learn show protocol）     检查：learn exercise check chat-room

完整服务器的聊天室（capstone/room.py）还多了这里省略的部分：
管理员的套接字、加入超时和限速。
"""

from __future__ import annotations

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid
from capstone.room import Broadcast, Close, Send

Effect = Send | Broadcast | Close


class Room:
    """帧进来，效果出去；没有套接字，也没有时钟。"""

    def __init__(self) -> None:
        self.connections: set[int] = set()  # 每个打开的连接
        self.members: dict[int, str] = {}  # conn -> 名字，只记已经加入的，按加入顺序
        self.by_key: dict[str, int] = {}  # name_key(名字) -> conn：名字有没有被占用？

    def connect(self, conn: int, now: float) -> list[Effect]:
        """接受了一个连接。现在还不用说什么：客户端先开口。"""
        self.connections.add(conn)
        return []

    def receive(self, conn: int, kind: int, payload: bytes, now: float) -> list[Effect]:
        """`conn` 发来了一个完整的帧：现在应该发生什么？"""
        if kind == Kind.JOIN:
            return self.join(conn, payload)
        if kind == Kind.SAY:
            return self.say(conn, payload)
        if kind == Kind.LEAVE:
            return self.leave(conn)
        if kind == Kind.PING:
            if len(payload) > codec.MAX_PING:
                return self.error(conn, ErrorCode.BAD_FRAME, f"a PING carries at most {codec.MAX_PING} bytes")
            return [Send(conn, codec.encode(Kind.PONG, payload))]
        if kind == Kind.WHO:
            if conn not in self.members:
                return self.error(conn, ErrorCode.NOT_JOINED, "JOIN before WHO")
            return [Send(conn, codec.encode_members(list(self.members.values())))]
        return self.error(conn, ErrorCode.BAD_FRAME, f"unknown frame kind 0x{kind:02x}")

    def join(self, conn: int, payload: bytes) -> list[Effect]:
        try:
            name = normalize(payload.decode())
        except UnicodeDecodeError:
            return self.error(conn, ErrorCode.BAD_FRAME, "a name must be UTF-8")
        if conn in self.members:
            return self.error(conn, ErrorCode.ALREADY_JOINED, f"already joined as {self.members[conn]}")
        problem = why_invalid(name)
        if problem:
            return self.error(conn, ErrorCode.NAME_INVALID, problem)
        if name_key(name) in self.by_key:
            return self.error(conn, ErrorCode.NAME_TAKEN, f"the name {name} is taken")
        self.members[conn] = name
        self.by_key[name_key(name)] = conn
        return [Send(conn, codec.encode_text(Kind.WELCOME, name)),
                self.broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn)]

    def say(self, conn: int, payload: bytes) -> list[Effect]:
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            return self.error(conn, ErrorCode.BAD_FRAME, "a message must be UTF-8")
        problem = text_problem(text)
        if problem:
            return self.error(conn, ErrorCode.BAD_FRAME, problem)
        if conn not in self.members:
            return self.error(conn, ErrorCode.NOT_JOINED, "JOIN before SAY")
        return [self.broadcast(codec.encode_message(self.members[conn], text), exclude=conn)]

    def leave(self, conn: int) -> list[Effect]:
        return self.disconnect(conn) + [Close(conn)]

    def disconnect(self, conn: int) -> list[Effect]:
        """`conn` 断了（关闭或重置）：如果它是成员，其他人收到 LEFT。"""
        self.connections.discard(conn)
        name = self.members.pop(conn, None)
        if name is None:
            return []
        del self.by_key[name_key(name)]
        return [self.broadcast(codec.encode_text(Kind.LEFT, name))]

    def announce(self, text: str) -> list[Effect]:
        """管理员的喊话：给每个成员发 ANNOUNCE。"""
        return [self.broadcast(codec.encode_text(Kind.ANNOUNCE, text))]

    def error(self, conn: int, code: ErrorCode, reason: str) -> list[Effect]:
        """给一个连接的 ERROR 帧；连接保持打开。"""
        return [Send(conn, codec.encode_error(code, reason))]

    def broadcast(self, data: bytes, exclude: int | None = None) -> Broadcast:
        """把 `data` 发给此刻的每个成员（`exclude` 除外）：先更新 self.members，再调用它。"""
        return Broadcast(data, exclude, to=tuple(self.members))
