"""`learn chat serve|join|admin`: the capstone's commands (heavy imports inside each)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer
from lessons.toolkit.i18n import _, use_language

app = typer.Typer(help=_("The capstone chat room: serve it, join it, administer it."), no_args_is_help=True)


@app.command(help=_("Run the chat server (Ctrl-C or SIGTERM stops it cleanly)."))
def serve(
    host: Annotated[str, typer.Option(help=_("Address to listen on (0.0.0.0 exposes the chat to the network)."))] = "127.0.0.1",
    port: Annotated[int, typer.Option(help=_("TCP port; 0 picks a free one."))] = 8888,
    unix: Annotated[Optional[str], typer.Option(help=_("Listen on this Unix socket file instead of TCP."))] = None,
    engine: Annotated[str, typer.Option(help=_("epoll, poll, select, selectors, or fork (a process per client)."))] = "epoll",
    max_payload: Annotated[int, typer.Option(help=_("Largest frame payload a client may send, in bytes."))] = 4096,
    join_timeout: Annotated[float, typer.Option(help=_("Seconds a new connection has to JOIN (0 = no limit)."))] = 10.0,
    rate_limit: Annotated[float, typer.Option(help=_("Messages per second per member (bucket of twice that); 0 = off."))] = 20.0,
    max_queue: Annotated[int, typer.Option(help=_("Bytes queued for a slow reader before it is dropped."))] = 1 << 20,
    max_buffered: Annotated[int, typer.Option(
        help=_("Bytes queued for all connections together; past it the slowest readers are dropped first."))] = 64 << 20,
    admin_socket: Annotated[Optional[str], typer.Option(help=_("Path of the administrator's Unix socket."))] = None,
    trace: Annotated[bool, typer.Option(help=_("Log every readiness event the multiplexer reports."))] = False,
    irc_port: Annotated[Optional[int], typer.Option(
        help=_("Also let IRC clients (irssi, WeeChat, ii) in on this TCP port; 0 picks a free one."),
        show_default=False)] = None,
    irc_channel: Annotated[str, typer.Option(help=_("The IRC channel that stands for the room."))] = "#chat",
    cluster: Annotated[Optional[str], typer.Option(
        help=_("Serve one room with other nodes through NATS JetStream: nats://HOST:PORT[,nats://...]."),
        show_default=False)] = None,
    room: Annotated[str, typer.Option(help=_("With --cluster: the room's name (nodes with one name serve one room)."))] = "main",
    reuse_port: Annotated[bool, typer.Option(
        help=_("With --cluster: share the port with other nodes on this machine (SO_REUSEPORT)."))] = False,
    lease: Annotated[float, typer.Option(
        help=_("With --cluster: seconds a dead node's names stay claimed (its members leave within about 4/3 of it)."))] = 10.0,
    workers: Annotated[int, typer.Option(
        help=_("With --cluster: run this many nodes here, one process each, sharing the port."), min=1, max=64)] = 1,
    replicas: Annotated[int, typer.Option(
        help=_("With --cluster: copies NATS keeps of the room (3 on a 3-server NATS cluster)."), min=1, max=5)] = 1,
) -> None:
    from capstone.room import Limits
    from capstone.serve import ClusterOptions, ServeOptions
    from capstone.serve import serve as run_server
    from capstone.server import OutputLimits

    limits = Limits(max_payload=max_payload, join_timeout=join_timeout, rate_limit=rate_limit)
    output = OutputLimits(max_queue=max_queue, max_buffered=max_buffered)
    nodes = ClusterOptions([url.strip() for url in cluster.split(",")], room, lease, replicas) if cluster else None
    run_server(ServeOptions(host, port, unix, engine, limits, admin_socket, trace, output, irc_port, irc_channel,
                            nodes, reuse_port, workers))


class Language(str, Enum):
    en = "en"
    zh = "zh"


@app.command(help=_(
    "Join the chat: type messages; /help lists the commands; /quit, Ctrl-D or Ctrl-C "
    "leaves.\n\nWithout a terminal (stdin a pipe or a file), each line is a message and each "
    "event is printed as one plain line, so scripts can drive the chat. A text over 4096 "
    "bytes (the protocol's default limit) goes out as several messages, paced to the default "
    "rate limit; one over 160 KiB is refused. Exit status: 0 you left, 1 kicked, server "
    "stopped or connection lost, 2 no chat server there or name refused (pipe mode)."))
def join(
    name: Annotated[Optional[str], typer.Option(
        help=_("Your name; asked for when missing (required when stdin is not a terminal)."))] = None,
    host: Annotated[Optional[str], typer.Option(
        help=_("The chat server's host (default 127.0.0.1)."), show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(
        help=_("The chat server's TCP port (default 8888)."), show_default=False)] = None,
    unix: Annotated[Optional[str], typer.Option(
        help=_("Connect to a chat on this Unix socket file instead of TCP."))] = None,
    lang: Annotated[Optional[Language], typer.Option(
        help=_("Language of the notices: en, or zh (the lecture notes' wording); default: the "
               "language of `learn` (see `learn --help`)."), show_default=False)] = None,
    wait: Annotated[float, typer.Option(
        help=_("Pipe mode: stay this many seconds after stdin ends, to see the replies."), min=0)] = 0.0,
) -> None:
    from capstone.client import Target, run_client
    from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, UserError, check_client_host

    if lang is not None:  # the whole command in that language, its errors too
        use_language(lang.value)
    if unix is not None and (host is not None or port is not None):
        raise UserError(_("give either --unix PATH or --host/--port, not both."))
    if host is not None:
        check_client_host(host)
    target = Target(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port, unix)
    raise typer.Exit(run_client(target, name=name, lang=lang.value if lang else None, linger=wait))


class AdminAction(str, Enum):
    say = "say"
    kick = "kick"
    list = "list"


@app.command(help=_(
    "Administer a running chat: announce to everyone, remove a member, list the "
    "members.\n\nExit status: 0 done, 1 the server refused (its reason is printed), 2 no "
    "server there."))
def admin(
    action: Annotated[AdminAction, typer.Argument(help=_("say TEXT, kick NAME, or list."))],
    words: Annotated[Optional[list[str]], typer.Argument(
        help=_("The text to announce, or the member's name."), show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(
        help=_("Find the admin socket of the chat on this TCP port (default 8888)."), show_default=False)] = None,
    unix: Annotated[Optional[str], typer.Option(
        help=_("Find the admin socket of the chat on this Unix socket (PATH.admin)."))] = None,
    socket: Annotated[Optional[str], typer.Option(
        "--socket", help=_("The admin socket itself (the path the server printed); wins over --unix and --port."))] = None,
) -> None:
    from capstone.admin import admin_socket_path, run_admin

    path = admin_socket_path(port=port, unix=unix, socket_path=socket)
    lines = run_admin(action.value, words or [], path)
    for line in lines:
        typer.echo(line)
    if action == AdminAction.list and not lines:  # a notice, not a member: stdout stays one name a line
        typer.echo(_("the room is empty."), err=True)
