"""`learn chat serve`: pick the engine, open the listeners, print where, run the loop."""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass

from capstone import multiplexers
from capstone.irc.session import IrcNetwork, channel_problem
from capstone.room import Limits
from capstone.server import ChatServer, Listeners, OutputLimits, plain_log, rich_log
from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, UserError, address_text, open_listener
from lessons.toolkit.i18n import _
from lessons.toolkit.logsink import LogSink
from lessons.toolkit.unixsock import SocketFile, bind_socket_file

ENGINES = ("epoll", "poll", "select", "selectors", "fork")
CHAT_BACKLOG = 1024


@dataclass
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None
    engine: str = "epoll"
    limits: Limits = Limits()
    admin_socket: str | None = None
    trace: bool = False
    output: OutputLimits = OutputLimits()
    irc_port: int | None = None  # None: no IRC listener
    irc_channel: str = "#chat"


def pick_engine(engine: str):  # noqa: ANN201 - (server class, backend class)
    """The server class and multiplexer for an engine name, or one sentence why not here."""
    if engine not in ENGINES:
        raise UserError(f"there is no engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    backends = multiplexers.available()
    if engine == "fork":
        if not hasattr(os, "fork"):
            raise UserError("the fork engine needs os.fork(), which this platform lacks; use --engine selectors.")
        from capstone.fork_engine import ForkingChatServer

        return ForkingChatServer, backends.get("epoll") or backends["poll"]
    if engine not in backends:
        raise UserError(f"the {engine} engine is not available on this platform; use --engine selectors.")
    return ChatServer, backends[engine]


def check_limits(limits: Limits, output: OutputLimits) -> None:
    if limits.max_payload < 1 or limits.max_payload > 0xFFFFFFFF:
        raise UserError(_("--max-payload must be between 1 and 4294967295 bytes."))
    if limits.join_timeout < 0 or limits.rate_limit < 0 or output.max_queue < 1:
        raise UserError(_("--join-timeout and --rate-limit cannot be negative, and --max-queue must be positive."))
    if output.max_buffered < 1:
        raise UserError(_("--max-buffered must be positive."))


def open_listeners(options: ServeOptions) -> tuple[Listeners, str]:
    """The chat listener, the admin socket and the IRC listener if asked for; returns them and
    the 'listening on' text."""
    from capstone.paths import default_admin_socket

    chat_file = None
    if options.unix:
        chat, chat_file = bind_socket_file(options.unix, mode=0o666 & ~_umask(), backlog=CHAT_BACKLOG)
        where, port, chat_path = options.unix, None, options.unix
    else:
        chat = open_listener(options.host, options.port, backlog=CHAT_BACKLOG)
        where, port, chat_path = address_text(chat.getsockname()), chat.getsockname()[1], None
    irc = None
    try:
        if options.irc_port is not None:
            irc = open_listener(options.host, options.irc_port, backlog=CHAT_BACKLOG, option="--irc-port")
        admin_path = options.admin_socket or str(default_admin_socket(port=port, unix_path=options.unix))
        admin, admin_file = bind_socket_file(admin_path, mode=0o600)
    except BaseException:
        _close_listeners(chat, chat_file, irc)
        raise
    return Listeners(chat, admin, chat_path, admin_path, chat_file, admin_file, irc), where


def _close_listeners(chat: socket.socket, chat_file: SocketFile | None, irc: socket.socket | None) -> None:
    for listener in (chat, irc):
        if listener is not None:
            listener.close()
    if chat_file is not None:
        chat_file.remove()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_irc(options: ServeOptions) -> None:
    problem = channel_problem(options.irc_channel)
    if problem:
        raise UserError(_("--irc-channel {channel!r}: {problem}.").format(channel=options.irc_channel, problem=problem))


def serve(options: ServeOptions) -> None:
    check_limits(options.limits, options.output)
    check_irc(options)
    server_class, backend_class = pick_engine(options.engine)
    listeners, where = open_listeners(options)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a closed peer or log is an EPIPE to handle, not death
    sys.stdout.flush()
    sink = LogSink(sys.stdout.fileno())  # a log nobody reads never blocks the server; EPIPE stops it
    log = rich_log(sink) if sink.isatty() else plain_log(sink)
    trace = (lambda text: log("trace", text)) if options.trace else None
    console = sys.stdin.fileno() if sys.stdin.isatty() else None
    irc = IrcNetwork(channel=options.irc_channel, max_payload=options.limits.max_payload)
    server = server_class(listeners, backend_class(trace), options.limits, log, console, output=options.output,
                          irc=irc)

    def announce_ready() -> None:
        sink.write(f"listening on {where}\n")
        sink.write(f"admin socket {listeners.admin_path}\n")
        if listeners.irc is not None:
            sink.write(f"irc listening on {address_text(listeners.irc.getsockname())}\n")
        if console is not None:
            log("admin", _("type a line here to announce it to everyone; /help lists the console's commands; "
                           "Ctrl-C stops the server"))

    try:
        server.serve_forever(on_ready=announce_ready)
        if not sink.isatty():  # on a terminal, Ctrl-C gets one line: the "stopping" one
            log("stop", _("stopped"))
    finally:
        sink.wait_written(0.5)
