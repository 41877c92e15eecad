"""Where the chat's administrator socket lives when nobody says: one rule, for server and admin.

PROTOCOL.md: `--admin-socket PATH` wins; otherwise `$XDG_RUNTIME_DIR/learn-chat-<port>.sock`
when that variable is set and not empty (the per-user runtime directory a login session
provides), else `<tmp>/learn-<uid>/chat-<port>.sock` in our private 0700 directory; and
`PATH.admin` when the chat itself listens on the Unix socket PATH. The server and
`learn chat admin` both call `default_admin_socket`, so they cannot disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

from lessons.toolkit.common import DEFAULT_PORT
from lessons.toolkit.unixsock import private_dir


def default_admin_socket(port: int | None = None, unix_path: str | None = None) -> Path:
    """The admin socket of a chat on TCP `port` (default 8888), or on the Unix socket `unix_path`.

    The private directory is made (0700) when missing and refused when someone else could
    have planted it: a socket there could catch the administrator's commands.
    """
    if unix_path is not None:
        return Path(f"{unix_path}.admin")
    port = DEFAULT_PORT if port is None else port
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir:
        return Path(runtime_dir) / f"learn-chat-{port}.sock"
    return private_dir() / f"chat-{port}.sock"
