"""`learn chat admin say|kick|list`: one request on the administrator's Unix socket, one reply.

The admin channel speaks the chat's frames (PROTOCOL.md): ADMIN_SAY text -> OK, KICK name
-> OK or ERROR NO_SUCH_MEMBER, LIST -> MEMBERS. Only the server's own user (or root) is
served; the server checks that with SO_PEERCRED, the socket file's mode 0600 already
keeps everybody else out. Exit codes: 0 done, 1 the server answered with an error,
2 no server there.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from capstone import codec
from capstone.codec import ErrorCode, Kind
from capstone.paths import default_admin_socket
from lessons.toolkit.common import RunFailure, UserError, printable
from lessons.toolkit.framing import FrameTooLarge
from lessons.toolkit.sockio import recv_frame
from lessons.toolkit.i18n import _

ACTIONS = {"say": Kind.ADMIN_SAY, "kick": Kind.KICK, "list": Kind.LIST}
REPLY_TIMEOUT = 10.0  # seconds; the server answers at once, this only guards against a hang
MAX_REPLY = 16 << 20  # a MEMBERS reply can exceed the server's payload limit
DONE = {"say": _("announced to everyone in the room."), "kick": _("removed {name} from the room.")}


def admin_socket_path(port: int | None = None, unix: str | None = None, socket_path: str | None = None) -> Path:
    """`--socket` as given, else the default of the chat on `--unix PATH` or `--port N`."""
    if socket_path:
        return Path(socket_path)
    return default_admin_socket(port=port, unix_path=unix)


def connect_admin(path: Path) -> socket.socket:
    """Connect to the admin socket; no server there is one sentence and exit 2."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REPLY_TIMEOUT)
    try:
        sock.connect(str(path))
    except FileNotFoundError:
        sock.close()
        raise UserError(_("no chat server runs here: the admin socket {path} does not exist.").format(path=path)) from None
    except ConnectionRefusedError:
        sock.close()
        raise UserError(_("no chat server runs here: nothing answers on the admin socket {path}.").format(path=path)) from None
    except PermissionError:
        sock.close()
        raise UserError(
            _("you may not use the admin socket {path}; run this as the user who started the "
              "server.").format(path=path)) from None
    except OSError as err:
        sock.close()
        raise UserError(_("cannot connect to the admin socket {path}: {reason}.").format(path=path, reason=err.strerror or err)) from None
    return sock


def request(path: Path, kind: Kind, payload: bytes = b"") -> tuple[int, bytes]:
    """Send one admin frame and return the (kind, payload) of the reply."""
    sock = connect_admin(path)
    try:
        sock.sendall(codec.encode(kind, payload))
        (reply_kind,), reply = recv_frame(sock, codec.HEADER, max_payload=MAX_REPLY)
    except FrameTooLarge as err:
        raise RunFailure(_("the server sent a reply of {length} bytes, more than this client "
                           "accepts.").format(length=err.length)) from None
    except (EOFError, ConnectionResetError, BrokenPipeError):
        raise RunFailure(why_closed(path)) from None
    except socket.timeout:
        raise RunFailure(_("the server did not answer within {seconds:g} seconds.").format(seconds=REPLY_TIMEOUT)) from None
    finally:
        sock.close()
    return reply_kind, reply


def why_closed(path: Path) -> str:
    """The server hung up without a word. Say why only when we know: a peer of the server's
    own user (or root) is never refused for who it is, so then it was something else (the
    server out of descriptors, say), and its log tells what."""
    try:
        owner = os.stat(path).st_uid  # the server created the file as its own user
    except OSError:
        owner = None
    if os.geteuid() == 0 or owner == os.geteuid():
        return _("the server did not accept the admin connection (it may be out of descriptors): see its log.")
    return _("the server closed the admin connection without answering: it serves only the user who "
             "started it (uid {uid}) or root; run this as that user.").format(uid=owner)


def run_admin(action: str, words: list[str], path: Path) -> list[str]:
    """Carry out one admin action; the lines to print. An ERROR reply is RunFailure (exit 1)."""
    if action not in ACTIONS:
        raise UserError(_("unknown admin action {action!r}; use say, kick or list.").format(action=action))
    argument = " ".join(words)
    if action == "list" and words:
        raise UserError(_("list takes no argument."))
    if action != "list" and not argument:
        raise UserError(f"{action} needs {'the text to announce' if action == 'say' else 'the name of a member'}.")
    kind, reply = request(path, ACTIONS[action], argument.encode("utf-8", "surrogateescape"))
    if kind == Kind.ERROR:
        code, reason = codec.decode_error(reply)
        raise RunFailure(_("the server refused: {reason} ({code}).").format(reason=printable(reason), code=code_name(code)))
    if action == "list" and kind == Kind.MEMBERS:
        text = reply.decode(errors="replace")  # empty: nobody there (the command says so on stderr)
        return [printable(name) for name in text.split("\n")] if text else []
    if kind == Kind.OK and action != "list":
        return [DONE[action].format(name=printable(argument))]
    raise RunFailure(_("the server answered with an unexpected {kind} frame.").format(kind=codec.kind_name(kind)))


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"code {code}"
