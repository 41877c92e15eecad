"""Every string `learn chat join` shows, keyed by what is said; `View` formats these templates.

The catalog (lessons/locale) translates them; the Chinese wording is the lecture notes':
“bob 进入了聊天室”, “bob 说: ...”, “bob 退出了聊天室”. `texts_in(lang)["joined"]` is one
template in one language.
"""

from __future__ import annotations

import gettext

from lessons.toolkit.i18n import N_, translation_for

TEXTS: dict[str, str] = {
    "welcome": N_("you are in the room as {name}"),
    "hint": N_("Enter sends, Esc Enter starts a new line; /help lists the commands; /quit or Ctrl-D leaves"),
    "help": N_("/who      lists the members\n"
                "/quit     leaves the room (so do Ctrl-D and Ctrl-C)\n"
                "/help     shows this list\n"
                "//who     sends \"/who\" as a message (a line starting with /word is a command)"),
    "unknown_command": N_("there is no command {command}; /help lists them, and // sends a line starting with /."),
    "joined": N_("{name} entered the room"),
    "left": N_("{name} left the room"),
    "message": N_("{name}: {text}"),
    "announce": N_("[admin] {text}"),
    "members": N_("in the room: {names}"),
    "refused_frame": N_("the server refused that: {reason}"),
    "name_prompt": N_("your name: "),
    "cannot_join": N_("cannot join: {reason}."),
    "name_needed": N_("stdin is not a terminal, so give your name with --name NAME."),
    "goodbye": N_("you left the room"),
    "interrupted": N_("stopped before joining the room."),
    "split": N_("your text was {size} bytes, so it went out as {count} messages (one holds at most {limit} bytes)."),
    "too_long": N_("your text is {size} bytes, more than the {most} bytes this client sends at once "
                    "({parts} messages of {limit}); nothing of it was sent."),
    "no_server": N_("no chat server is listening on {where}."),
    "not_chat": N_("{where} does not look like a learn chat server (it answered {answer}); "
                    "check --host, --port or --unix."),
    "forbidden": N_("you are not allowed to connect to {where}."),
    "unreachable": N_("cannot reach {where}: {error}."),
    "bad_host": N_("cannot resolve the host name {host!r}."),
    "closed": N_("the server closed the connection."),
    "closed_because": N_("the server closed the connection: {reason}."),
    "lost": N_("the connection to the server was lost ({error})."),
    "shutdown": N_("the server is stopping, so the chat is over."),
    "kicked": N_("the administrator removed you from the room."),
    "no_answer": N_("the server on {where} did not answer within {seconds:g} seconds; "
                  "check that it is a learn chat server."),
    "huge_frame": N_("the server sent a frame of {length} bytes, more than this client accepts."),
    # The server's ERROR codes in our words (English shows the server's own reason when it gave one).
    "reason_NAME_TAKEN": N_("the name {name} is taken"),
    "reason_NAME_INVALID": N_("the name {name} cannot be used (1 to {most} characters, no control "
                            "characters, not a reserved name such as admin)"),
    "reason_NOT_JOINED": N_("join the room first"),
    "reason_ALREADY_JOINED": N_("you are already in the room"),
    "reason_TOO_LARGE": N_("the message was over the server's size limit"),
    "reason_BAD_FRAME": N_("the server could not accept that frame"),
    "reason_RATE_LIMITED": N_("you are sending too fast, so that message was dropped"),
    "reason_SHUTDOWN": N_("the server is stopping"),
    "reason_TIMEOUT": N_("you did not join in time"),
    "reason_KICKED": N_("the administrator removed you"),
    "reason_NO_SUCH_MEMBER": N_("nobody has that name"),
    "reason_unknown": N_("error code {code}"),
    # Why a connection failed, for the errors a chat meets (others: the system's words).
    "no_answer_short": N_("no answer"),
    "errno_ECONNRESET": N_("the connection was reset"),
    "errno_EPIPE": N_("the connection is broken"),
    "errno_ECONNABORTED": N_("the connection was aborted"),
    "errno_ETIMEDOUT": N_("the connection timed out"),
    "errno_ECONNREFUSED": N_("the connection was refused"),
    "errno_EHOSTUNREACH": N_("the host is unreachable"),
    "errno_ENETUNREACH": N_("the network is unreachable"),
    "errno_ENETDOWN": N_("the network is down"),
    "errno_unknown": N_("system error {code}"),
}


class Texts:
    """TEXTS in one language: `texts["joined"]` is the catalog's translation of that template."""

    def __init__(self, lang: str) -> None:
        self.translation: gettext.NullTranslations = translation_for(lang)

    def __getitem__(self, key: str) -> str:
        return self.translation.gettext(TEXTS[key])

    def get(self, key: str) -> str | None:
        return self[key] if key in TEXTS else None


def texts_in(lang: str) -> Texts:
    return Texts(lang)
