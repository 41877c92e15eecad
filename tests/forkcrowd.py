"""A crowd of chat members in one process, for the fork engine's shutdown tests.

Hundreds of members, some of them sending as fast as the server takes it, all read by
one poll() loop (select() stops at descriptor 1024). Each member remembers its last
frame and how its stream ended (an orderly EOF or a reset) and when, so a test can say
who did not get ERROR SHUTDOWN. Run it by hand for the full-size measurement:

    python tests/forkcrowd.py 500 5 0    # 500 members, 5 sending, none closing after the end
    python tests/forkcrowd.py kill 500   # how long relays outlive a SIGKILLed hub
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # run by hand: the test helpers and this checkout

from chatserver import ServerProcess  # noqa: E402
from chatwire import Code, Frame, FrameReader, Kind, encode  # noqa: E402

from lessons.toolkit import procfs  # noqa: E402

SAY_BURST = encode(Kind.SAY, "x" * 200) * 64  # what a sender offers per writable wake-up


@dataclass(eq=False)
class Member:
    sock: socket.socket
    name: str
    sending: bool = False  # until a send fails
    reader: FrameReader = field(default_factory=FrameReader)
    welcomed: bool = False
    last: Frame | None = None
    sent: int = 0
    ended: str | None = None  # "eof" or "reset"
    ended_at: float = 0.0

    def got_shutdown(self) -> bool:
        return self.last is not None and self.last.kind == Kind.ERROR and self.last.payload[:1] == bytes([Code.SHUTDOWN])


class Crowd:
    """Members of one server, driven together: joins, sends, reads, notices the end."""

    def __init__(self, server: ServerProcess, size: int, senders: int, close_at_eof: bool = True) -> None:
        self.server = server
        self.close_at_eof = close_at_eof  # False: keep the socket open after the end, as a lazy client does
        self.members = [self._connect(f"m{i}", sending=i < senders) for i in range(size)]
        self.by_fd = {m.sock.fileno(): m for m in self.members}
        self.poller = select.poll()
        for member in self.members:
            self.poller.register(member.sock, select.POLLIN)

    def _connect(self, name: str, sending: bool) -> Member:
        sock = socket.create_connection(self.server.address, timeout=10)
        sock.setblocking(False)
        sock.send(encode(Kind.JOIN, name))
        return Member(sock, name, sending)

    def open_members(self) -> list[Member]:
        return [m for m in self.members if m.ended is None]

    def run_until(self, done, timeout: float) -> bool:  # noqa: ANN001
        """Read (and send) until `done()` is true or `timeout` passes; True if done."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, mask in self.poller.poll(min(left, 0.05) * 1000):
                member = self.by_fd[fd]
                if mask & select.POLLOUT:
                    self._send_some(member)
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR) and not member.ended:
                    self._receive(member)
        return True

    def all_welcomed(self) -> bool:
        return all(m.welcomed for m in self.members)

    def start_sending(self) -> None:
        for member in self.members:
            self._watch(member)

    def senders_busy(self, at_least: int) -> bool:
        return all(m.sent >= at_least for m in self.members if m.sending)

    def _send_some(self, member: Member) -> None:
        """A sender goes on sending after the end of its input, until a send fails."""
        try:
            member.sent += member.sock.send(SAY_BURST)
        except BlockingIOError:
            pass
        except OSError:
            member.sending = False
            self._watch(member)

    def _watch(self, member: Member) -> None:
        mask = (0 if member.ended else select.POLLIN) | (select.POLLOUT if member.sending else 0)
        if mask:
            self.poller.modify(member.sock, mask)
            return
        self.poller.unregister(member.sock)
        if self.close_at_eof:
            member.sock.close()

    def _receive(self, member: Member) -> None:
        try:
            data = member.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as err:
            self._end(member, "reset" if err.errno == errno.ECONNRESET else err.strerror)
            return
        if not data:
            self._end(member, "eof")
            return
        for frame in member.reader.feed(data):
            member.last = frame
            if frame.kind == Kind.WELCOME:
                member.welcomed = True

    def _end(self, member: Member, how: str) -> None:
        """The end of a member's stream: note how and when, then close as a client would."""
        member.ended, member.ended_at = how, time.monotonic()
        self._watch(member)

    def close(self) -> None:
        for member in self.members:
            member.sock.close()


