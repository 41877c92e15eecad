"""Pipe mode (stdin is not a terminal): a select() loop over stdin and the socket.

Exactly like the lessons' servers, one select() watches both: each stdin line is a
message (or a command), each frame from the server is printed as one plain line, so
that scripts and tests can read them. Events go to stdout, problems and notes to
stderr. At the end of stdin (plus `--linger` seconds) the client leaves and exits 0.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import TextIO

from capstone.client.link import Link, Target
from capstone.client.pacing import MAX_PARTS, Outbox
from capstone.client.session import (
    INTERRUPTED_PATIENCE, finish, join_room, leave, say_on_fresh_line, show_frames,
)
from capstone.client.view import Ended, Shown, View
from lessons.toolkit.common import UserError
from lessons.toolkit.framing import Frame, FrameTooLarge

OUTBOX_FULL = 2 * MAX_PARTS  # pipe mode stops reading stdin while this many frames wait
# select() wakes up at least this often, even with nothing to do. Python runs a signal's
# handler (Ctrl-C, SIGTERM) between two steps of the program; a signal that arrives after
# the last step but before select() starts waiting does not interrupt it, and without a
# timeout the client would sleep on, Ctrl-C unheard, until a byte came.
SIGNAL_CHECK_SECONDS = 0.5


class LineSplitter:
    """Bytes from os.read() in, whole text lines out (the last one at EOF)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        return [self._text(line) for line in lines]

    def finish(self) -> list[str]:
        rest, self.buffer = self.buffer, b""
        return [self._text(rest)] if rest else []

    @staticmethod
    def _text(line: bytes) -> str:
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")


class PlainScreen:
    """Pipe mode's output: events on stdout, problems and notes on stderr, no colour, flushed."""

    TO_STDERR = ("problem", "note")

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out, self.err = out or sys.stdout, err or sys.stderr
        for stream in (self.out, self.err):  # an unencodable character must not crash us
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")

    def show(self, shown: Shown) -> None:
        stream = self.err if shown.style in self.TO_STDERR else self.out
        stream.write("".join(line + "\n" for line in shown.lines))
        stream.flush()


def run_pipe(target: Target, view: View, name: str | None, linger: float) -> int:
    """Each stdin line is a message; at EOF (plus `linger` seconds) LEAVE, and exit 0."""
    if name is None:
        raise UserError(view.texts["name_needed"])

    def refuse(reason: str | None) -> str | None:
        raise UserError(reason or view.texts["name_needed"])

    screen = PlainScreen()
    link: Link | None = None
    try:
        link, welcome = join_room(target, view, name, refuse)  # type: ignore[misc]
        screen.show(welcome)
        pipe_loop(link, view, screen, linger)
    except KeyboardInterrupt:
        if link is None:
            raise  # not in the room yet: run_client says so
        leave(link, view, screen.show, INTERRUPTED_PATIENCE)
        say_on_fresh_line(view.goodbye(), after_echoed_ctrl_c=True)
        return 0
    leave(link, view, screen.show)
    return 0


def pipe_loop(link: Link, view: View, screen: PlainScreen, linger: float) -> None:
    """Until stdin ends (and `linger` more seconds) or /quit: send lines, show frames."""
    stdin = sys.stdin.fileno()
    lines = LineSplitter()
    outbox = Outbox()
    reading, quitting = True, False
    leave_at: float | None = None
    link.sock.settimeout(None)
    while True:
        wait = send_due(link, outbox, view)
        if not reading and wait is None:  # input done and everything sent: linger, then go
            now = time.monotonic()
            leave_at = leave_at or now + (0.0 if quitting else linger)
            if now >= leave_at:
                return
            wait = leave_at - now
        watched = [link.sock, stdin] if reading and len(outbox) < OUTBOX_FULL else [link.sock]
        readable, _, _ = select.select(watched, [], [], min(wait, SIGNAL_CHECK_SECONDS) if wait is not None
                                       else SIGNAL_CHECK_SECONDS)
        if link.sock in readable:
            ended = show_frames(receive_some(link, view), view, screen.show)
            if ended:
                finish(ended)
        if stdin in readable:
            data = read_input(stdin)
            for line in lines.feed(data) if data else lines.finish():
                wanted = view.outgoing(line)
                if wanted.shown:
                    screen.show(wanted.shown)
                outbox.extend(wanted.frames)
                if wanted.quit:
                    reading, quitting = False, True
                    break
            reading = reading and bool(data)


def send_due(link: Link, outbox: Outbox, view: View) -> float | None:
    """Send every frame the pace allows now; seconds until the next one (None: all sent)."""
    while (wait := outbox.delay(time.monotonic())) == 0:
        try:
            link.send(outbox.pop(time.monotonic()))
        except OSError as err:
            finish(view.lost(err))
    return wait


def read_input(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # stdin closed under us: same as its end
        return b""


def receive_some(link: Link, view: View) -> list[Frame] | Ended:
    """One recv() on a readable socket: the frames it completed, or why the chat ended."""
    try:
        data = link.sock.recv(65536)
        if not data:
            return view.closed()
        return link.feed(data)
    except OSError as err:
        return view.lost(err)
    except FrameTooLarge as err:
        return view.huge(err)
