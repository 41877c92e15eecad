"""unix_recv.py from the notes, corrected: receive on a Unix domain socket, safely.

The notes bind `./sock`: a file in whatever directory you happen to be in, with the
mode your umask gives it, left behind when the program stops, so the next run fails
with "Address already in use". Here the socket file:
- lives in a private directory (`<tmp>/learn-<uid>`, mode 0700) unless you choose --path;
- is created with mode 0600, so only your user can connect;
- replaces a stale file (one nobody listens on) but never a live one;
- is removed on exit, on Ctrl-C (SIGINT) and on SIGTERM.
The kernel tells the receiver who connected (pid, uid, gid: SO_PEERCRED), something no
TCP server can know.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from lessons.toolkit.children import NOBODY  # the unprivileged uid/gid the demo switches to when run as root
from lessons.toolkit.common import RunFailure, UserError, printable, printable_bytes
from lessons.toolkit.exits import interrupt_when_output_closes, start_fresh_line
from lessons.toolkit.narrate import Narrator
from lessons.unix_send import Endpoint, Narrate, connect_unix, resolve_endpoint, send_message
from lessons.toolkit.unixsock import (SocketFile, bind_abstract, bind_unix, clear_stale, peer_credentials, private_dir,
                              remove_socket_file)
from lessons.toolkit.i18n import _

SOCKET_MODE = 0o600
MAX_MESSAGE = 64 * 1024
IDLE_TIMEOUT = 30.0
REPLY = "收到了"  # "received", as the notes' servers answer


class Stopped(Exception):
    """Raised by the SIGTERM handler, so cleanup runs exactly as it does for Ctrl-C."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass
class Delivery:
    """What one sender sent, who it was, and why its connection ended early if it did."""

    peer: Peer | None
    message: bytes = b""
    error: str | None = None


# ---------------------------------------------------------------- listening

def listen(endpoint: Endpoint, narrate: Narrate) -> tuple[socket.socket, SocketFile | None]:
    """Bind and listen; returns the socket and the file it created, to remove at exit (None if abstract)."""
    if endpoint.abstract is not None:
        listener = bind_abstract(endpoint.abstract)
        narrate("listen", _("abstract namespace: no file on disk, nothing to clean up"))
        announce(endpoint)
        return listener, None
    path = Path(endpoint.path)  # type: ignore[arg-type]  # not abstract, so a path
    if clear_stale(path):
        narrate("close", _("removed a stale socket file at {path}: connect() was refused, so its "
                           "server is gone").format(path=path))
    listener = bind_unix(path, mode=SOCKET_MODE)
    socket_file = SocketFile.created_at(path)  # its device and inode: what "ours" means at exit
    file_mode, folder_mode = stat.S_IMODE(os.stat(path).st_mode), stat.S_IMODE(os.stat(path.parent).st_mode)
    narrate("listen", _("socket file mode {file_mode:04o}, directory {parent} mode "
                        "{folder_mode:04o}").format(
        file_mode=file_mode, parent=path.parent, folder_mode=folder_mode))
    if folder_mode & 0o022:
        narrate("listen", shared_directory_note(path.parent, folder_mode))
    announce(endpoint)
    return listener, socket_file


def shared_directory_note(folder: Path, folder_mode: int) -> str:
    """Why a socket file in a directory others can write to is weaker, even with mode 0600."""
    deletable = "" if folder_mode & stat.S_ISVTX else _(" and delete your file (the directory is not sticky)")
    return (_("note: others can write to {folder}: they cannot connect (mode 0600), but they can "
              "take the name before you start{deletable}; the default private directory prevents "
              "that").format(folder=folder, deletable=deletable))


def announce(endpoint: Endpoint) -> None:
    """The plain `listening on ...` line that scripts and tests wait for, printed once ready."""
    print(f"listening on {endpoint}", flush=True)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the new socket file is recorded for cleanup.

    Without this, a signal landing between bind() and the `try` that removes the file
    would leave a stale file behind: the very bug this lesson fixes.
    """
    held = {signal.SIGINT, signal.SIGTERM}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a held signal is delivered here


def close_listener(listener: socket.socket, endpoint: Endpoint, socket_file: SocketFile | None,
                   narrate: Narrate) -> None:
    listener.close()
    if socket_file is None:
        return
    if socket_file.remove():  # ours only, never a newer server's
        narrate("close", f"removed {endpoint.path}")
    elif os.path.lexists(socket_file.path):
        narrate("close", _("left {path} alone: it is no longer our file (a newer server's?)").format(path=endpoint.path))


# ---------------------------------------------------------------- serving

def peer_of(conn: socket.socket) -> Peer | None:
    """The kernel's record of who connected; None where SO_PEERCRED does not exist (macOS, BSD)."""
    try:
        return Peer(*peer_credentials(conn))
    except (AttributeError, OSError):
        return None


def describe(peer: Peer | None) -> str:
    if peer is None:
        return _("a local process (no SO_PEERCRED on this system; macOS has LOCAL_PEERCRED)")
    return (f"pid {peer.pid} ({process_name(peer.pid)}) uid {peer.uid} ({user_name(peer.uid)}) gid {peer.gid}"
            f"  [SO_PEERCRED]")


