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
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import select
import socket
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, TextIO

from capstone import codec
from capstone.codec import CLOSING_ERRORS, ErrorCode, Kind
from lessons.common import DEFAULT_HOST, DEFAULT_PORT, RunFailure, UserError, address_text, printable
from lessons.framing import Frame, FrameTooLarge

if TYPE_CHECKING:  # prompt_toolkit is imported only when a terminal is there to use it
    from prompt_toolkit import PromptSession

# Every string the client shows, in both languages; the zh wording is the lecture notes'.
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "welcome": "you are in the room as {name}",
        "hint": "Enter sends, Esc Enter starts a new line; /who lists the members; /quit or Ctrl-D leaves",
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
        "no_server": "no chat server is listening on {where}.",
        "forbidden": "you are not allowed to connect to {where}.",
        "unreachable": "cannot reach {where}: {error}.",
        "bad_host": "cannot resolve the host name {host!r}.",
        "closed": "the server closed the connection.",
        "closed_because": "the server closed the connection: {reason}.",
        "lost": "the connection to the server was lost ({error}).",
        "shutdown": "the server is stopping, so the chat is over.",
        "kicked": "the administrator removed you from the room.",
        "no_answer": "the server did not answer within {seconds:g} seconds.",
        "huge_frame": "the server sent a frame of {length} bytes, more than this client accepts.",
    },
    "zh": {
        "welcome": "你以 {name} 的身份进入了聊天室",
        "hint": "回车发送, Esc 回车换行; /who 查看成员; /quit 或 Ctrl-D 退出",
        "joined": "{name} 进入了聊天室",
        "left": "{name} 退出了聊天室",
        "message": "{name} 说: {text}",
        "announce": "管理员: {text}",
        "members": "聊天室里有: {names}",
        "refused_frame": "服务器拒绝了: {reason}",
        "name_prompt": "请输入名字: ",
        "cannot_join": "无法加入: {reason}。",
        "name_needed": "标准输入不是终端, 请用 --name NAME 给出名字。",
        "goodbye": "你退出了聊天室",
        "no_server": "{where} 上没有聊天服务器。",
        "forbidden": "你没有权限连接 {where}。",
        "unreachable": "无法连接 {where}: {error}。",
        "bad_host": "无法解析主机名 {host!r}。",
        "closed": "服务器关闭了连接。",
        "closed_because": "服务器关闭了连接: {reason}。",
        "lost": "与服务器的连接断了 ({error})。",
        "shutdown": "服务器正在关闭, 聊天结束了。",
        "kicked": "管理员把你移出了聊天室。",
        "no_answer": "服务器在 {seconds:g} 秒内没有回答。",
        "huge_frame": "服务器发来 {length} 字节的帧, 超过了客户端能接受的大小。",
    },
}
LANGUAGES = tuple(TEXTS)

