"""The server's own terminal: the administrator types announcements and a few commands.

    /help          what can be typed here
    /who           the members, in join order
    /kick NAME     remove a member (as `learn chat admin kick NAME` does)
    //text         announce "/text"
    anything else  announced to every member

Another `/word` is refused here with a sentence, so a typo such as "/woh" never reaches
everyone. Answers go to the server's log, where the administrator is looking. Pure:
`parse_line` turns a line into an action and `ServerConsole.perform` an action into the
room's effects; the server only reads the terminal and carries the effects out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from capstone.room import Effect, Log, Room
from lessons.toolkit.i18n import _, ngettext

COMMAND_WORD = re.compile(r"/[^\W\d_]+")  # "/who" is a command; "/etc/hosts" or "/ x" is text
LOG_TAG = "admin"  # the log event of every console answer


@dataclass(frozen=True)
class Announce:
    text: str


@dataclass(frozen=True)
class Who:
    pass


@dataclass(frozen=True)
class Kick:
    name: str


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Unknown:
    command: str


Action = Announce | Who | Kick | Help | Unknown


def parse_line(line: str) -> Action | None:
    """What a typed line asks for; None for a blank line."""
    text = line.strip()
    if not text:
        return None
    word, _space, rest = text.partition(" ")
    if not COMMAND_WORD.fullmatch(word):
        return Announce(text[1:] if text.startswith("//") else text)
    if word == "/who":
        return Who()
    if word == "/help":
        return Help()
    if word == "/kick" and rest.strip():
        return Kick(rest.strip())
    return Unknown(word)


class ServerConsole:
    """Bytes typed on the server's terminal in, the room's effects out, line by line."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes, room: Room) -> list[list[Effect]]:
        """The effects of each whole line in `data`; b"" is the end of the input (Ctrl-D)."""
        if data:
            *lines, self.buffer = (self.buffer + data).split(b"\n")
        else:
            lines, self.buffer = [self.buffer], b""
        results = []
        for line in lines:
            action = parse_line(line.decode(errors="replace"))
            if action is not None:
                results.append(self.perform(action, room))
        if not data:
            results.append([self.log(_(
                "the console's input ended (Ctrl-D): lines typed here are no longer read; "
                "`learn chat admin say TEXT` still announces, Ctrl-C stops the server"))])
        return results

    def perform(self, action: Action, room: Room) -> list[Effect]:
        if isinstance(action, Announce):
            return room.announce(action.text)
        if isinstance(action, Who):
            return [self.log(self.members_text(room.member_names()))]
        if isinstance(action, Kick):
            effects = room.kick(action.name)
            if effects is None:
                return [self.log(_("nobody in the room is called {name}").format(name=action.name))]
            return effects
        if isinstance(action, Help):
            return [self.log(line) for line in self.help_lines()]
        if action.command == "/kick":
            return [self.log(_("/kick needs the member's name: /kick NAME"))]
        return [self.log(_("there is no console command {command}; /help lists them, and a line "
                           "starting with // announces it with one slash less").format(command=action.command))]

    @staticmethod
    def members_text(names: list[str]) -> str:
        if not names:
            return _("the room is empty")
        return ngettext("{count} member: {names}", "{count} members: {names}", len(names)).format(
            count=len(names), names=", ".join(names))

    @staticmethod
    def help_lines() -> list[str]:
        return [
            _("/who          list the members"),
            _("/kick NAME    remove a member from the room"),
            _("/help         show this list"),
            _("//text        announce \"/text\"; any other line is announced to everyone"),
        ]

    @staticmethod
    def log(text: str) -> Log:
        return Log(LOG_TAG, text)