def process_name(pid: int) -> str:
    """The command name from /proc; the process chose it, so it is printed as untrusted text."""
    try:
        return printable(Path(f"/proc/{pid}/comm").read_text(errors="replace").strip())
    except OSError:
        return "?"


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return _("no name")


def read_message(conn: socket.socket) -> tuple[bytes, str | None]:
    """Everything up to the sender's end-of-file, which marks the end of its message."""
    chunks, size = [], 0
    while chunk := conn.recv(4096):
        size += len(chunk)
        if size > MAX_MESSAGE:
            return b"".join(chunks), _("the message is longer than {most} bytes").format(most=MAX_MESSAGE)
        chunks.append(chunk)
    return b"".join(chunks), None


def serve_one(listener: socket.socket, narrate: Narrate) -> Delivery:
    """One sender: who it is, its message, our reply. Its failures end its connection only."""
    conn, _ = listener.accept()
    with conn:
        delivery = Delivery(peer_of(conn))
        narrate("accept", _("connection from {peer}").format(peer=describe(delivery.peer)))
        conn.settimeout(IDLE_TIMEOUT)
        try:
            delivery.message, delivery.error = read_message(conn)
            if delivery.error is None and not delivery.message:
                narrate("close", _("closed without a message (a liveness probe, such as a second receiver makes)"))
            elif delivery.error is None:
                narrate("recv", f"{len(delivery.message)} bytes: {printable_bytes(delivery.message)}")
                reply = f"{REPLY} ({len(delivery.message)} bytes)"
                conn.sendall(reply.encode())
                narrate("send", f"reply: {reply}")
        except TimeoutError:
            delivery.error = _("the sender went quiet for {seconds:.0f} s without finishing").format(seconds=IDLE_TIMEOUT)
        except ConnectionError as err:
            delivery.error = _("the connection failed: {reason}").format(reason=err.strerror or err)
    if delivery.error:
        narrate("error", _("dropped the sender: {error}").format(error=delivery.error))
    return delivery


def stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)


def main(
    path: Annotated[Optional[Path], typer.Option(help=_("Socket file to create (default: "
                                                        "<tmp>/learn-<uid>/unix-lesson.sock)."))] = None,
    abstract: Annotated[Optional[str], typer.Option(help=_("Listen on this name in Linux's abstract namespace (no file)."))] = None,
    once: Annotated[bool, typer.Option("--once", help=_("Exit after the first sender."))] = False,
    demo: Annotated[bool, typer.Option("--demo", help=_("Run receiver and sender together, narrated, and exit."))] = False,
) -> None:
    """Receive messages on a Unix domain socket and show who sent them."""
    narrate = Narrator()
    if demo:
        run_demo(narrate)
        return
    endpoint = resolve_endpoint(path, abstract)
    stop_on_sigterm()
    listener: socket.socket | None = None
    socket_file = None
    try:
        with signals_held():
            listener, socket_file = listen(endpoint, narrate)
        interrupt_when_output_closes()  # `| head -1` ends a receiver that waits for senders
        while True:
            serve_one(listener, narrate)
            if once:
                return
    except KeyboardInterrupt:
        start_fresh_line()  # after the terminal's echoed ^C
        narrate("close", _("stopped by SIGINT (Ctrl-C)"))
    except Stopped as stop:
        narrate("close", _("stopped by {stop}").format(stop=stop))
    finally:
        if listener is not None:
            close_listener(listener, endpoint, socket_file, narrate)


# ---------------------------------------------------------------- the narrated demo

def make_stale_file(path: Path) -> None:
    """What a crashed server leaves behind: bind (the file appears), close without unlink."""
    remove_socket_file(path)
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(path))
    leftover.close()


def show_stale_file(path: Path, narrate: Narrate) -> None:
    make_stale_file(path)
    narrate("demo", _("a server bound {name} and died without unlinking it: the file is still "
                      "there (socket file: {is_socket})").format(
        name=path.name, is_socket=stat.S_ISSOCK(os.lstat(path).st_mode)))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError as err:
        narrate("demo", _("connect() to it: ConnectionRefusedError ({reason}): nobody listens, "
                          "it is stale").format(reason=err.strerror))
    finally:
        probe.close()
    retry = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        retry.bind(str(path))
    except OSError as err:
        narrate("demo", _("the notes' receiver would now bind() it and fail: {reason}").format(reason=err.strerror))
    finally:
        retry.close()


def run_in_thread(target: Callable[[], Delivery]) -> tuple[threading.Thread, list[Delivery]]:
    """The demo's receiver side: `target` runs in a thread, its result lands in the list."""
    results: list[Delivery] = []
    thread = threading.Thread(target=lambda: results.append(target()), daemon=True)
    thread.start()
    return thread, results


