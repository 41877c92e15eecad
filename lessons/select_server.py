"""The same echo server on select(), the oldest multiplexer, and the wall it hits at 1024.

select() takes lists of sockets and returns the ones that are ready. It is everywhere
(even on Windows), but each call copies the whole set into the kernel and back, and on
Linux and macOS it cannot watch a descriptor numbered FD_SETSIZE (1024) or above:
Python raises ValueError("filedescriptor out of range in select()"). A select server
that accepted such a client would crash on its next call, so this one refuses it.
`--fd-limit-demo` shows select failing where poll and epoll go on.
"""

from __future__ import annotations

import select
import socket
import sys
from typing import Annotated

import typer

from lessons import echo_demo
from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT, UserError
from lessons.echo_driver import (
    TICK_SECONDS,
    AcceptPause,
    ClientGone,
    DemoOption,
    EchoLog,
    HostOption,
    OutOfDescriptors,
    Outbox,
    PortOption,
    StopFlag,
    TraceOption,
    accept_client,
    echo_once,
    run_server,
)
from lessons.toolkit.events import describe_epoll, describe_poll
from lessons.toolkit.narrate import Narrator
from lessons.toolkit.i18n import _

FD_SETSIZE = 1024  # the size of select()'s bit set in the C library; Windows counts sockets instead
HAS_FD_NUMBER_LIMIT = not sys.platform.startswith("win")


def too_high_for_select(conn: socket.socket) -> bool:
    return HAS_FD_NUMBER_LIMIT and conn.fileno() >= FD_SETSIZE


def serve(server: socket.socket, log: EchoLog, stop: StopFlag) -> None:
    """Accept, read and answer with select() until `stop` is set; close everything at the end."""
    sockets: dict[int, socket.socket] = {server.fileno(): server}  # the same map as the poll server
    accepting = AcceptPause(log)
    outbox = Outbox(log)  # answers a client could not take yet

    def drop(fd: int, why: str) -> None:
        sockets.pop(fd).close()
        outbox.forget(fd)
        log.closed(fd, why)
        accepting.descriptor_freed()

    log.serving.set()  # nothing to register: the listener goes into every call's list
    try:
        while not stop.is_set():
            accepting.time_to_resume()
            # No register/unregister: the whole lists go in on every call. A client whose
            # answer waits is asked about writing only; out of descriptors, the listener is
            # left out for a while (it would spin).
            wlist = [sock for fd, sock in sockets.items() if outbox.holds(fd)]
            rlist = [sock for fd, sock in sockets.items()
                     if not outbox.holds(fd) and not (sock is server and accepting.paused)]
            readable, writable, _ = select.select(rlist, wlist, [], TICK_SECONDS)
            trace_call(log, rlist, wlist, readable, writable)
            for sock in writable:  # it can take more of the answer that waits
                try:
                    outbox.send_rest(sock)
                except ClientGone as gone:
                    drop(sock.fileno(), gone.reason)
            for sock in readable:
                fd = sock.fileno()
                if sock is server:
                    try:
                        conn = accept_client(server, log)
                    except OutOfDescriptors:
                        accepting.pause()
                        continue
                    if conn is not None and too_high_for_select(conn):
                        log.refused(conn.fileno(), _("fd {fileno} is beyond select()'s limit of "
                                                     "{limit}; poll-server and epoll-server "
                                                     "have none.").format(fileno=conn.fileno(), limit=FD_SETSIZE))
                        conn.close()
                    elif conn is not None:
                        sockets[conn.fileno()] = conn
                else:  # readable means data, EOF or an error: recv() tells which
                    try:
                        echo_once(sock, log, outbox)
                    except ClientGone as gone:
                        drop(fd, gone.reason)
    finally:
        for sock in sockets.values():
            sock.close()


def trace_call(log: EchoLog, rlist: list, wlist: list, readable: list, writable: list) -> None:
    """--trace: the lists that went in and what came back, `select([3, 5], [], []) -> ([5], [], [])`."""
    if log.trace and (readable or writable):
        def fds(sockets: list[socket.socket]) -> str:
            return "[" + ", ".join(str(sock.fileno()) for sock in sockets) + "]"

        log.narrate("trace", f"select({fds(rlist)}, {fds(wlist)}, []) -> ({fds(readable)}, {fds(writable)}, [])")


def make_room_for(descriptors: int) -> None:
    """Raise the soft limit on open files (RLIMIT_NOFILE) to `descriptors`; no privileges needed."""
    try:
        import resource
    except ImportError:
        raise UserError(_("the descriptor-limit demo needs Linux or macOS.")) from None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < descriptors:
        if hard != resource.RLIM_INFINITY and hard < descriptors:
            raise UserError(
                _("this demo needs {descriptors} open files but the hard limit is {hard}; raise it "
                  "(as root: ulimit -Hn {descriptors}) and try again.").format(descriptors=descriptors, hard=hard)
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, hard))


def show_fd_limit(say: Narrator) -> None:
    """Open sockets until one is numbered FD_SETSIZE or more, then ask select, poll and epoll about it."""
    if not HAS_FD_NUMBER_LIMIT:
        raise UserError(_("on Windows select() limits the number of sockets, not their numbers; "
                          "this demo is for Linux and macOS."))
    make_room_for(FD_SETSIZE + 64)
    opened: list[socket.socket] = []
    try:
        while not opened or opened[-1].fileno() < FD_SETSIZE:
            opened.extend(socket.socketpair())  # like a server with many clients
        writer, high = opened[-2], opened[-1]
        writer.send(b"x")  # so `high` has something to read
        say("demo", _("opened {count} sockets; the newest is fd {fileno}, and it has a byte waiting "
                      "to be read").format(count=len(opened), fileno=high.fileno()))
        ask_select(high, say)
        ask_poll(high, say)
        ask_epoll(high, say)
    finally:
        for sock in opened:
            sock.close()
    say("demo", _("select() works with descriptor numbers below {limit} only; a server that "
                  "may hold more clients uses poll, epoll, or selectors (which picks epoll on "
                  "Linux).").format(limit=FD_SETSIZE))


def ask_select(sock: socket.socket, say: Narrator) -> None:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except ValueError as err:
        say("error", _("select([fd {fileno}]) raised ValueError: {err}").format(fileno=sock.fileno(), err=err))
    else:
        say("select", _("select([fd {fileno}]) -> {count} readable: no limit on this system").format(
            fileno=sock.fileno(), count=len(readable)))


def ask_poll(sock: socket.socket, say: Narrator) -> None:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    events = ", ".join(f"fd {fd} {describe_poll(mask)}" for fd, mask in poller.poll(0))
    say("poll", f"poll() -> {events or 'nothing'}")


def ask_epoll(sock: socket.socket, say: Narrator) -> None:
    if not hasattr(select, "epoll"):
        return
    with select.epoll() as epoll:
        epoll.register(sock.fileno(), select.EPOLLIN)
        events = ", ".join(f"fd {fd} {describe_epoll(mask)}" for fd, mask in epoll.poll(0))
    say("epoll", f"epoll.poll() -> {events or 'nothing'}")


def main(
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    demo: DemoOption = False,
    trace: TraceOption = False,
    fd_limit_demo: Annotated[
        bool, typer.Option("--fd-limit-demo", help=_("Show select() failing at descriptor 1024 where poll goes on."))
    ] = False,
) -> None:
    """Serve clients with select(), or show its descriptor limit."""
    if fd_limit_demo:
        show_fd_limit(Narrator())
        return
    run_server("select", serve, host, port, trace, demo=echo_demo.start if demo else None)