CONTINUATION = "  | "  # starts the 2nd, 3rd... line of a message; no name can start with a space
CLIENT_MAX_FRAME = 16 << 20  # server frames may exceed its payload limit (long MEMBERS)
ANSWER_TIMEOUT = 15.0  # seconds to wait for WELCOME, or for the close after LEAVE
CONNECT_TIMEOUT = 10.0
QUIT = "/quit"
WHO = "/who"
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

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = codec.new_decoder(CLIENT_MAX_FRAME)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames now complete (FrameTooLarge if absurdly big)."""
        self.decoder.feed(data)
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
            self.decoder.feed(data)
        return frame

    def close(self) -> None:
        self.sock.close()


def open_link(target: Target, texts: dict[str, str]) -> Link:
    """Connect, turning every way of finding no server into one sentence (exit 2)."""
    where = str(target)
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
    except (socket.timeout, OSError) as err:
        error = "no answer" if isinstance(err, socket.timeout) else os.strerror(err.errno or errno.EIO)
        raise UserError(texts["unreachable"].format(where=where, error=error)) from None
    return Link(sock)


# ----- what the user sees ---------------------------------------------------------------

@dataclass(frozen=True)
class Shown:
    """Lines to show; `style` says what they are (joined, left, message, announce...)."""

    style: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Ended:
    """The server ended the chat; `sentence` says why (the client exits 1)."""

    sentence: str


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
    """Turns server frames into what the user sees, in one language. Pure: no I/O."""

    def __init__(self, lang: str = "en") -> None:
        self.texts = TEXTS[lang]

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
            return Ended(self.texts["shutdown"])
        if code == ErrorCode.KICKED:
            return Ended(self.texts["kicked"])
        if code in CLOSING_ERRORS:
            return Ended(self.texts["closed_because"].format(reason=printable(reason.rstrip("."))))
        return Shown("problem", (self.texts["refused_frame"].format(reason=printable(reason)),))

    def closed(self) -> Ended:
        return Ended(self.texts["closed"])

    def lost(self, err: OSError) -> Ended:
        return Ended(self.texts["lost"].format(error=os.strerror(err.errno) if err.errno else str(err)))

    def huge(self, err: FrameTooLarge) -> Ended:
        return Ended(self.texts["huge_frame"].format(length=err.length))


def frame_for_line(line: str) -> bytes | str | None:
    """What one input line asks for: a frame to send, QUIT, or None (a blank line).

    `/who` and `/quit` are commands; a line starting with `//` is sent without its first
    slash, so `//who` says "/who".
    """
    stripped = line.strip()
    if stripped == QUIT:
        return QUIT
    if stripped == WHO:
        return codec.encode(Kind.WHO)
    if not stripped:
        return None
    if line.startswith("//"):
        line = line[1:]
    return codec.encode(Kind.SAY, line.encode("utf-8", "surrogateescape"))


# ----- joining: the same in both modes ---------------------------------------------------

AskName = Callable[[str | None], str | None]  # (why the last name failed) -> a name, or None to give up


def join_room(target: Target, view: View, name: str | None, ask_name: AskName) -> tuple[Link, Shown] | None:
    """Connect and JOIN until the server says WELCOME. None: the user gave up.

    If the server closes the connection before answering -- its join timeout ran out
    while the user was typing -- reconnect once and JOIN again with the name typed.
    """
    link = open_link(target, view.texts)
    name = ask_name(None) if name is None else name
    reconnected = False
    try:
        while name is not None:
            reply = request_join(link, name, view)
            if reply is None and not reconnected:
                link.close()
                link, reconnected = open_link(target, view.texts), True
                continue
            if reply is None or isinstance(reply, Ended):
                raise RunFailure((reply or view.closed()).sentence)
            if reply.style == "welcome":
                return link, reply
            name, reconnected = ask_name(reply.lines[0]), False
    except BaseException:
        link.close()
        raise
    link.close()
    return None


def request_join(link: Link, name: str, view: View) -> Shown | Ended | None:
    """Send JOIN and read the answer: WELCOME, a refusal to show, Ended, or None (closed)."""
    try:
        link.send(codec.encode(Kind.JOIN, name.encode("utf-8", "surrogateescape")))
        while True:
            frame = link.next_frame(ANSWER_TIMEOUT)
            if frame is None:
                return None
            (kind,) = frame.fields
            if kind == Kind.WELCOME:
                return view.frame(frame)
            if kind == Kind.ERROR:
                return join_refusal(frame.payload, view)
    except TimeoutError:
        raise RunFailure(view.texts["no_answer"].format(seconds=ANSWER_TIMEOUT)) from None
    except (BrokenPipeError, ConnectionResetError):
        return None
    except FrameTooLarge as err:
        raise RunFailure(view.huge(err).sentence) from None


def join_refusal(payload: bytes, view: View) -> Shown | Ended | None:
    code, reason = codec.decode_error(payload)
    if code == ErrorCode.TIMEOUT:
        return None
    if code in CLOSING_ERRORS:
        return view.error(payload)
    return Shown("problem", (view.texts["cannot_join"].format(reason=printable(reason.rstrip("."))),))


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
    """Pipe mode's output: events on stdout, problems on stderr, no colour, flushed."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out, self.err = out or sys.stdout, err or sys.stderr
        for stream in (self.out, self.err):  # an unencodable character must not crash us
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")

    def show(self, shown: Shown) -> None:
        stream = self.err if shown.style == "problem" else self.out
        stream.write("".join(line + "\n" for line in shown.lines))
        stream.flush()


def run_pipe(target: Target, view: View, name: str | None, linger: float) -> int:
    """Each stdin line is a message; at EOF (plus `linger` seconds) LEAVE, and exit 0."""
    if name is None:
        raise UserError(view.texts["name_needed"])

    def refuse(reason: str | None) -> str | None:
        raise UserError(reason or view.texts["name_needed"])

    screen = PlainScreen()
    link, welcome = join_room(target, view, name, refuse)  # type: ignore[misc]
    screen.show(welcome)
    try:
        pipe_loop(link, view, screen, linger)
    except KeyboardInterrupt:
        pass
    leave(link, view, screen.show)
    return 0


