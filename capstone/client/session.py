"""Joining and leaving the room, and how a chat ends: the same in pipe mode and in a terminal.

The server answers a JOIN with WELCOME or ERROR and nothing else; whatever else comes
back names a server that is no chat server (exit 2). When the server closes before
answering (its join timeout ran out while the user was typing a name), we reconnect
once. Leaving sends LEAVE and shows what still arrives until the server closes.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn

from capstone import codec
from capstone.client.link import Link, Target, open_link
from capstone.client.view import Ended, Shown, View
from capstone.codec import Kind
from lessons.toolkit.common import RunFailure, UserError
from lessons.toolkit.framing import Frame, FrameTooLarge

ANSWER_TIMEOUT = 15.0  # seconds to wait for WELCOME, or for the close after LEAVE
INTERRUPTED_PATIENCE = 1.0  # after Ctrl-C, seconds to wait for the close after LEAVE


class Notice(Exception):
    """The chat ended and nobody made a mistake (kicked, server stopping): exit 1, no `error:`."""


def finish(ended: Ended) -> NoReturn:
    """Leave the client with `ended`'s sentence: a notice, or an error (RunFailure)."""
    raise (Notice if ended.notice else RunFailure)(ended.sentence)


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


def say_on_fresh_line(sentence: str, after_echoed_ctrl_c: bool = False) -> None:
    """One line on stderr; after a ^C the terminal echoed, start a new line first."""
    fresh = "\n" if after_echoed_ctrl_c and sys.stderr.isatty() else ""
    print(fresh + sentence, file=sys.stderr, flush=True)
