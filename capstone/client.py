"""`learn chat join`: the chat client. Two input loops share everything else.

- In a terminal, prompt_toolkit keeps the line you are typing at the bottom while
  messages arrive above it: one asyncio task reads frames, the prompt reads keys.
- With stdin not a terminal ("pipe mode"), a select() loop watches stdin and the socket,
  exactly like the lessons' servers do, and prints events one per line, plain, so that
  scripts and tests can read them.

Whatever the server relays is shown as text and never interpreted: names and messages
pass through `lessons.common.printable` (no terminal escape sequence reaches the screen),
odd names are quoted so that nobody can pose as another member or as the administrator,
and the later lines of a multi-line message are indented behind a marker, so they cannot
pass for lines of their own. Colour goes through prompt_toolkit's (style, text) pairs,
which are never parsed for markup, so a member called `[/]` is just that.

Commands
    `/who` lists the members, `/help` lists the commands, `/quit` (or Ctrl-D, or Ctrl-C)
    leaves. Any other line starting with `/word` is refused here, so a typo is never
    sent to everyone; start a line with `//` to send it with one slash less (`//who`
    says "/who"). A first word that is not `/` and letters (`/ is the root`,
    `/etc/hosts changed`) makes an ordinary message.

Long texts
    One SAY frame carries at most 4096 bytes: the payload limit PROTOCOL.md sets by
    default (WELCOME does not tell a client the server's own limits, so we assume the
    default). A longer text -- a paste -- is split into several messages of at most 4096
    bytes each, never inside a UTF-8 character: after the last line break in the piece,
    else after the last space in its second half, else at the last whole character; the
    line break at a cut is dropped, the others see one message per piece. The client says
    how many messages it sent. SAYs are paced below the server's default rate limit (20
    per second after a burst of 30, where the server allows 40: the margin covers the
    time the server takes to read them), so a paste or a fast script is slowed down, not
    dropped. A text over 40 messages (160 KiB) is refused with one sentence:
    nothing of it is sent. A server started with a smaller --max-payload or
    --rate-limit still refuses what is over its own limits, and the client shows why.

Exit status
    0 when you leave (/quit, Ctrl-D, Ctrl-C: one line, "you left the room"); 1 when the
    chat ends under you (kicked, the server stopping: a plain notice; a lost connection:
    an error); 2 for what you can fix (no server there, not a chat server, name refused
    in pipe mode).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import select
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NoReturn, TextIO

from capstone import codec
from capstone.codec import CLOSING_ERRORS, ErrorCode, Kind
from capstone.names import MAX_NAME
from lessons.common import DEFAULT_HOST, DEFAULT_PORT, RunFailure, UserError, address_text, printable, printable_bytes
from lessons.framing import Frame, FrameTooLarge

if TYPE_CHECKING:  # prompt_toolkit is imported only when a terminal is there to use it
    from prompt_toolkit import PromptSession

# Every string the client shows, in both languages; the zh wording is the lecture notes'.
# (A later issue moves this table to the gettext catalogs of lessons.i18n.)
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": "you are in the room as {name}",
        "hint": "Enter sends, Esc Enter starts a new line; /help lists the commands; /quit or Ctrl-D leaves",
        "help": ("/who      lists the members\n"
                 "/quit     leaves the room (so do Ctrl-D and Ctrl-C)\n"
                 "/help     shows this list\n"
                 "//who     sends \"/who\" as a message (a line starting with /word is a command)"),
        "unknown_command": "there is no command {command}; /help lists them, and // sends a line starting with /.",
        "joined": "{name} entered the room",
        "left": "{name} left the room",
        "message": "{name}: {text}",
        "announce": "[admin] {text}",
        "members": "in the room: {names}",
        "refused_frame": "the server refused that: {reason}",
        "name_prompt": "your name: ",
        "cannot_join": "cannot join: {reason}.",
        "name_needed": "stdin is not a terminal, so give your name with --name NAME.",
        "goodbye": "you left the room",
        "interrupted": "stopped before joining the room.",
        "split": "your text was {size} bytes, so it went out as {count} messages (one holds at most {limit} bytes).",
        "too_long": ("your text is {size} bytes, more than the {most} bytes this client sends at once "
                     "({parts} messages of {limit}); nothing of it was sent."),
        "no_server": "no chat server is listening on {where}.",
        "not_chat": ("{where} does not look like a learn chat server (it answered {answer}); "
                     "check --host, --port or --unix."),
        "forbidden": "you are not allowed to connect to {where}.",
        "unreachable": "cannot reach {where}: {error}.",
        "bad_host": "cannot resolve the host name {host!r}.",
        "closed": "the server closed the connection.",
        "closed_because": "the server closed the connection: {reason}.",
        "lost": "the connection to the server was lost ({error}).",
        "shutdown": "the server is stopping, so the chat is over.",
        "kicked": "the administrator removed you from the room.",
        "no_answer": ("the server on {where} did not answer within {seconds:g} seconds; "
                      "check that it is a learn chat server."),
        "huge_frame": "the server sent a frame of {length} bytes, more than this client accepts.",
        # The server's ERROR codes in our words (English shows the server's own reason when it gave one).
        "reason_NAME_TAKEN": "the name {name} is taken",
        "reason_NAME_INVALID": ("the name {name} cannot be used (1 to {most} characters, no control "
                                "characters, not a reserved name such as admin)"),
        "reason_NOT_JOINED": "join the room first",
        "reason_ALREADY_JOINED": "you are already in the room",
        "reason_TOO_LARGE": "the message was over the server's size limit",
        "reason_BAD_FRAME": "the server could not accept that frame",
        "reason_RATE_LIMITED": "you are sending too fast, so that message was dropped",
        "reason_SHUTDOWN": "the server is stopping",
        "reason_TIMEOUT": "you did not join in time",
        "reason_KICKED": "the administrator removed you",
        "reason_NO_SUCH_MEMBER": "nobody has that name",
        "reason_unknown": "error code {code}",
        # Why a connection failed, for the errors a chat meets (others: the system's words).
        "no_answer_short": "no answer",
        "errno_ECONNRESET": "the connection was reset",
        "errno_EPIPE": "the connection is broken",
        "errno_ECONNABORTED": "the connection was aborted",
        "errno_ETIMEDOUT": "the connection timed out",
        "errno_ECONNREFUSED": "the connection was refused",
        "errno_EHOSTUNREACH": "the host is unreachable",
        "errno_ENETUNREACH": "the network is unreachable",
        "errno_ENETDOWN": "the network is down",
        "errno_unknown": "system error {code}",
    },
    "zh": {
        "welcome": "你以 {name} 的身份进入了聊天室",
        "hint": "回车发送, Esc 回车换行; /help 列出命令; /quit 或 Ctrl-D 退出",
        "help": ("/who      查看成员\n"
                 "/quit     退出聊天室 (Ctrl-D、Ctrl-C 也可以)\n"
                 "/help     显示这个列表\n"
                 "//who     把 \"/who\" 当作消息发送 (以 /单词 开头的一行是命令)"),
        "unknown_command": "没有 {command} 这个命令; /help 列出所有命令, 行首写 // 可以发送以 / 开头的消息。",
        "joined": "{name} 进入了聊天室",
        "left": "{name} 退出了聊天室",
        "message": "{name} 说: {text}",
        "announce": "管理员: {text}",
        "members": "聊天室里有: {names}",
        "refused_frame": "服务器拒绝了: {reason}",
        "name_prompt": "请输入名字: ",
        "cannot_join": "无法加入: {reason}。",
        "name_needed": "标准输入不是终端, 请用 --name 给出名字。",
        "goodbye": "你退出了聊天室",
        "interrupted": "还没有进入聊天室就停止了。",
        "split": "你的文字有 {size} 字节, 分成了 {count} 条消息发出 (每条最多 {limit} 字节)。",
        "too_long": "你的文字有 {size} 字节, 超过了客户端一次能发送的 {most} 字节 ({parts} 条, 每条 {limit} 字节), 所以一点也没有发送。",
        "no_server": "{where} 上没有聊天服务器。",
        "not_chat": "{where} 看起来不是 learn 聊天服务器 (它回答的是 {answer}); 请检查 --host、--port 或 --unix。",
        "forbidden": "你没有权限连接 {where}。",
        "unreachable": "无法连接 {where}: {error}。",
        "bad_host": "无法解析主机名 {host!r}。",
        "closed": "服务器关闭了连接。",
        "closed_because": "服务器关闭了连接: {reason}。",
        "lost": "与服务器的连接断了 ({error})。",
        "shutdown": "服务器正在关闭, 聊天结束了。",
        "kicked": "管理员把你移出了聊天室。",
        "no_answer": "{where} 上的服务器在 {seconds:g} 秒内没有回答; 请确认它是 learn 聊天服务器。",
        "huge_frame": "服务器发来 {length} 字节的帧, 超过了客户端能接受的大小。",
        "reason_NAME_TAKEN": "名字 {name} 已经有人用了",
        "reason_NAME_INVALID": "名字 {name} 不能用 (名字要有 1 到 {most} 个字符, 不能含控制字符, 也不能是 admin 这样的保留名字)",
        "reason_NOT_JOINED": "请先加入聊天室",
        "reason_ALREADY_JOINED": "你已经在聊天室里了",
        "reason_TOO_LARGE": "消息超过了服务器允许的大小",
        "reason_BAD_FRAME": "服务器不接受这一帧",
        "reason_RATE_LIMITED": "你发得太快了, 这条消息被丢掉了",
        "reason_SHUTDOWN": "服务器正在关闭",
        "reason_TIMEOUT": "你没有及时加入聊天室",
        "reason_KICKED": "管理员把你移出了聊天室",
        "reason_NO_SUCH_MEMBER": "没有这个名字的成员",
        "reason_unknown": "错误码 {code}",
        "no_answer_short": "没有回应",
        "errno_ECONNRESET": "连接被对方重置",
        "errno_EPIPE": "连接已经断开",
        "errno_ECONNABORTED": "连接被中止",
        "errno_ETIMEDOUT": "连接超时",
        "errno_ECONNREFUSED": "连接被拒绝",
        "errno_EHOSTUNREACH": "主机不可达",
        "errno_ENETUNREACH": "网络不可达",
        "errno_ENETDOWN": "网络断了",
        "errno_unknown": "系统错误 {code}",
    },
}
LANGUAGES = tuple(TEXTS)

CONTINUATION = "  | "  # starts the 2nd, 3rd... line of a message; no name can start with a space
CLIENT_MAX_FRAME = 16 << 20  # server frames may exceed its payload limit (long MEMBERS)
ANSWER_TIMEOUT = 15.0  # seconds to wait for WELCOME, or for the close after LEAVE
INTERRUPTED_PATIENCE = 1.0  # after Ctrl-C, seconds to wait for the close after LEAVE
CONNECT_TIMEOUT = 10.0
# PROTOCOL.md's defaults, which a client has to assume: WELCOME does not carry the server's limits.
MAX_SAY = codec.DEFAULT_MAX_PAYLOAD  # bytes in one SAY
SAY_RATE = 20.0  # SAYs per second, from a bucket of twice that...
SAY_BURST = 30  # ...of which we use 30: the server counts a SAY when it reads it, maybe later
MAX_PARTS = 40  # the whole bucket: a text needing more messages is refused
OUTBOX_FULL = 2 * MAX_PARTS  # pipe mode stops reading stdin while this many frames wait
FIRST_BYTES = 64  # kept from the start of the stream, to show what a non-chat server said
QUIT, WHO, HELP = "/quit", "/who", "/help"
COMMAND_WORD = re.compile(r"/[^\W\d_]+")  # "/who": a command; "/etc/hosts" or "/ x": a message
# A name that could be mistaken for something else is shown in quotes: one that holds
# ':' (another member's line), ',' (the member list), a quote or backslash (our quoting),
# starts with '[' ('[admin]') or with or ends in whitespace (a continuation line).
AMBIGUOUS_NAME = re.compile(r'[:,"\\]|^\[|^\s|\s$|^$')


# ----- where the chat is, and one connection to it -------------------------------------

@dataclass(frozen=True)
class Target:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None

    def __str__(self) -> str:
        return self.unix if self.unix else address_text((self.host, self.port))


class Link:
    """One connection to the chat: the socket plus the decoder, kept from JOIN to the end."""

    def __init__(self, sock: socket.socket, where: str = "") -> None:
        self.sock = sock
        self.where = where
        self.decoder = codec.new_decoder(CLIENT_MAX_FRAME)
        self.first_bytes = b""  # what the server said first, to name a server that is no chat

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _received(self, data: bytes) -> None:
        if len(self.first_bytes) < FIRST_BYTES:
            self.first_bytes += data[:FIRST_BYTES - len(self.first_bytes)]
        self.decoder.feed(data)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames now complete (FrameTooLarge if absurdly big)."""
        self._received(data)
        return list(self.decoder)

    def next_frame(self, timeout: float) -> Frame | None:
        """Blocking: the next frame, None at EOF; TimeoutError if nothing comes in time."""
        deadline = time.monotonic() + timeout
        while (frame := self.decoder.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            if not data:
                return None
            self._received(data)
        return frame

    def close(self) -> None:
        self.sock.close()


def open_link(target: Target, view: View) -> Link:
    """Connect, turning every way of finding no server into one sentence (exit 2)."""
    where = str(target)
    texts = view.texts
    try:
        if target.unix:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(target.unix)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.gaierror:
        raise UserError(texts["bad_host"].format(host=target.host)) from None
    except (ConnectionRefusedError, FileNotFoundError):
        raise UserError(texts["no_server"].format(where=where)) from None
    except PermissionError:
        raise UserError(texts["forbidden"].format(where=where)) from None
    except OSError as err:
        raise UserError(view.unreachable(where, err)) from None
    return Link(sock, where)


# ----- what the user sees ---------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    """Lines to show; `style` says what they are (joined, left, message, announce...)."""

    style: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Ended:
    """The server ended the chat; `sentence` says why (the client exits 1).

    A `notice` (kicked, the server stopping) is nobody's error: it is printed as a plain
    sentence, not as `error: ...`.
    """

    sentence: str
    notice: bool = False


@dataclass(frozen=True)
class Outgoing:
    """What one typed line asks for: frames to send, something to show, or leaving."""

    frames: tuple[bytes, ...] = ()
    shown: Shown | None = None
    quit: bool = False


class Notice(Exception):
    """The chat ended and nobody made a mistake (kicked, server stopping): exit 1, no `error:`."""


def finish(ended: Ended) -> NoReturn:
    """Leave the client with `ended`'s sentence: a notice, or an error (RunFailure)."""
    raise (Notice if ended.notice else RunFailure)(ended.sentence)


def display_name(name: str) -> str:
    """A name as shown: itself, or quoted when it could pass for something else."""
    if AMBIGUOUS_NAME.search(name) or printable(name) != name:
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{printable(escaped)}"'
    return name


def text_block(template: str, text: str, **fields: str) -> tuple[str, ...]:
    """A multi-line text: the first line in `template`, the others behind CONTINUATION."""
    first, *rest = [printable(line.expandtabs(4)) for line in text.split("\n")]
    return (template.format(text=first, **fields),) + tuple(CONTINUATION + line for line in rest)


class View:
    """Turns server frames into what the user sees, and typed lines into frames, in one
    language. Pure: no I/O."""

    def __init__(self, lang: str = "en") -> None:
        self.lang = lang
        self.texts = TEXTS[lang]

    # ----- frames from the server -----

    def frame(self, frame: Frame) -> Shown | Ended | None:
        (kind,), payload = frame.fields, frame.payload
        texts = self.texts
        text = payload.decode(errors="replace")
        if kind == Kind.JOINED:
            return Shown("joined", (texts["joined"].format(name=display_name(text)),))
        if kind == Kind.LEFT:
            return Shown("left", (texts["left"].format(name=display_name(text)),))
        if kind == Kind.MESSAGE:
            name, said = codec.decode_message(payload)
            return Shown("message", text_block(texts["message"], said, name=display_name(name)))
        if kind == Kind.ANNOUNCE:
            return Shown("announce", text_block(texts["announce"], text))
        if kind == Kind.MEMBERS:
            names = ", ".join(display_name(name) for name in text.split("\n")) if text else "-"
            return Shown("members", (texts["members"].format(names=names),))
        if kind == Kind.WELCOME:
            return Shown("welcome", (texts["welcome"].format(name=display_name(text)),))
        if kind == Kind.ERROR:
            return self.error(payload)
        return None  # PONG, or a kind from a newer server: nothing to show

    def error(self, payload: bytes) -> Shown | Ended:
        code, reason = codec.decode_error(payload)
        if code == ErrorCode.SHUTDOWN:
            return Ended(self.texts["shutdown"], notice=True)
        if code == ErrorCode.KICKED:
            return Ended(self.texts["kicked"], notice=True)
        if code in CLOSING_ERRORS:
            return Ended(self.texts["closed_because"].format(reason=self.reason(code, reason)))
        return Shown("problem", (self.texts["refused_frame"].format(reason=self.reason(code, reason)),))

    def join_refusal(self, payload: bytes, name: str) -> Shown | Ended | None:
        """The answer to a JOIN that was not WELCOME; None: the join timeout ran out (reconnect)."""
        code, reason = codec.decode_error(payload)
        if code == ErrorCode.TIMEOUT:
            return None
        if code in CLOSING_ERRORS:
            return self.error(payload)
        return Shown("problem", (self.texts["cannot_join"].format(reason=self.reason(code, reason, name)),))

    def reason(self, code: int, server_reason: str, name: str = "") -> str:
        """Why the server refused, in this language: English shows the server's own words,
        other languages our sentence for the error code (a server speaks English only)."""
        if self.lang == "en" and server_reason.strip():
            return printable(server_reason.rstrip("."))
        try:
            key = f"reason_{ErrorCode(code).name}"
        except ValueError:
            key = "reason_unknown"
        return self.texts[key].format(name=display_name(name), most=MAX_NAME, code=code)

    def closed(self) -> Ended:
        return Ended(self.texts["closed"])

    def lost(self, err: OSError) -> Ended:
        return Ended(self.texts["lost"].format(error=self.os_error(err)))

    def huge(self, err: FrameTooLarge) -> Ended:
        return Ended(self.texts["huge_frame"].format(length=err.length))

    def unreachable(self, where: str, err: OSError) -> str:
        return self.texts["unreachable"].format(where=where, error=self.os_error(err))

    def not_chat(self, where: str, first_bytes: bytes) -> str:
        """What a server that answers in anything but our frames said first, as text."""
        first_line = first_bytes.split(b"\n")[0].removesuffix(b"\r")[:40]
        return self.texts["not_chat"].format(where=where, answer=f'"{printable_bytes(first_line)}"')

    def os_error(self, err: OSError) -> str:
        """A failed connection in this language: our words for the usual errno values."""
        if isinstance(err, TimeoutError) and not err.errno:
            return self.texts["no_answer_short"]
        code = errno.errorcode.get(err.errno or 0, "")
        known = self.texts.get(f"errno_{code}")
        if known:
            return known
        if self.lang == "en":
            return os.strerror(err.errno) if err.errno else str(err)
        return self.texts["errno_unknown"].format(code=code or "?")

    def goodbye(self) -> str:
        return self.texts["goodbye"]

    # ----- lines the user typed -----

    def outgoing(self, line: str) -> Outgoing:
        """A typed line: a command (/who, /quit, /help), a refusal, or SAYs to send.

        A first word of `/` and letters is a command; a line starting with `//` is sent
        without its first slash, so `//who` says "/who".
        """
        words = line.split()
        if not words:
            return Outgoing()
        if COMMAND_WORD.fullmatch(words[0]):
            return self.command(words[0])
        if line.startswith("//"):
            line = line[1:]
        return self.say(line.encode("utf-8", "surrogateescape"))

    def command(self, word: str) -> Outgoing:
        if word == QUIT:
            return Outgoing(quit=True)
        if word == WHO:
            return Outgoing(frames=(codec.encode(Kind.WHO),))
        if word == HELP:
            return Outgoing(shown=Shown("hint", tuple(self.texts["help"].split("\n"))))
        refusal = self.texts["unknown_command"].format(command=printable(word))
        return Outgoing(shown=Shown("problem", (refusal,)))

    def say(self, data: bytes) -> Outgoing:
        """SAY frames for a text: one, several for a long text, or none and a refusal."""
        parts = split_payload(data, MAX_SAY)
        sizes = {"size": len(data), "count": len(parts), "limit": MAX_SAY}
        if len(parts) > MAX_PARTS:
            refusal = self.texts["too_long"].format(most=MAX_SAY * MAX_PARTS, parts=MAX_PARTS, **sizes)
            return Outgoing(shown=Shown("problem", (refusal,)))
        note = Shown("note", (self.texts["split"].format(**sizes),)) if len(parts) > 1 else None
        return Outgoing(frames=tuple(codec.encode(Kind.SAY, part) for part in parts), shown=note)


# ----- long texts and the rate limit --------------------------------------------------------

def split_payload(data: bytes, limit: int = MAX_SAY) -> list[bytes]:
    """UTF-8 `data` in pieces of at most `limit` bytes, never cutting a character.

    A piece ends at its last line break (which is dropped: the next message starts the
    next line), else after its last space in the second half, else at the last whole
    character that fits.
    """
    parts = []
    while len(data) > limit:
        end = limit
        while end > 0 and data[end] & 0xC0 == 0x80:  # data[end] continues a character
            end -= 1
        end = end or limit  # not UTF-8 at all: cut anyway, the server will say what it thinks
        newline = data.rfind(b"\n", 1, end)
        if newline > 0:
            parts.append(data[:newline])
            data = data[newline + 1:]
            continue
        space = data.rfind(b" ", end // 2, end)
        cut = space + 1 if space > 0 else end
        parts.append(data[:cut])
        data = data[cut:]
    if data:
        parts.append(data)
    return parts


class Pacer:
    """The server's default rate limit, mirrored: a SAY waits for a token instead of being
    dropped. Our bucket starts at our WELCOME, after the server's; it is 10 tokens smaller,
    because the server takes a SAY from its bucket when it reads it, which may be up to
    half a second (10 tokens' refill) after we sent it on a busy machine."""

    def __init__(self, rate: float = SAY_RATE, burst: int = SAY_BURST, now: float | None = None) -> None:
        self.rate, self.capacity = rate, burst
        self.tokens = self.capacity
        self.at = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def delay(self, now: float) -> float:
        """Seconds until a SAY may go."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


class Outbox:
    """Frames waiting to be sent, in order; SAYs leave at the Pacer's pace."""

    def __init__(self, pacer: Pacer | None = None) -> None:
        self.frames: deque[bytes] = deque()
        self.pacer = pacer or Pacer()

    def __len__(self) -> int:
        return len(self.frames)

    def extend(self, frames: tuple[bytes, ...]) -> None:
        self.frames.extend(frames)

    def delay(self, now: float) -> float | None:
        """Seconds until the next frame may go; None when nothing waits."""
        if not self.frames:
            return None
        return self.pacer.delay(now) if self.frames[0][4] == Kind.SAY else 0.0

    def pop(self, now: float) -> bytes:
        data = self.frames.popleft()
        if data[4] == Kind.SAY:
            self.pacer.take(now)
        return data


# ----- joining: the same in both modes ---------------------------------------------------

AskName = Callable[[str | None], str | None]  # (why the last name failed) -> a name, or None to give up


def join_room(target: Target, view: View, name: str | None, ask_name: AskName) -> tuple[Link, Shown] | None:
    """Connect and JOIN until the server says WELCOME. None: the user gave up.

    If the server closes the connection before answering -- its join timeout ran out
    while the user was typing -- reconnect once and JOIN again with the name typed.
    """
    link = open_link(target, view)
    name = ask_name(None) if name is None else name
    reconnected = False
    try:
        while name is not None:
            reply = request_join(link, name, view)
            if reply is None and not reconnected:
                link.close()
                link, reconnected = open_link(target, view), True
                continue
            if reply is None or isinstance(reply, Ended):
                finish(reply or view.closed())
            if reply.style == "welcome":
                return link, reply
            name, reconnected = ask_name(reply.lines[0]), False
    except BaseException:
        link.close()
        raise
    link.close()
    return None


def request_join(link: Link, name: str, view: View) -> Shown | Ended | None:
    """Send JOIN and read the answer: WELCOME, a refusal to show, Ended, or None (closed).

    A chat server answers a JOIN with WELCOME or ERROR and nothing else; anything else
    (an SSH banner, an HTTP error, our own bytes echoed) is not a chat server: exit 2.
    """
    try:
        link.send(codec.encode(Kind.JOIN, name.encode("utf-8", "surrogateescape")))
        frame = link.next_frame(ANSWER_TIMEOUT)
    except TimeoutError:
        if link.decoder.pending:  # something came, but not even one frame header of ours
            raise UserError(view.not_chat(link.where, link.first_bytes)) from None
        raise RunFailure(view.texts["no_answer"].format(where=link.where, seconds=ANSWER_TIMEOUT)) from None
    except (BrokenPipeError, ConnectionResetError):
        return None
    except FrameTooLarge:
        raise UserError(view.not_chat(link.where, link.first_bytes)) from None
    if frame is None:
        if link.decoder.pending:  # it closed in the middle of something that is not our frame
            raise UserError(view.not_chat(link.where, link.first_bytes))
        return None
    (kind,) = frame.fields
    if kind == Kind.WELCOME:
        return view.frame(frame)
    if kind == Kind.ERROR:
        return view.join_refusal(frame.payload, name)
    raise UserError(view.not_chat(link.where, link.first_bytes))


# ----- pipe mode: a select() loop over stdin and the socket ------------------------------

class LineSplitter:
    """Bytes from os.read() in, whole text lines out (the last one at EOF)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        return [self._text(line) for line in lines]

    def finish(self) -> list[str]:
        rest, self.buffer = self.buffer, b""
        return [self._text(rest)] if rest else []

    @staticmethod
    def _text(line: bytes) -> str:
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")


class PlainScreen:
    """Pipe mode's output: events on stdout, problems and notes on stderr, no colour, flushed."""

    TO_STDERR = ("problem", "note")

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out, self.err = out or sys.stdout, err or sys.stderr
        for stream in (self.out, self.err):  # an unencodable character must not crash us
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")

    def show(self, shown: Shown) -> None:
        stream = self.err if shown.style in self.TO_STDERR else self.out
        stream.write("".join(line + "\n" for line in shown.lines))
        stream.flush()


def say_on_fresh_line(sentence: str, after_echoed_ctrl_c: bool = False) -> None:
    """One line on stderr; after a ^C the terminal echoed, start a new line first."""
    fresh = "\n" if after_echoed_ctrl_c and sys.stderr.isatty() else ""
    print(fresh + sentence, file=sys.stderr, flush=True)


def run_pipe(target: Target, view: View, name: str | None, linger: float) -> int:
    """Each stdin line is a message; at EOF (plus `linger` seconds) LEAVE, and exit 0."""
    if name is None:
        raise UserError(view.texts["name_needed"])

    def refuse(reason: str | None) -> str | None:
        raise UserError(reason or view.texts["name_needed"])

    screen = PlainScreen()
    link: Link | None = None
    try:
        link, welcome = join_room(target, view, name, refuse)  # type: ignore[misc]
        screen.show(welcome)
        pipe_loop(link, view, screen, linger)
    except KeyboardInterrupt:
        if link is None:
            raise  # not in the room yet: run_client says so
        leave(link, view, screen.show, INTERRUPTED_PATIENCE)
        say_on_fresh_line(view.goodbye(), after_echoed_ctrl_c=True)
        return 0
    leave(link, view, screen.show)
    return 0


def pipe_loop(link: Link, view: View, screen: PlainScreen, linger: float) -> None:
    """Until stdin ends (and `linger` more seconds) or /quit: send lines, show frames."""
    stdin = sys.stdin.fileno()
    lines = LineSplitter()
    outbox = Outbox()
    reading, quitting = True, False
    leave_at: float | None = None
    link.sock.settimeout(None)
    while True:
        wait = send_due(link, outbox, view)
        if not reading and wait is None:  # input done and everything sent: linger, then go
            now = time.monotonic()
            leave_at = leave_at or now + (0.0 if quitting else linger)
            if now >= leave_at:
                return
            wait = leave_at - now
        watched = [link.sock, stdin] if reading and len(outbox) < OUTBOX_FULL else [link.sock]
        readable, _, _ = select.select(watched, [], [], wait)
        if link.sock in readable:
            ended = show_frames(receive_some(link, view), view, screen.show)
            if ended:
                finish(ended)
        if stdin in readable:
            data = read_input(stdin)
            for line in lines.feed(data) if data else lines.finish():
                wanted = view.outgoing(line)
                if wanted.shown:
                    screen.show(wanted.shown)
                outbox.extend(wanted.frames)
                if wanted.quit:
                    reading, quitting = False, True
                    break
            reading = reading and bool(data)


def send_due(link: Link, outbox: Outbox, view: View) -> float | None:
    """Send every frame the pace allows now; seconds until the next one (None: all sent)."""
    while (wait := outbox.delay(time.monotonic())) == 0:
        try:
            link.send(outbox.pop(time.monotonic()))
        except OSError as err:
            finish(view.lost(err))
    return wait


def read_input(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # stdin closed under us: same as its end
        return b""


def receive_some(link: Link, view: View) -> list[Frame] | Ended:
    """One recv() on a readable socket: the frames it completed, or why the chat ended."""
    try:
        data = link.sock.recv(65536)
        if not data:
            return view.closed()
        return link.feed(data)
    except OSError as err:
        return view.lost(err)
    except FrameTooLarge as err:
        return view.huge(err)


def show_frames(received: list[Frame] | Ended, view: View, show: Callable[[Shown], None]) -> Ended | None:
    """Show each frame; returns why the chat ended (EOF, reset, SHUTDOWN, KICKED), if it did."""
    if isinstance(received, Ended):
        return received
    for frame in received:
        outcome = view.frame(frame)
        if isinstance(outcome, Ended):
            return outcome
        if outcome is not None:
            show(outcome)
    return None


def leave(link: Link, view: View, show: Callable[[Shown], None], patience: float = ANSWER_TIMEOUT) -> None:
    """LEAVE, then show what still arrives until the server closes (or `patience` runs out).

    After Ctrl-C we wait only a moment, and a second Ctrl-C stops the waiting."""
    try:
        link.sock.setblocking(True)
        link.send(codec.encode(Kind.LEAVE))
        while (frame := link.next_frame(patience)) is not None:
            outcome = view.frame(frame)
            if isinstance(outcome, Shown):
                show(outcome)
    except (OSError, TimeoutError, FrameTooLarge, KeyboardInterrupt):
        pass  # a lost or silent server changes nothing
    finally:
        link.close()


# ----- interactive mode: prompt_toolkit and asyncio ---------------------------------------

STYLES = {
    "welcome": "bold",
    "joined": "ansigreen",
    "left": "ansiyellow",
    "message": "",
    "announce": "bold ansimagenta",
    "members": "ansicyan",
    "problem": "ansired",
    "hint": "italic",
    "note": "italic",
}


def show_styled(shown: Shown) -> None:
    """Print above the prompt; (style, text) pairs are never parsed, so no markup injection."""
    from prompt_toolkit import print_formatted_text
    from prompt_toolkit.formatted_text import FormattedText

    style = STYLES.get(shown.style, "")
    print_formatted_text(FormattedText([(style, "\n".join(shown.lines))]))


def run_interactive(target: Target, view: View, name: str | None) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _new_line(event) -> None:  # type: ignore[no-untyped-def]
        event.current_buffer.insert_text("\n")

    @bindings.add("c-c")
    def _leave(event) -> None:  # type: ignore[no-untyped-def]
        """Ctrl-C ends the prompt like Ctrl-D: a KeyboardInterrupt raised inside an asyncio
        task escapes the event loop and leaves "Task exception was never retrieved"."""
        event.app.exit(exception=EOFError())

    session: PromptSession[str] = PromptSession(key_bindings=bindings)
    signal.signal(signal.SIGTERM, end_prompt_on_sigterm(session))

    def ask_name(problem: str | None) -> str | None:
        if problem:
            show_styled(Shown("problem", (problem,)))
        try:
            return session.prompt(view.texts["name_prompt"])
        except (EOFError, KeyboardInterrupt):
            return None

    joined = join_room(target, view, name, ask_name)
    if joined is None:
        say_on_fresh_line(view.texts["interrupted"])
        return 0
    link, welcome = joined
    show_styled(welcome)
    show_styled(Shown("hint", (view.texts["hint"],)))
    try:
        ended = asyncio.run(chat_interactive(session, link, view))
    except KeyboardInterrupt:  # a SIGINT while no prompt was up to turn it into a key
        print(flush=True)  # past the ^C the terminal echoed
        leave(link, view, show_styled, INTERRUPTED_PATIENCE)
        ended = None
    finally:
        link.close()
    if ended is not None:
        finish(ended)
    show_styled(Shown("left", (view.goodbye(),)))
    return 0


def end_prompt_on_sigterm(session: PromptSession[str]) -> Callable[[int, object], None]:
    """SIGTERM ends a prompt the way Ctrl-C does, so prompt_toolkit restores the terminal
    (raw mode, bracketed paste); with no prompt up it is a KeyboardInterrupt."""
    def handler(signum: int, frame: object) -> None:
        app = session.app
        if not app.is_running or app.loop is None:
            raise KeyboardInterrupt
        app.loop.call_soon_threadsafe(end_prompt, app)

    return handler


def end_prompt(app) -> None:  # type: ignore[no-untyped-def]
    if app.is_running and app.future is not None and not app.future.done():
        app.exit(exception=EOFError())


def ignore_interrupts(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The loop's exception handler: a Ctrl-C that hit a task is handled by run_interactive."""
    if not isinstance(context.get("exception"), KeyboardInterrupt):
        loop.default_exception_handler(context)


async def chat_interactive(session: PromptSession[str], link: Link, view: View) -> Ended | None:
    """Prompt and receive at once; None when the user left, Ended when the server did."""
    from prompt_toolkit.patch_stdout import patch_stdout

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(ignore_interrupts)
    link.sock.setblocking(False)
    outbox = Outbox()
    receiving = asyncio.create_task(receive_forever(loop, link, view))
    with patch_stdout():
        try:
            while True:
                prompting = asyncio.create_task(session.prompt_async("> "))
                await asyncio.wait({prompting, receiving}, return_when=asyncio.FIRST_COMPLETED)
                if receiving.done():
                    prompting.cancel()
                    await asyncio.gather(prompting, return_exceptions=True)
                    return receiving.result()
                try:
                    wanted = view.outgoing(prompting.result())
                except (EOFError, KeyboardInterrupt):
                    break
                if wanted.shown:
                    show_styled(wanted.shown)
                outbox.extend(wanted.frames)
                await send_paced(loop, link, outbox)
                if wanted.quit:
                    break
            await send_async(loop, link, codec.encode(Kind.LEAVE))
            try:
                await asyncio.wait_for(asyncio.shield(receiving), ANSWER_TIMEOUT)
            except asyncio.TimeoutError:
                pass
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    return None


async def send_paced(loop: asyncio.AbstractEventLoop, link: Link, outbox: Outbox) -> None:
    """Send what waits in the outbox, each SAY when the Pacer lets it go."""
    while (wait := outbox.delay(time.monotonic())) is not None:
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            await send_async(loop, link, outbox.pop(time.monotonic()))


async def send_async(loop: asyncio.AbstractEventLoop, link: Link, data: bytes) -> None:
    try:
        await loop.sock_sendall(link.sock, data)
    except OSError:
        pass  # the receiving task sees the same failure and reports it


async def receive_forever(loop: asyncio.AbstractEventLoop, link: Link, view: View) -> Ended:
    """Show frames as they arrive, until the server ends the chat; return why."""
    while True:
        try:
            data = await loop.sock_recv(link.sock, 65536)
            received = link.feed(data) if data else view.closed()
        except OSError as err:
            received = view.lost(err)
        except FrameTooLarge as err:
            received = view.huge(err)
        ended = show_frames(received, view, show_styled)
        if ended:
            return ended


# ----- the entry point ---------------------------------------------------------------------

def stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM: leave the room the way Ctrl-C does (LEAVE, one line, exit 0)."""
    raise KeyboardInterrupt


def run_client(target: Target, name: str | None = None, lang: str = "en", linger: float = 0.0) -> int:
    """`learn chat join`: interactive in a terminal, pipe mode otherwise.

    Exit 0 when you leave, Ctrl-C included; 1 with a plain notice when you were kicked
    or the server stopped; errors go to the CLI as UserError (2) or RunFailure (1).
    """
    view = View(lang)
    signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return run_interactive(target, view, name)
        return run_pipe(target, view, name, linger)
    except KeyboardInterrupt:  # while connecting or joining: nobody is in the room yet
        say_on_fresh_line(view.texts["interrupted"], after_echoed_ctrl_c=True)
        return 0
    except Notice as notice:
        say_on_fresh_line(str(notice))
        return 1
