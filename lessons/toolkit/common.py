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

from lessons.toolkit.i18n import N_, _, current_language


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


# The system errors the lessons show, for a learner who reads another language than the
# system's: English shows the system's own words (strerror), which other programs print too.
SYSTEM_ERRORS = {
    errno.EAGAIN: N_("Resource temporarily unavailable"),
    errno.ECONNRESET: N_("Connection reset by peer"),
    errno.EPIPE: N_("Broken pipe"),
    errno.ECONNABORTED: N_("Software caused connection abort"),
    errno.ECONNREFUSED: N_("Connection refused"),
    errno.ETIMEDOUT: N_("Connection timed out"),
    errno.EHOSTUNREACH: N_("No route to host"),
    errno.ENETUNREACH: N_("Network is unreachable"),
}


def os_error_text(err: OSError) -> str:
    """Why a socket call failed, in the current language (the system's words in English)."""
    if current_language() != "en" and err.errno in SYSTEM_ERRORS:
        return _(SYSTEM_ERRORS[err.errno])
    return err.strerror or str(err)


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888  # as in the notes


def open_listener(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, backlog: int = 128,
                  option: str = "--port", reuse_port: bool = False) -> socket.socket:
    """Bind and listen with SO_REUSEADDR, turning the usual mistakes into one sentence
    (which names `option`, the command-line option that chose the port).

    `reuse_port`: SO_REUSEPORT, so that several processes can listen on one port and the
    kernel spreads the connections over them."""
    if not 0 <= port <= 65535:
        raise UserError(_("port {port} does not exist; ports go from 0 to 65535 (0 picks a free "
                          "one).").format(port=port))
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(_("cannot resolve host {host!r}: {reason}.").format(host=host, reason=err.strerror)) from None
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
                _("port {port} on {host} is already in use; stop the other server or pick another "
                  "port with {option} (0 picks a free one).").format(port=port, host=host, option=option)
            ) from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise UserError(
                _("not allowed to listen on port {port}; ports below 1024 need privileges, pick a "
                  "higher one with {option}.").format(port=port, option=option)
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise UserError(_("{host} is not an address of this machine.").format(host=host)) from None
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
            raise TimeoutError(_("gave up after {timeout} s").format(timeout=timeout))
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
