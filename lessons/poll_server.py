"""The notes' poll() server, corrected: one thread serves every client.

Shape as in the notes: an `fdmap` from descriptor number to socket, `register` and
`unregister`, and a loop `events = poller.poll()` / `for fd, event in events:`.
The fixes: a client is looked up *before* it leaves `fdmap` (the notes used it after
`del fdmap[fd]`, a KeyError at the first disconnect: `--notes-bug` runs that version,
`serve_as_in_the_notes` below), POLLHUP/POLLERR/POLLNVAL are handled, sockets are
non-blocking, and one client's error drops that client only. An answer a client cannot
take yet waits for POLLOUT; out of descriptors (EMFILE) the listener is set aside
instead of spinning. The answering itself (recv, "收到了: ...", send) is shared:
lessons/echo_driver.py.
"""

from __future__ import annotations

import select
import socket
import traceback
from typing import Annotated

import typer

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
    REPLY_PREFIX,
    StopFlag,
    TraceOption,
    accept_client,
    echo_once,
    run_server,
)
from lessons.toolkit.events import describe_poll
from lessons.toolkit.i18n import _

TICK_MS = int(TICK_SECONDS * 1000)  # poll() counts its timeout in MILLISECONDS; epoll and select in seconds
HANG_UP = select.POLLHUP | select.POLLERR | select.POLLNVAL


def serve(server: socket.socket, log: EchoLog, stop: StopFlag) -> None:
    """Accept, read and answer with poll() until `stop` is set; close everything at the end."""
    poller = select.poll()
    fdmap: dict[int, socket.socket] = {server.fileno(): server}
    accepting = AcceptPause(log)
    outbox = Outbox(log)  # answers a client could not take yet

    def register(sock: socket.socket, mask: int) -> None:
        poller.register(sock, mask)
        log.registered(sock.fileno(), describe_poll(mask))

    def modify(fd: int, mask: int) -> None:
        poller.modify(fd, mask)
        log.modified(fd, describe_poll(mask))

    def unregister(fd: int) -> None:
        poller.unregister(fd)
        log.unregistered(fd)

    def drop(fd: int, why: str) -> None:
        conn = fdmap.pop(fd)  # take it out of the map and keep it in hand: no lookup after this
        unregister(fd)
        conn.close()
        outbox.forget(fd)
        log.closed(fd, why)
        accepting.descriptor_freed()

    register(server, select.POLLIN)
    try:
        while not stop.is_set():
            if accepting.time_to_resume():  # out of descriptors a moment ago: watch the listener again
                register(server, select.POLLIN)
            events = poller.poll(TICK_MS)  # [] after TICK_MS: time to look at the stop flag
            log.returned(events, describe_poll)
            for fd, event in events:
                if fd == server.fileno():
                    try:
                        conn = accept_client(server, log)
                    except OutOfDescriptors:  # it would stay readable: stop watching it for a while
                        unregister(fd)
                        accepting.pause()
                        continue
                    if conn is not None:
                        fdmap[conn.fileno()] = conn
                        register(conn, select.POLLIN)
                elif event & select.POLLOUT:  # it can take more of the answer that waits
                    try:
                        if outbox.send_rest(fdmap[fd]):
                            modify(fd, select.POLLIN)  # all sent: read from it again
                    except ClientGone as gone:
                        drop(fd, gone.reason)
                elif event & select.POLLIN:  # data, EOF, or a reset: recv() tells which
                    try:
                        if not echo_once(fdmap[fd], log, outbox) and outbox.holds(fd):
                            modify(fd, select.POLLOUT)  # its answer did not fit: wait until it reads
                    except ClientGone as gone:
                        drop(fd, gone.reason)
                elif event & HANG_UP:  # hung up or failed with nothing left to read
                    drop(fd, _("the kernel reported {events}").format(events=describe_poll(event)))
    finally:
        for sock in fdmap.values():
            sock.close()


def serve_as_in_the_notes(server: socket.socket, log: EchoLog, stop: StopFlag) -> None:
    """The notes' loop with the notes' bug (--notes-bug): the first client to leave ends it."""
    poller = select.poll()
    poller.register(server, select.POLLIN)
    log.registered(server.fileno(), "POLLIN")
    fdmap: dict[int, socket.socket] = {server.fileno(): server}
    try:
        while not stop.is_set():
            events = poller.poll(TICK_MS)
            log.returned(events, describe_poll)
            for fd, event in events:
                if fd == server.fileno():
                    conn, address = server.accept()
                    log.accepted(conn.fileno(), address)
                    poller.register(conn, select.POLLIN)
                    log.registered(conn.fileno(), "POLLIN")
                    fdmap[conn.fileno()] = conn
                elif event & select.POLLIN:
                    data = fdmap[fd].recv(1024)
                    if data:
                        log.received(fd, data)
                        fdmap[fd].sendall(REPLY_PREFIX + data)
                        log.sent(len(REPLY_PREFIX + data))
                    else:
                        log.closed(fd, _("it closed its side (recv returned b'')"))
                        del fdmap[fd]
                        poller.unregister(fdmap[fd])  # the notes' bug: the entry was deleted one line up
    except KeyError as err:
        explain_notes_bug(err, log)
        stop.stop(_("the notes' KeyError"))
    finally:
        for sock in fdmap.values():
            sock.close()


def explain_notes_bug(err: KeyError, log: EchoLog) -> None:
    """Say where the notes' server died and what the fix is, instead of a traceback."""
    frame = traceback.extract_tb(err.__traceback__)[-1]
    log.narrate("error", _("KeyError: {key} at poll_server.py line {line}: {code}").format(
        key=err.args[0], line=frame.lineno, code=(frame.line or "").split("#")[0].strip()))
    log.narrate("demo", _("this is where the notes' server dies, for every client at once: the line "
                          "before it, `del fdmap[fd]`, had already taken fd {fd} out of fdmap.").format(fd=err.args[0]))
    log.narrate("demo", _("the fix, in serve() above: `conn = fdmap.pop(fd)` takes the socket out and keeps "
                          "it in hand, then `poller.unregister(fd)` and `conn.close()`; nothing looks it up again."))


def main(
    host: HostOption = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    demo: DemoOption = False,
    trace: TraceOption = False,
    notes_bug: Annotated[
        bool, typer.Option("--notes-bug", help=_("Run the notes' own loop, KeyError included, then see the fix."))
    ] = False,
) -> None:
    """Serve clients with poll(): print what arrives and answer "收到了: " plus those bytes."""
    if notes_bug:
        run_server("poll", serve_as_in_the_notes, host, port, trace,
                   demo=echo_demo.start_notes_bug if demo else None,
                   mode=_("the notes' poll server, bug included (--notes-bug): the first client to leave ends it"))
        return
    run_server("poll", serve, host, port, trace, demo=echo_demo.start if demo else None)
