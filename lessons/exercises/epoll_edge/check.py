"""Checks for epoll-edge: read_available() on real non-blocking sockets, then your
edge-triggered serve(listener, stop) against the shared echo-server checks.

Whether your clients are really registered with EPOLLET is read from the kernel itself:
/proc/self/fdinfo/<epoll fd> lists every registered fd and its event mask.
"""

from __future__ import annotations

import os
import select
import socket
import time
from types import ModuleType
from typing import Iterator

import pytest

from lessons.exercises import peers
from lessons.exercises.echo_battery import *  # noqa: F401,F403 - the shared echo-server checks
from lessons.exercises.echo_battery import EchoServer, expect_echo, serving_on_loopback
from lessons.exercises.harness import describe_exception
from lessons.toolkit.i18n import N_, _

BURST = 100_000  # bytes waiting at once: far more than one recv(65536)


@pytest.fixture
def server(learner: ModuleType) -> Iterator[EchoServer]:
    with serving_on_loopback(learner.serve) as running:
        yield running


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(writer, reader): a connected Unix socket pair; the reader is non-blocking, as under EPOLLET."""
    writer, reader = socket.socketpair()
    reader.setblocking(False)
    try:
        yield writer, reader
    finally:
        writer.close()
        reader.close()


def call_read_available(learner: ModuleType, sock: socket.socket, situation: str) -> tuple[bytes, bool]:
    """The learner's read_available(sock); `situation` (translated) says when, in a failure."""
    try:
        result = learner.read_available(sock)
    except BlockingIOError as err:
        pytest.fail(_("read_available() let BlockingIOError out {situation} ({error}): on a non-blocking "
                      "socket that is how recv() says 'nothing more for now'; catch it and return what "
                      "you have.").format(situation=situation, error=describe_exception(err)), pytrace=False)
    except ConnectionResetError as err:
        pytest.fail(_("read_available() let ConnectionResetError out {situation} ({error}): a reset peer is "
                      "a closed peer; return (data, True).").format(situation=situation,
                                                                   error=describe_exception(err)), pytrace=False)
    assert isinstance(result, tuple) and len(result) == 2, _(
        "read_available() should return a pair (data, closed), it returned {result}.").format(result=repr(result))
    return result


@pytest.mark.limit(10)
@pytest.mark.title(N_("read_available() takes everything waiting, not just one recv() worth"))
def test_read_available_takes_everything_waiting(learner: ModuleType, pair) -> None:
    writer, reader = pair
    writer.sendall(b"x" * BURST)
    data, closed = call_read_available(learner, reader, _("with {n} bytes waiting").format(n=BURST))
    assert len(data) == BURST, _(
        "read_available() returned {got} of the {n} bytes waiting: with EPOLLET, epoll "
        "reports them once, so keep calling recv() until it raises BlockingIOError.").format(got=len(data), n=BURST)
    assert closed is False, _("read_available() said the peer closed, but it had only sent data.")


@pytest.mark.limit(10)
@pytest.mark.title(N_("read_available() returns (b'', False) at once when nothing is waiting"))
def test_read_available_returns_when_nothing_is_waiting(learner: ModuleType, pair) -> None:
    _writer, reader = pair
    data, closed = call_read_available(learner, reader, _("with nothing waiting"))
    assert (data, closed) == (b"", False), _(
        "with nothing waiting, read_available() returned {result}; expected (b'', False).").format(
        result=repr((data[:40], closed)))


@pytest.mark.limit(10)
@pytest.mark.title(N_("read_available() returns the last bytes and closed=True when the peer has closed"))
def test_read_available_sees_the_peer_close(learner: ModuleType, pair) -> None:
    writer, reader = pair
    writer.sendall(b"goodbye")
    writer.close()
    data, closed = call_read_available(learner, reader, _("after the peer closed"))
    assert data == b"goodbye", _("the peer sent b'goodbye' and closed; read_available() returned {data}.").format(
        data=repr(data))
    assert closed is True, _("the peer closed, but read_available() said closed=False: recv() returning "
                             "b'' is the end of the stream.")


@pytest.mark.limit(10)
@pytest.mark.title(N_("read_available() reports a reset connection (RST) as closed"))
def test_read_available_treats_a_reset_as_closed(learner: ModuleType) -> None:
    client, accepted = peers.tcp_pair()
    try:
        accepted.setblocking(False)
        peers.reset(client)
        deadline = time.monotonic() + peers.DEADLINE
        while not select.select([accepted], [], [], 0.1)[0] and time.monotonic() < deadline:
            pass
        _data, closed = call_read_available(learner, accepted, _("after the peer reset the connection"))
        assert closed is True, _("the peer reset the connection, but read_available() said closed=False.")
    finally:
        accepted.close()


def epoll_registrations() -> dict[int, dict[int, int]]:
    """epoll fd -> {registered fd: event mask}, for every epoll instance of this process."""
    found: dict[int, dict[int, int]] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{name}") as info:
                lines = info.read().splitlines()
        except OSError:
            continue
        entries = {}
        for line in lines:
            if line.startswith("tfd:"):
                fields = line.split()
                entries[int(fields[1])] = int(fields[3], 16)
        found[int(name)] = entries
    return found


@pytest.mark.title(N_("Clients are registered with EPOLLET (read from /proc/self/fdinfo)"))
def test_clients_are_registered_edge_triggered(server: EchoServer) -> None:
    client = server.connect()
    client.sendall(b"edge")
    expect_echo(server, client, b"edge")
    listener_fd = server.listener.fileno()
    ours = [entries for entries in epoll_registrations().values() if listener_fd in entries]
    assert ours, _("no epoll instance of your server has the listener registered: use select.epoll().")
    clients = {fd: mask for entries in ours for fd, mask in entries.items() if fd != listener_fd}
    assert clients, _("your epoll instance has no client registered, yet the client got its answer.")
    level = {fd: mask for fd, mask in clients.items() if not mask & select.EPOLLET}
    assert not level, _(
        "clients are registered without EPOLLET (event masks {masks}): register them with "
        "select.EPOLLIN | select.EPOLLET; this exercise is about edge-triggered mode.").format(
        masks=", ".join(f"0x{mask:x}" for mask in level.values()))