@dataclass
class ShutdownReport:
    members: int
    exit_code: int | None
    exit_seconds: float  # from SIGTERM to the server's exit, as seen by its parent
    last_close_seconds: float  # from SIGTERM to the last member's end of stream
    relays_gone_seconds: float  # from SIGTERM until no relay process runs any more
    missing_shutdown: list[str]  # members whose last frame was not ERROR SHUTDOWN
    resets: list[str]
    still_open: list[str]


def shutdown_under_load(size: int, senders: int, close_at_eof: bool = True) -> ShutdownReport:
    """Join `size` members to a fork-engine server, let `senders` of them send, SIGTERM it."""
    server = ServerProcess.start("--engine", "fork", "--port", "0", "--join-timeout", "60")
    crowd = None
    try:
        crowd = Crowd(server, size, senders, close_at_eof)
        assert crowd.run_until(crowd.all_welcomed, timeout=60), "not every member was welcomed"
        crowd.start_sending()
        assert crowd.run_until(lambda: crowd.senders_busy(256 * 1024), timeout=30), "the senders could not send"
        relays = running(procfs.children(server.process.pid))
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        exited_at = relays_gone_at = None

        def finished() -> bool:
            nonlocal exited_at, relays, relays_gone_at
            if exited_at is None and server.process.poll() is not None:
                exited_at = time.monotonic()
            if exited_at is not None and relays_gone_at is None:
                relays = running(relays)
                relays_gone_at = None if relays else time.monotonic()
            return relays_gone_at is not None and not crowd.open_members()

        crowd.run_until(finished, timeout=15)
        ends = [m.ended_at - signalled for m in crowd.members if m.ended]
        return ShutdownReport(
            members=size,
            exit_code=server.process.poll(),
            exit_seconds=(exited_at or time.monotonic()) - signalled,
            relays_gone_seconds=(relays_gone_at or time.monotonic()) - signalled,
            last_close_seconds=max(ends, default=float("nan")),
            missing_shutdown=[m.name for m in crowd.members if not m.got_shutdown()],
            resets=[m.name for m in crowd.members if m.ended == "reset"],
            still_open=[m.name for m in crowd.open_members()],
        )
    finally:
        if crowd is not None:
            crowd.close()
        server.stop()


def running(pids: list[int]) -> list[int]:
    """The processes among `pids` that still run (a zombie has ended)."""
    return [pid for pid in pids if procfs.state(pid) not in (None, "Z")]


def relays_outliving_a_killed_hub(size: int) -> tuple[int, float]:
    """Join `size` members, SIGKILL the hub; (relays found, seconds until none runs)."""

    server = ServerProcess.start("--engine", "fork", "--port", "0", "--join-timeout", "60")
    crowd = None
    try:
        crowd = Crowd(server, size, senders=0)
        assert crowd.run_until(crowd.all_welcomed, timeout=60), "not every member was welcomed"
        relays = running(procfs.children(server.process.pid))
        found = len(relays)
        server.process.kill()
        killed = time.monotonic()
        while relays and time.monotonic() - killed < 30:
            time.sleep(0.01)  # polling interval of a measurement
            relays = running(relays)
        return found, time.monotonic() - killed
    finally:
        if crowd is not None:
            crowd.close()
        server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["kill"]:
        found, seconds = relays_outliving_a_killed_hub(int((sys.argv[2:] + ["500"])[0]))
        print(f"hub SIGKILLed with {found} relays: the last one ended {seconds:.3f} s later")
        sys.exit()
    size, senders, polite = (int(arg) for arg in (sys.argv[1:] + ["500", "5", "1"])[:3])
    report = shutdown_under_load(size, senders, close_at_eof=bool(polite))
    print(f"{report.members} members, {senders} sending: exit {report.exit_code} after {report.exit_seconds:.2f} s; "
          f"last member closed after {report.last_close_seconds:.2f} s, last relay gone after {report.relays_gone_seconds:.2f} s")
    print(f"no ERROR SHUTDOWN: {len(report.missing_shutdown)} {report.missing_shutdown[:10]}")
    print(f"reset: {len(report.resets)} {report.resets[:10]}; still open: {len(report.still_open)}")
