"""The same echo server on `selectors`, the portable way to write it.

`selectors.DefaultSelector` is the best multiplexer of the platform: epoll on Linux,
kqueue on macOS and the BSDs, select on Windows. One interface for all of them:
`register(fileobj, events, data)`, `select(timeout)` returning (key, mask) pairs whose
key carries the socket itself, so no fd -> socket map of our own is needed.
"""

from __future__ import annotations

import selectors
import socket

from lessons import echo_demo
from lessons.toolkit.common import DEFAULT_HOST, DEFAULT_PORT
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
from lessons.toolkit.events import describe_selectors


def serve(server: socket.socket, log: EchoLog, stop: StopFlag) -> None:
    """Accept, read and answer with a DefaultSelector until `stop` is set; close everything at the end."""
    selector = selectors.DefaultSelector()
    accepting = AcceptPause(log)
    outbox = Outbox(log)  # answers a client could not take yet

    def register(sock: socket.socket, events: int) -> None:
        selector.register(sock, events)
        log.registered(sock.fileno(), describe_selectors(events))

    def modify(sock: socket.socket, events: int) -> None:
        selector.modify(sock, events)
        log.modified(sock.fileno(), describe_selectors(events))

    def unregister(sock: socket.socket) -> None:
        selector.unregister(sock)  # before close(), while the selector can still find it
        log.unregistered(sock.fileno())

    def drop(conn: socket.socket, why: str) -> None:
        fd = conn.fileno()
        unregister(conn)
        conn.close()
        outbox.forget(fd)
        log.closed(fd, why)
        accepting.descriptor_freed()

    register(server, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            if accepting.time_to_resume():  # out of descriptors a moment ago: watch the listener again
                register(server, selectors.EVENT_READ)
            ready = selector.select(timeout=TICK_SECONDS)  # seconds, like epoll
            log.returned([(key.fd, mask) for key, mask in ready], describe_selectors)
            for key, mask in ready:
                if key.fileobj is server:
                    try:
                        conn = accept_client(server, log)
                    except OutOfDescriptors:  # it would stay readable: stop watching it for a while
                        unregister(server)
                        accepting.pause()
                        continue
                    if conn is not None:
                        register(conn, selectors.EVENT_READ)
                elif mask & selectors.EVENT_WRITE:  # it can take more of the answer that waits
                    try:
                        if outbox.send_rest(key.fileobj):
                            modify(key.fileobj, selectors.EVENT_READ)  # all sent: read from it again
                    except ClientGone as gone:
                        drop(key.fileobj, gone.reason)
                else:  # EVENT_READ covers data, EOF and errors: recv() tells which
                    try:
                        if not echo_once(key.fileobj, log, outbox) and outbox.holds(key.fd):
                            modify(key.fileobj, selectors.EVENT_WRITE)  # did not fit: wait until it reads
                    except ClientGone as gone:
                        drop(key.fileobj, gone.reason)
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()


def main(
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    demo: DemoOption = False,
    trace: TraceOption = False,
) -> None:
    """Serve clients with selectors.DefaultSelector."""
    call = f"{selectors.DefaultSelector.__name__}.select"  # EpollSelector.select on Linux
    run_server(call, serve, host, port, trace, demo=echo_demo.start if demo else None)
