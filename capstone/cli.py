"""`learn chat serve|join|admin`: the capstone's commands (heavy imports inside each)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

app = typer.Typer(help="The capstone chat room: serve it, join it, administer it.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 exposes the chat to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 8888,
    unix: Annotated[Optional[str], typer.Option(help="Listen on this Unix socket file instead of TCP.")] = None,
    engine: Annotated[str, typer.Option(help="epoll, poll, select, selectors, or fork (a process per client).")] = "epoll",
    max_payload: Annotated[int, typer.Option(help="Largest frame payload a client may send, in bytes.")] = 4096,
    join_timeout: Annotated[float, typer.Option(help="Seconds a new connection has to JOIN (0 = no limit).")] = 10.0,
    rate_limit: Annotated[float, typer.Option(help="Messages per second per member (bucket of twice that); 0 = off.")] = 20.0,
    max_queue: Annotated[int, typer.Option(help="Bytes queued for a slow reader before it is dropped.")] = 1 << 20,
    max_buffered: Annotated[int, typer.Option(
        help="Bytes queued for all connections together; past it the slowest readers are dropped first.")] = 64 << 20,
    admin_socket: Annotated[Optional[str], typer.Option(help="Path of the administrator's Unix socket.")] = None,
    trace: Annotated[bool, typer.Option(help="Log every readiness event the multiplexer reports.")] = False,
    cluster: Annotated[Optional[str], typer.Option(
        help="Serve one room with other nodes through NATS JetStream: nats://HOST:PORT[,nats://...].",
        show_default=False)] = None,
    room: Annotated[str, typer.Option(help="With --cluster: the room's name (nodes with one name serve one room).")] = "main",
    reuse_port: Annotated[bool, typer.Option(
        help="With --cluster: share the port with other nodes on this machine (SO_REUSEPORT).")] = False,
    lease: Annotated[float, typer.Option(
        help="With --cluster: seconds a dead node's names stay claimed (its members leave within about 4/3 of it).")] = 10.0,
    workers: Annotated[int, typer.Option(
        help="With --cluster: run this many nodes here, one process each, sharing the port.", min=1, max=64)] = 1,
    replicas: Annotated[int, typer.Option(
        help="With --cluster: copies NATS keeps of the room (3 on a 3-server NATS cluster).", min=1, max=5)] = 1,
) -> None:
    """Run the chat server (Ctrl-C or SIGTERM stops it cleanly)."""
    from capstone.room import Limits
    from capstone.serve import ClusterOptions, ServeOptions
    from capstone.serve import serve as run_server
    from capstone.server import OutputLimits

    limits = Limits(max_payload=max_payload, join_timeout=join_timeout, rate_limit=rate_limit)
    output = OutputLimits(max_queue=max_queue, max_buffered=max_buffered)
    nodes = ClusterOptions([url.strip() for url in cluster.split(",")], room, lease, replicas) if cluster else None
    run_server(ServeOptions(host, port, unix, engine, limits, admin_socket, trace, output, nodes, reuse_port,
                            workers))


class Language(str, Enum):
    en = "en"
    zh = "zh"


@app.command()
def join(
    name: Annotated[Optional[str], typer.Option(
        help="Your name; asked for when missing (required when stdin is not a terminal).")] = None,
    host: Annotated[Optional[str], typer.Option(
        help="The chat server's host (default 127.0.0.1).", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(
        help="The chat server's TCP port (default 8888).", show_default=False)] = None,
    unix: Annotated[Optional[str], typer.Option(
        help="Connect to a chat on this Unix socket file instead of TCP.")] = None,
    lang: Annotated[Language, typer.Option(
        help="Language of the notices: en, or zh (the lecture notes' wording).")] = Language.en,
    wait: Annotated[float, typer.Option(
        help="Pipe mode: stay this many seconds after stdin ends, to see the replies.", min=0)] = 0.0,
) -> None:
    """Join the chat: type messages; /help lists the commands; /quit, Ctrl-D or Ctrl-C leaves.

    Without a terminal (stdin a pipe or a file), each line is a message and
    each event is printed as one plain line, so scripts can drive the chat.
    A text over 4096 bytes (the protocol's default limit) goes out as several
    messages, paced to the default rate limit; one over 160 KiB is refused.
    Exit status: 0 you left, 1 kicked, server stopped or connection lost, 2 no
    chat server there or name refused (pipe mode).
    """
    from capstone.client import Target, run_client
    from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, UserError, check_client_host

    if unix is not None and (host is not None or port is not None):
        raise UserError("give either --unix PATH or --host/--port, not both.")
    if host is not None:
        check_client_host(host)
    target = Target(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port, unix)
    raise typer.Exit(run_client(target, name=name, lang=lang.value, linger=wait))


class AdminAction(str, Enum):
    say = "say"
    kick = "kick"
    list = "list"


@app.command()
def admin(
    action: Annotated[AdminAction, typer.Argument(help="say TEXT, kick NAME, or list.")],
    words: Annotated[Optional[list[str]], typer.Argument(
        help="The text to announce, or the member's name.", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(
        help="Find the admin socket of the chat on this TCP port (default 8888).", show_default=False)] = None,
    unix: Annotated[Optional[str], typer.Option(
        help="Find the admin socket of the chat on this Unix socket (PATH.admin).")] = None,
    socket: Annotated[Optional[str], typer.Option(
        "--socket", help="The admin socket itself (the path the server printed); wins over --unix and --port.")] = None,
) -> None:
    """Administer a running chat: announce to everyone, remove a member, list the members.

    Exit status: 0 done, 1 the server refused (its reason is printed), 2 no server there.
    """
    from capstone.admin import admin_socket_path, run_admin

    path = admin_socket_path(port=port, unix=unix, socket_path=socket)
    lines = run_admin(action.value, words or [], path)
    for line in lines:
        typer.echo(line)
    if action == AdminAction.list and not lines:  # a notice, not a member: stdout stays one name a line
        from lessons.toolkit.i18n import _

        typer.echo(_("the room is empty."), err=True)
