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
from lessons.toolkit.exits import print_error
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
    cluster: ClusterOptions | None = None  # serve one room together with other nodes, through NATS
    reuse_port: bool = False  # SO_REUSEPORT: several nodes on one port
    workers: int = 1  # with a cluster: this many nodes on this machine, one process each, one port


@dataclass(frozen=True)
class ClusterOptions:
    urls: list[str]
    room: str = "main"
    lease: float = 10.0  # seconds a name stays claimed without renewal (a dead node's members: LEFT after ~4/3 of it)
    replicas: int = 1  # copies of the stream and the bucket (3 on a 3-server NATS cluster)


def pick_engine(engine: str):  # noqa: ANN201 - (server class, backend class)
    """The server class and multiplexer for an engine name, or one sentence why not here."""
    if engine not in ENGINES:
        raise UserError(_("there is no engine {engine!r}; choose one of {engines}.").format(
            engine=engine, engines=", ".join(ENGINES)))
    backends = multiplexers.available()
    if engine == "fork":
        if not hasattr(os, "fork"):
            raise UserError(_("the fork engine needs os.fork(), which this platform lacks; use --engine selectors."))
        from capstone.fork_engine import ForkingChatServer

        return ForkingChatServer, backends.get("epoll") or backends["poll"]
    if engine not in backends:
        raise UserError(_("the {engine} engine is not available on this platform; use --engine selectors.").format(
            engine=engine))
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
        chat = open_listener(options.host, options.port, backlog=CHAT_BACKLOG, reuse_port=options.reuse_port)
        where, port, chat_path = address_text(chat.getsockname()), chat.getsockname()[1], None
    irc = None
    try:
        if options.irc_port is not None:
            irc = open_listener(options.host, options.irc_port, backlog=CHAT_BACKLOG, option="--irc-port")
        admin_path = options.admin_socket or str(default_admin_socket(port=port, unix_path=options.unix))
        admin, admin_file, admin_path = bind_admin_socket(admin_path, shared_port=options.reuse_port and
                                                          not options.admin_socket)
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


def bind_admin_socket(path: str, shared_port: bool):  # noqa: ANN201 - (socket, SocketFile, path)
    """Nodes sharing a port (--reuse-port) would share its default admin path: the first
    takes it (so `learn chat admin --port N` finds the room), the others add their pid."""
    try:
        return (*bind_socket_file(path, mode=0o600), path)
    except UserError:
        if not shared_port:
            raise
    path = path.removesuffix(".sock") + f"-{os.getpid()}.sock"
    return (*bind_socket_file(path, mode=0o600), path)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def check_irc(options: ServeOptions) -> None:
    problem = channel_problem(options.irc_channel)
    if problem:
        raise UserError(_("--irc-channel {channel!r}: {problem}.").format(channel=options.irc_channel, problem=problem))
def check_cluster(options: ServeOptions) -> None:
    from capstone.cluster.events import ROOM_NAME

    cluster = options.cluster
    if cluster is None:
        if options.reuse_port or options.workers > 1:
            raise UserError(_("--reuse-port and --workers make sense only with --cluster: separate servers "
                              "on one port would each be a room of their own."))
        return
    if options.workers > 1 and options.unix:
        raise UserError(_("--workers shares a TCP port between processes; it does not work with --unix."))
    if options.engine == "fork":
        raise UserError(_("the fork engine cannot serve a cluster room; use --engine epoll (or poll, select, selectors)."))
    for url in cluster.urls:
        if not url.startswith(("nats://", "tls://")) or len(url.split("://", 1)[1]) == 0:
            raise UserError(_("--cluster takes nats://HOST:PORT addresses separated by commas, not {url!r}.").format(
                url=url))
    if not ROOM_NAME.fullmatch(cluster.room):
        raise UserError(_("a room name is 1 to 64 letters, digits, '-' or '_', not {room!r}.").format(room=cluster.room))
    if cluster.lease < 1:
        raise UserError(_("--lease must be at least 1 second."))