def pipe_loop(link: Link, view: View, screen: PlainScreen, linger: float) -> None:
    """Until stdin ends (and `linger` more seconds) or /quit: send lines, show frames."""
    stdin = sys.stdin.fileno()
    lines = LineSplitter()
    leave_at: float | None = None
    link.sock.settimeout(None)
    while leave_at is None or time.monotonic() < leave_at:
        watched = [link.sock] if leave_at is not None else [link.sock, stdin]
        wait = None if leave_at is None else max(0.0, leave_at - time.monotonic())
        readable, _, _ = select.select(watched, [], [], wait)
        if link.sock in readable:
            ended = show_frames(receive_some(link, view), view, screen.show)
            if ended:
                raise RunFailure(ended.sentence)
        if stdin in readable:
            data = read_input(stdin)
            batch = lines.feed(data) if data else lines.finish()
            if send_lines(link, batch, view) == QUIT:
                return
            if not data:
                leave_at = time.monotonic() + linger


def read_input(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # stdin closed under us: same as its end
        return b""


def send_lines(link: Link, lines: Iterable[str], view: View) -> str | None:
    """Send what the lines ask for; QUIT as soon as one says /quit."""
    for line in lines:
        frame = frame_for_line(line)
        if frame == QUIT:
            return QUIT
        if isinstance(frame, bytes):
            try:
                link.send(frame)
            except OSError as err:
                raise RunFailure(view.lost(err).sentence) from None
    return None


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


def leave(link: Link, view: View, show: Callable[[Shown], None]) -> None:
    """LEAVE, then show what still arrives until the server closes (or a deadline passes)."""
    try:
        link.send(codec.encode(Kind.LEAVE))
        while (frame := link.next_frame(ANSWER_TIMEOUT)) is not None:
            outcome = view.frame(frame)
            if isinstance(outcome, Shown):
                show(outcome)
    except (OSError, TimeoutError, FrameTooLarge):
        pass  # we are leaving anyway: a lost or silent server changes nothing
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

    session: PromptSession[str] = PromptSession(key_bindings=bindings)

    def ask_name(problem: str | None) -> str | None:
        if problem:
            show_styled(Shown("problem", (problem,)))
        try:
            return session.prompt(view.texts["name_prompt"])
        except (EOFError, KeyboardInterrupt):
            return None

    joined = join_room(target, view, name, ask_name)
    if joined is None:
        return 0
    link, welcome = joined
    show_styled(welcome)
    show_styled(Shown("hint", (view.texts["hint"],)))
    try:
        ended = asyncio.run(chat_interactive(session, link, view))
    except KeyboardInterrupt:
        ended = None
    finally:
        link.close()
    if ended is not None:
        raise RunFailure(ended.sentence)
    show_styled(Shown("left", (view.texts["goodbye"],)))
    return 0


async def chat_interactive(session: PromptSession[str], link: Link, view: View) -> Ended | None:
    """Prompt and receive at once; None when the user left, Ended when the server did."""
    from prompt_toolkit.patch_stdout import patch_stdout

    loop = asyncio.get_running_loop()
    link.sock.setblocking(False)
    receiving = asyncio.create_task(receive_forever(loop, link, view))
    with patch_stdout():
        while True:
            prompting = asyncio.create_task(session.prompt_async("> "))
            await asyncio.wait({prompting, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done():
                prompting.cancel()
                await asyncio.gather(prompting, return_exceptions=True)
                return receiving.result()
            try:
                frame = frame_for_line(prompting.result())
            except (EOFError, KeyboardInterrupt):
                break
            if frame == QUIT:
                break
            if isinstance(frame, bytes):
                await send_async(loop, link, frame)
        await send_async(loop, link, codec.encode(Kind.LEAVE))
        try:
            await asyncio.wait_for(receiving, ANSWER_TIMEOUT)
        except asyncio.TimeoutError:
            pass
    return None


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

def run_client(target: Target, name: str | None = None, lang: str = "en", linger: float = 0.0) -> int:
    """`learn chat join`: interactive in a terminal, pipe mode otherwise."""
    view = View(lang)
    if sys.stdin.isatty() and sys.stdout.isatty():
        return run_interactive(target, view, name)
    return run_pipe(target, view, name, linger)
