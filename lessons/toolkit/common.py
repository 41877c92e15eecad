"""Small pieces every lesson shares: user-facing errors, listening sockets, safe text."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
import unicodedata
from pathlib import Path
from typing import Callable, NoReturn

from lessons.toolkit.i18n import _


class UserError(Exception):
    """Something the user can fix (port in use, bad path): one sentence, exit 2."""

    exit_code = 2


class RunFailure(Exception):
    """Something went wrong at run time that is not the user's input: exit 1."""

    exit_code = 1


def unknown_name(problem: str, close: list[str], listing: str) -> str:
    """The sentence for a name that does not exist: the close ones if any, else where to look.

    `there is no lesson called 'pol-server' (did you mean poll-server?).`
    `there is no lesson called 'xyz'; `learn list` shows them all.`
    """
    if close:
        names = close[0] if len(close) == 1 else _("{some} or {last}").format(some=", ".join(close[:-1]),
                                                                              last=close[-1])
        return _("{problem} (did you mean {names}?).").format(problem=problem, names=names)
    return _("{problem}; `{listing}` shows them all.").format(problem=problem, listing=listing)


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888  # as in the notes


def open_listener(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, backlog: int = 128,
                  reuse_port: bool = False) -> socket.socket:
    """Bind and listen with SO_REUSEADDR, turning the usual mistakes into one sentence.

    `reuse_port`: SO_REUSEPORT, so that several processes can listen on one port and the
    kernel spreads the connections over them."""
    if not 0 <= port <= 65535:
        raise UserError(f"port {port} does not exist; ports go from 0 to 65535 (0 picks a free one).")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"cannot resolve host {host!r}: {err.strerror}.") from None
    family, kind, proto, _canonical_name, address = infos[0]  # `_` is gettext here
    server = socket.socket(family, kind, proto)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        server.bind(address)
        server.listen(backlog)
    except OSError as err:
        server.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use; stop the other server "
                f"or pick another port with --port (0 picks a free one)."
            ) from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise UserError(
                f"not allowed to listen on port {port}; ports below 1024 need privileges, "
                f"pick a higher one with --port."
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise UserError(f"{host} is not an address of this machine.") from None
        raise
    return server


def means_every_address(host: str) -> bool:
    """0.0.0.0, ::, 0 or an empty host: what a server binds to mean "every address of this machine"."""
    import ipaddress

    bare = host.strip().strip("[]")
    if bare in ("", "0"):  # getaddrinfo reads "0" as 0.0.0.0
        return True
    try:
        return ipaddress.ip_address(bare).is_unspecified
    except ValueError:
        return False  # a name, such as localhost


def check_client_host(host: str) -> None:
    """The one rule for every client: it connects to one real address, never to "every address".

    (Linux even connects 0.0.0.0 to the local machine, which hides the mistake until the
    client runs elsewhere.)
    """
    if means_every_address(host):
        raise UserError(_("{host} means 'every address' to a server; a client must name one real address, "
                          "such as 127.0.0.1.").format(host=host.strip() or _("an empty host")))


def address_text(address: object) -> str:
    """'127.0.0.1:5000' for IPv4, '[::1]:5000' for IPv6, the path for Unix sockets."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, bytes):  # abstract Unix address
        return "@" + address[1:].decode(errors="replace") if address[:1] == b"\0" else address.decode()
    return str(address) or "(unnamed)"


def printable(text: str) -> str:
    """Show untrusted text as text: control and format characters become visible escapes.

    Terminal escape sequences, carriage returns and newlines cannot move the cursor or
    start a line that passes for another, and bidi overrides cannot reorder it.
    Newline and tab become the two characters '\\n' and '\\t'.
    """
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif unicodedata.category(char)[0] == "C" or char in "\u2028\u2029":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def printable_bytes(data: bytes) -> str:
    return printable(data.decode("utf-8", errors="backslashreplace"))


def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.01) -> object:
    """Poll `condition` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s")
        time.sleep(interval)


def platform_name() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("win"):
        return "windows"
    return sys.platform


def run_instead(*learn_args: str) -> NoReturn:
    """Become `learn LEARN_ARGS` in this same process (exec): same output, same exit code.

    A sender's --demo is its receiver's demo: rather than import the receiver (which
    imports the sender), the sender hands its process over to `learn run RECEIVER --demo`.
    """
    package_root = str(Path(__file__).resolve().parent.parent)  # where this `lessons` was found
    search_path = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(search_path))
    argv = [sys.executable, "-m", "lessons", *learn_args]
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform == "win32":  # Windows has no exec: its os.execv starts a new process and returns at once
        import subprocess

        raise SystemExit(subprocess.call(argv, env=env))
    os.execve(sys.executable, argv, env)
