"""Unix domain socket files done safely; shared by the unix lessons and the chat's admin socket.

The notes bind `./sock` in the current directory and crash when the file is left over
from an earlier run. Here:
- the default place is a private per-user directory (0700, refused if someone else
  could have planted it);
- a leftover ("stale") file nobody listens on is removed, a live one is never stolen;
- the file is created with mode 0600 (umask set around bind, so there is no window);
- the peer's pid/uid/gid come from SO_PEERCRED (Linux).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lessons.toolkit.common import UserError
from lessons.toolkit.i18n import _

# sizeof(sun_path) is 108 on Linux, including the final NUL.
MAX_PATH_BYTES = 107
# struct ucred { pid_t pid; uid_t uid; gid_t gid; }: pid_t is signed, uid_t and gid_t are
# unsigned ("3i" would turn a uid of 3,000,000,000 into a negative number).
PEERCRED = struct.Struct("iII")


def private_dir() -> Path:
    """`<tmp>/learn-<uid>`, created 0700; refused unless it is ours and closed to others."""
    path = Path(tempfile.gettempdir()) / f"learn-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise UserError(
            _("{path} exists but is not a private directory of yours (it must be a directory you "
              "own with mode 0700); another user may have planted it, so it is not used.").format(path=path)
        )
    return path


def check_path_length(path: str | Path) -> None:
    if len(os.fsencode(str(path))) > MAX_PATH_BYTES:
        raise UserError(
            _("the socket path {path!r} is {size} bytes; Unix socket paths are limited to "
              "{most}, choose a shorter one.").format(path=str(path), size=len(os.fsencode(str(path))), most=MAX_PATH_BYTES)
        )


def is_live(path: str | Path) -> bool:
    """True if something accepts connections on the socket file at `path`.

    Refused (or gone) means stale. A full accept queue makes a blocking connect wait,
    so the probe has a timeout, and "would block" counts as live.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (BlockingIOError, TimeoutError):
        return True
    finally:
        probe.close()


def clear_stale(path: Path) -> bool:
    """Remove a leftover socket file nobody listens on. Returns True if one was removed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISSOCK(info.st_mode):
        raise UserError(_("{path} exists and is not a socket file; it is not removed, choose "
                          "another path.").format(path=path))
    try:
        live = is_live(path)
    except PermissionError:
        raise UserError(_("not allowed to connect to {path}, so it cannot be checked or replaced; "
                          "choose another path.").format(path=path)) from None
    if live:
        raise UserError(_("another server is already listening on {path}; stop it or choose "
                          "another path.").format(path=path))
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        raise UserError(_("{path} is a stale socket file but not yours to remove; choose another "
                          "path.").format(path=path)) from None
    return True


def bind_unix(path: str | Path, *, mode: int = 0o600, backlog: int = 128) -> socket.socket:
    """Listen on a socket file with `mode`, replacing a stale file, refusing a live one."""
    path = Path(path)
    check_path_length(path)
    clear_stale(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        server.bind(str(path))
    except FileNotFoundError:
        server.close()
        raise UserError(_("the directory of {path} does not exist.").format(path=path)) from None
    except OSError as err:
        server.close()
        if err.errno in (errno.EACCES, errno.EPERM):
            raise UserError(_("not allowed to create {path}.").format(path=path)) from None
        if err.errno == errno.EADDRINUSE:  # another server bound it since clear_stale looked
            raise UserError(_("another server is already listening on {path}; stop it or choose "
                              "another path.").format(path=path)) from None
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    server.listen(backlog)
    return server


def bind_abstract(name: str, backlog: int = 128) -> socket.socket:
    """Listen in Linux's abstract namespace: no file at all, gone when the socket closes."""
    address = b"\0" + name.encode()
    if len(address) > MAX_PATH_BYTES + 1:
        raise UserError(_("the abstract name {name!r} is too long; keep it to {most} "
                          "bytes or fewer.").format(name=name, most=MAX_PATH_BYTES))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(address)
    except OSError as err:
        server.close()
        if err.errno == errno.EADDRINUSE:
            raise UserError(_("the abstract name @{name} is already in use.").format(name=name)) from None
        raise
    server.listen(backlog)
    return server


def file_identity(path: str | Path) -> tuple[int, int, int]:
    """Device, inode and change time: inode numbers alone are reused as soon as a file is deleted."""
    info = os.lstat(path)
    return info.st_dev, info.st_ino, info.st_ctime_ns


def remove_socket_file(path: str | Path, identity: tuple[int, int, int] | None = None) -> bool:
    """Remove the socket file at `path`; with `identity`, only if it is still that file.

    A server passes the identity of the file it created, so it never deletes a newer
    server's file that replaced its own after someone removed it. True if it was removed.
    """
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode) and identity in (None, file_identity(path)):
            os.unlink(path)
            return True
    except FileNotFoundError:
        pass
    return False


@dataclass(frozen=True)
class SocketFile:
    """A socket file this process created, and how to recognise it later.

    The identity is read right after bind: when the server stops, it removes the file
    only if the path still names that very file. Someone may have deleted it meanwhile
    and a newer server bound the same path: that file is not ours to remove.
    """

    path: Path
    identity: tuple[int, int, int]

    @classmethod
    def created_at(cls, path: str | Path) -> SocketFile:
        return cls(Path(path), file_identity(path))

    def remove(self) -> bool:
        """Remove the file if it is still ours; a missing or newer file is left alone."""
        return remove_socket_file(self.path, self.identity)


def bind_socket_file(path: str | Path, *, mode: int = 0o600, backlog: int = 128) -> tuple[socket.socket, SocketFile]:
    """`bind_unix`, plus the identity of the file it created (recorded after its chmod)."""
    server = bind_unix(path, mode=mode, backlog=backlog)
    try:
        return server, SocketFile.created_at(path)
    except OSError:
        server.close()
        raise


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (Linux SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
    pid, uid, gid = PEERCRED.unpack(raw)
    return pid, uid, gid
