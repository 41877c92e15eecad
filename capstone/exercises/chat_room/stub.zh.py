"""练习 chat-room：综合项目的聊天室，写成一个不含套接字的状态机。

课程：learn show capstone（规则见 learn show protocol）     检查：learn exercise check chat-room

讲义的作业：做一个像 QQ 群那样的聊天室（chat room）。必须有名字（name），而且不能重名；
有人进来时，所有人都收到“xxx 进入了聊天室”，有人离开时收到“xxx 退出了聊天室”；
一个人发的消息，其他人都能收到；管理员（administrator）的喊话所有人都能收到。

真正的服务器把这套逻辑和所有 I/O 分开（就像 h11 对 HTTP 那样）：驱动程序告诉聊天室
发生了什么，再按顺序执行聊天室返回的效果：

    Send(conn, data)          把这些字节发给一个连接
    Broadcast(data, exclude, to)
                              把这些字节发给 `to` 里的每个连接（`exclude` 除外）
    Close(conn)               先把没发完的发完，再关闭这个连接

所以检查聊天室完全不需要网络，用的规则和真正的服务器一样（PROTOCOL.md）。和真正服务器的
聊天室一样，Broadcast 自己写明发给谁：用下面给好的 `self.broadcast(data, exclude)` 来做，
它把这一刻的成员放进 `to`，所以要先更新 `self.members`（新来的加进去，离开的删掉）。
下面已经给好了帧（frame）、名字和效果；规则由你来写：

- JOIN name：给加入者回 WELCOME（规范化以后的名字），给其他每个成员（member）发 JOINED name。
  出错的情况：载荷不是 UTF-8 是 BAD_FRAME；第二次 JOIN 是 ALREADY_JOINED；接着
  why_invalid() -> NAME_INVALID；名字已经有人用了（用 name_key() 比较）-> NAME_TAKEN。
  出错以后连接（connection）保持打开，可以再试。
- SAY text：给其他每个成员发 MESSAGE（发送者，正文）。不是 UTF-8，或者 text_problem()
  -> BAD_FRAME；还没 JOIN -> NOT_JOINED。
- LEAVE：给其他人发 LEFT name（如果它加入过），然后 Close(conn)。
- PING payload：回一个载荷相同的 PONG（不需要先 JOIN）；超过 64 字节 -> BAD_FRAME。
- WHO：给提问者回 MEMBERS（按加入顺序排列的名字）；还没 JOIN -> NOT_JOINED。
- 其他任何类型 -> BAD_FRAME。
- disconnect(conn)：连接断了；如果它是成员，给其他人发 LEFT。
- announce(text)：给每个成员发 ANNOUNCE。
每个错误都是 Send(conn, codec.encode_error(code, reason))；reason 用几个词说明原因就行。
"""

from __future__ import annotations

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.names import name_key, normalize, text_problem, why_invalid  # noqa: F401 - 留给你用
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
        # TODO 1：按 `kind` 分派（Kind.JOIN、Kind.SAY、Kind.LEAVE、Kind.PING、Kind.WHO）；
        #         其他任何类型 -> self.error(conn, ErrorCode.BAD_FRAME, "...")。
        # TODO 2：JOIN：解码（UnicodeDecodeError -> BAD_FRAME），ALREADY_JOINED，然后
        #         name = normalize(text)；why_invalid(name) -> NAME_INVALID；name_key(name)
        #         在 self.by_key 里 -> NAME_TAKEN；否则记住这个成员，返回
        #         [Send(conn, codec.encode_text(Kind.WELCOME, name)),
        #          self.broadcast(codec.encode_text(Kind.JOINED, name), exclude=conn)]。
        # TODO 3：SAY：解码，text_problem(text) -> BAD_FRAME，不是成员 -> NOT_JOINED，
        #         否则 [self.broadcast(codec.encode_message(name, text), exclude=conn)]。
        # TODO 4：LEAVE：忘掉这个成员，给其他人发 LEFT，然后 Close(conn)。
        # TODO 5：PING：带着原载荷回 PONG（超过 codec.MAX_PING 字节：BAD_FRAME）。
        #         WHO：codec.encode_members(按加入顺序的名字)，或者 NOT_JOINED。
        raise NotImplementedError("TODO：写出 Room.receive()")

    def disconnect(self, conn: int) -> list[Effect]:
        """`conn` 断了（关闭或重置）：如果它是成员，其他人收到 LEFT。"""
        # TODO：忘掉这个连接；成员的名字被释放，并广播 LEFT。
        raise NotImplementedError("TODO：写出 Room.disconnect()")

    def announce(self, text: str) -> list[Effect]:
        """管理员的喊话：给每个成员发 ANNOUNCE。"""
        # TODO：用 self.broadcast() 发一个 codec.encode_text(Kind.ANNOUNCE, text)，谁都不排除。
        raise NotImplementedError("TODO：写出 Room.announce()")

    def error(self, conn: int, code: ErrorCode, reason: str) -> list[Effect]:
        """给一个连接的 ERROR 帧；连接保持打开。"""
        return [Send(conn, codec.encode_error(code, reason))]

    def broadcast(self, data: bytes, exclude: int | None = None) -> Broadcast:
        """把 `data` 发给此刻的每个成员（`exclude` 除外）：先更新 self.members，再调用它。"""
        return Broadcast(data, exclude, to=tuple(self.members))