def serve(options: ServeOptions) -> None:
    check_limits(options.limits, options.output)
    check_irc(options)
    check_cluster(options)
    server_class, backend_class = pick_engine(options.engine)
    if options.workers > 1:
        serve_workers(options)
        return
    room = join_cluster(options)
    try:
        serve_room(options, server_class, backend_class, room)
    finally:
        if room is not None:
            room.close(SHUTDOWN_PUBLISH_SECONDS)


WORKER_STOP_SECONDS = 5.0  # how long the first node waits for the others to stop


def serve_workers(options: ServeOptions) -> None:
    """--workers N: N nodes of the room on this machine, one process each, on one port.

    The port is fixed first (0 picks one), then N-1 children are forked before any thread
    exists (a broker thread must never be forked), and every node opens its own listener
    (SO_REUSEPORT: the kernel spreads connections over them) and its own NATS connection.
    The first node keeps the terminal; Ctrl-C reaches them all, and when the first stops
    for another reason (SIGTERM) it stops the others."""
    import dataclasses

    holder = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((options.host, options.port))  # bound, not listening: it takes no connection
    except OSError as err:
        holder.close()
        raise UserError(_("cannot use port {port} on {host}: {reason}.").format(
            port=options.port, host=options.host, reason=err.strerror or err)) from None
    node = dataclasses.replace(options, port=holder.getsockname()[1], reuse_port=True, workers=1)
    children = [fork_node(node, holder) for _ in range(options.workers - 1)]
    try:
        serve(node)
    finally:
        holder.close()
        stop_children(children)


def fork_node(options: ServeOptions, holder: socket.socket) -> int:
    """A child process that serves one more node; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    holder.close()
    sys.stdin = open(os.devnull)  # the first node keeps the console
    code = 0
    try:
        serve(options)
    except UserError as err:
        print_error(str(err))
        code = 2
    except BaseException:  # noqa: BLE001 - a child must end here, never return into the parent's code
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def stop_children(pids: list[int]) -> None:
    import time

    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for pid in pids:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)


SHUTDOWN_PUBLISH_SECONDS = 1.0  # at stop, how long the broker may take to publish our members' LEFTs


def join_cluster(options: ServeOptions):  # noqa: ANN201 - ClusterRoom | None
    """This node's room, connected to NATS before any port is opened (unreachable: exit 2)."""
    if options.cluster is None:
        return None
    from capstone.cluster.backend import open_cluster_room

    cluster = options.cluster
    return open_cluster_room(cluster.urls, cluster.room, options.limits, cluster.lease, cluster.replicas)


def serve_room(options: ServeOptions, server_class, backend_class, room) -> None:  # noqa: ANN001
    listeners, where = open_listeners(options)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a closed peer or log is an EPIPE to handle, not death
    sys.stdout.flush()
    sink = LogSink(sys.stdout.fileno())  # a log nobody reads never blocks the server; EPIPE stops it
    log = rich_log(sink) if sink.isatty() else plain_log(sink)
    trace = (lambda text: log("trace", text)) if options.trace else None
    console = sys.stdin.fileno() if sys.stdin.isatty() else None
    irc = IrcNetwork(channel=options.irc_channel, max_payload=options.limits.max_payload)
    server = server_class(listeners, backend_class(trace), options.limits, log, console, output=options.output,
                          irc=irc, room=room)
    if room is not None:
        server.watch_descriptor(room.wakeup_fd(), lambda: room.on_wakeup(server.clock()))

    def announce_ready() -> None:
        sink.write(f"listening on {where}\n")
        sink.write(f"admin socket {listeners.admin_path}\n")
        if listeners.irc is not None:
            sink.write(f"irc listening on {address_text(listeners.irc.getsockname())}\n")
        if room is not None:
            log("cluster", _("node {node} of room {room} through {urls}").format(
                node=room.node, room=options.cluster.room, urls=", ".join(options.cluster.urls)))
        if console is not None:
            log("admin", _("type a line here to announce it to everyone; /help lists the console's commands; "
                           "Ctrl-C stops the server"))

    try:
        server.serve_forever(on_ready=announce_ready)
        if not sink.isatty():  # on a terminal, Ctrl-C gets one line: the "stopping" one
            log("stop", _("stopped"))
    finally:
        sink.wait_written(0.5)