def sender_process(path: Path, narrate: Narrate, listener: socket.socket) -> None:
    """Run `learn run unix-send` as a real second process and check what SO_PEERCRED says about it."""
    thread, results = run_in_thread(lambda: serve_one(listener, narrate))
    command = [sys.executable, "-m", "lessons", "run", "unix-send", "--path", str(path),
               "--message", _("hello from another process")]
    sender = subprocess.Popen(command)
    try:
        code = sender.wait(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    thread.join(timeout=IDLE_TIMEOUT)
    if code != 0 or not results or results[0].error:
        raise RunFailure(_("the demo's sender process did not deliver its message; see the messages above."))
    peer = results[0].peer
    if peer is not None:
        same = peer.pid == sender.pid and peer.uid == os.getuid()
        narrate("demo", _("SO_PEERCRED said pid {pid} uid {uid}; the sender we started is pid "
                          "{sender_pid} running as uid {sender_uid}: {verdict}").format(
            pid=peer.pid, uid=peer.uid, sender_pid=sender.pid, sender_uid=os.getuid(),
            verdict=_("they match") if same else _("MISMATCH")))
        if not same:
            raise RunFailure(_("SO_PEERCRED did not report the sender process; please report it."))


def refuse_live_file(path: Path, narrate: Narrate, listener: socket.socket) -> None:
    """A second receiver probes the file with connect(); ours accepts the probe, so it is live."""
    thread, _results = run_in_thread(lambda: serve_one(listener, narrate))
    try:
        bind_unix(path).close()
    except UserError as err:
        narrate("demo", _("a second receiver on the same path is refused: {err}").format(err=err))
        return
    finally:
        thread.join(timeout=IDLE_TIMEOUT)
    raise RunFailure(_("a second receiver took over a live socket file; please report it."))


def other_user_refused(path: Path, narrate: Narrate) -> None:
    """As root, fork a child that becomes `nobody` and try to connect: the modes must stop it."""
    if os.geteuid() != 0:
        narrate("demo", _("(run the demo as root to watch another user being refused; the tests do it)"))
        return
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, then try
        code = 3
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(str(path))
            code = 1
        except PermissionError:
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    refused = os.waitstatus_to_exitcode(status) == 0
    narrate("demo", _("uid {uid} (nobody) tries to connect: {outcome}").format(
        uid=NOBODY, outcome=_("PermissionError, the directory (0700) and file (0600) keep it out") if refused
        else _("NOT refused")))
    if not refused:
        raise RunFailure(_("another user could connect to the private socket; please report it."))


def abstract_namespace(narrate: Narrate) -> None:
    """The Linux-only namespace: a name, no file, nothing to clean up."""
    endpoint = Endpoint(abstract=f"learn-demo-{os.getpid()}")
    listener, _ = listen(endpoint, narrate)
    with listener:
        listener.settimeout(IDLE_TIMEOUT)
        thread, _results = run_in_thread(lambda: serve_one(listener, narrate))
        with connect_unix(endpoint) as sock:
            send_message(sock, b"hello from the abstract namespace", narrate)
        thread.join(timeout=IDLE_TIMEOUT)
        listed = [line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()
                  if line.endswith(str(endpoint))]
        narrate("demo", _("/proc/net/unix lists it as {entry}; no file exists "
                          "anywhere for it").format(entry=listed[0] if listed else _("(not found)")))
    try:
        connect_unix(endpoint).close()
    except UserError:
        narrate("demo", _("after close() the name {endpoint} is gone at once: nothing was left to "
                          "clean up").format(endpoint=endpoint))


def run_demo(narrate: Narrate) -> None:
    rule = getattr(narrate, "rule", lambda title: narrate("demo", title))
    path = private_dir() / f"unix-demo-{os.getpid()}.sock"
    try:
        rule(_("A stale socket file, as the notes' receiver leaves it"))
        show_stale_file(path, narrate)
        rule(_("Listening safely"))
        receive_in_the_demo(Endpoint(path=path), narrate, rule)
    finally:
        remove_socket_file(path)  # even if the demo itself breaks, it leaves nothing behind
    narrate("demo", _("{name} exists after exit: {exists}").format(name=path.name, exists=path.exists()))
    if sys.platform.startswith("linux"):
        rule(_("The abstract namespace (Linux only)"))
        abstract_namespace(narrate)
    rule("Summary")
    narrate("summary", _("private directory, mode 0600, stale files replaced, live ones refused, "
                         "the file removed on exit, and the kernel names every peer"))


def receive_in_the_demo(endpoint: Endpoint, narrate: Narrate, rule: Callable[[str], None]) -> None:
    path = Path(endpoint.path)  # type: ignore[arg-type]
    listener, socket_file = listen(endpoint, narrate)
    listener.settimeout(IDLE_TIMEOUT)  # a demo receiver thread gives up if nobody comes
    try:
        rule(_("A live socket file is not stolen"))
        refuse_live_file(path, narrate, listener)
        rule(_("A sender in another process; the kernel says who it is"))
        sender_process(path, narrate, listener)
        rule(_("Another user"))
        other_user_refused(path, narrate)
    finally:
        close_listener(listener, endpoint, socket_file, narrate)
