"""The notes' epoll server, corrected, level-triggered by default and edge-triggered with --edge.

Same shape as poll_server.py, with EPOLL* constants. The notes tested `event & POLLIN`
on an epoll event: it works only because both constants happen to be 1 on Linux; the
right name is EPOLLIN. And epoll.poll() takes its timeout in SECONDS, poll.poll() in
milliseconds: the same number means a thousand times longer here.

Level-triggered (the default): epoll reports a socket on every call while data waits.
Edge-triggered (--edge, EPOLLET): epoll reports a socket once per arrival of new data,
so each report must be drained until EAGAIN (accept() and recv() alike), on
non-blocking sockets. --edge --no-drain reads only once per report, to watch a client
stall with its data stuck in the kernel.
"""

from __future__ import annotations

import select
import socket
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
from lessons.toolkit.events import describe_epoll
from lessons.toolkit.i18n import _

HANG_UP = (select.EPOLLHUP | select.EPOLLERR) if hasattr(select, "epoll") else 0  # only Linux has them


def serve(server: socket.socket, log: EchoLog, stop: StopFlag, edge: bool = False, drain: bool = True) -> None:
    """Accept, read and answer with epoll until `stop` is set; close everything at the end."""
    epoll = select.epoll()
    watch = select.EPOLLIN | (select.EPOLLET if edge else 0)
    fdmap: dict[int, socket.socket] = {server.fileno(): server}
    accepting = AcceptPause(log)
    outbox = Outbox(log)  # answers a client could not take yet

    def register(fd: int) -> None:
        epoll.register(fd, watch)
        log.registered(fd, describe_epoll(watch))

    def modify(fd: int, mask: int) -> None:
        epoll.modify(fd, mask)  # edge-triggered: modify re-arms, so data already waiting is reported
        log.modified(fd, describe_epoll(mask))

    def unregister(fd: int) -> None:
        epoll.unregister(fd)
        log.unregistered(fd)

    def accept_waiting() -> None:
        """Level-triggered: one accept per report. Edge-triggered: until the queue is empty."""
        try:
            while (conn := accept_client(server, log)) is not None:
                fdmap[conn.fileno()] = conn
                register(conn.fileno())
                if not edge:
                    return  # epoll will report the listener again if more clients wait
        except OutOfDescriptors:
            # Level-triggered, the listener would be reported again at once (a spin);
            # edge-triggered, never again (its edge is spent). Either way: unregister it
            # now and register it again once a client leaves, which re-arms it.
            unregister(server.fileno())
            accepting.pause()

    def read(conn: socket.socket) -> None:
        if edge and drain:
            while echo_once(conn, log, outbox):
                pass  # until EAGAIN: this report will not come again for the bytes left behind
        else:
            echo_once(conn, log, outbox)
        if outbox.holds(conn.fileno()):  # its answer did not fit: wait until it reads
            modify(conn.fileno(), (watch & ~select.EPOLLIN) | select.EPOLLOUT)

    def drop(fd: int, why: str) -> None:
        conn = fdmap.pop(fd)  # out of the map, but still in hand for the last two calls
        unregister(fd)  # before close(): once closed, the number means nothing
        conn.close()
        outbox.forget(fd)
        log.closed(fd, why)
        accepting.descriptor_freed()

    register(server.fileno())
    try:
        while not stop.is_set():
            if accepting.time_to_resume():  # out of descriptors a moment ago: watch the listener again
                register(server.fileno())
            events = epoll.poll(TICK_SECONDS)  # SECONDS, unlike poll.poll()'s milliseconds
            log.returned(events, describe_epoll)
            for fd, event in events:
                if fd == server.fileno():
                    accept_waiting()
                elif event & select.EPOLLOUT:  # it can take more of the answer that waits
                    try:
                        if outbox.send_rest(fdmap[fd]):
                            modify(fd, watch)  # all sent: read from it again
                    except ClientGone as gone:
                        drop(fd, gone.reason)
                elif event & select.EPOLLIN:  # the notes wrote POLLIN here
                    try:
                        read(fdmap[fd])
                    except ClientGone as gone:
                        drop(fd, gone.reason)
                elif event & HANG_UP:
                    drop(fd, _("the kernel reported {events}").format(events=describe_epoll(event)))
    finally:
        for sock in fdmap.values():
            sock.close()
        epoll.close()


def main(
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    edge: Annotated[bool, typer.Option("--edge", help=_("Edge-triggered (EPOLLET): read until EAGAIN."))] = False,
    drain: Annotated[
        bool, typer.Option("--drain/--no-drain", help=_("With --edge: --no-drain reads once per event, to see it stall."))
    ] = True,
    demo: DemoOption = False,
    trace: TraceOption = False,
) -> None:
    """Serve clients with epoll, level- or edge-triggered."""
    if not hasattr(select, "epoll"):
        raise UserError(
            _("epoll exists only on Linux; here run `learn run poll-server` or `learn run selectors-server` instead.")
        )
    if not drain and not edge:
        raise UserError(_("--no-drain only matters in edge-triggered mode: add --edge."))

    def serve_in_mode(server: socket.socket, log: EchoLog, stop: StopFlag) -> None:
        serve(server, log, stop, edge=edge, drain=drain)

    mode = ""
    if edge:
        reading = _("reading until EAGAIN") if drain else _("reading ONCE per event (--no-drain)")
        mode = _("edge-triggered (EPOLLET), non-blocking sockets, {reading}").format(reading=reading)
    run_server("epoll.poll", serve_in_mode, host, port, trace, demo=echo_demo.start if demo else None, mode=mode)
