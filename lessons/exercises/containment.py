"""Every process one check run started, found and killed, even those that ran away.

The sandbox is a child subreaper and sweeps its own descendants; but a learner's code
can kill the sandbox itself, and then its orphans go to init, out of its reach. So the
runner (the `learn` process) keeps its own hold on the run:

- a cgroup v2 of its own, where the machine lets us make one (usually root, or a
  delegated systemd scope): the sandbox moves itself in first thing, every process it
  starts is born inside, and none can leave; `cgroup.kill` ends them all at once;
- and always a scan of /proc for the run's marker (the only hold where no cgroup can
  be made): every process of the run inherits the environment variable that names the
  run's private directory (and, for those that cleared their environment, the
  sandbox's session).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lessons.toolkit import procfs

NO_CGROUP_VARIABLE = "LEARN_NO_CGROUP"  # set to 1 to use the /proc scan (tests of the fallback)
POLL_SECONDS = 0.02


class Containment:
    """One check run's processes: `marker` is a NAME=value string in each one's environment."""

    def __init__(self, marker: str, label: str) -> None:
        self.marker = marker.encode() + b"\0"  # entries end with NUL: no match on a longer value
        self.cgroup = make_cgroup(label)
        self.session: int | None = None  # the sandbox's session, once it is started

    @property
    def how(self) -> str:
        return "cgroup" if self.cgroup else "scan"

    def members(self) -> list[int]:
        """Pids of the run's live processes (zombies are dead already: their parent reaps them)."""
        pids = {pid for pid in procfs.all_pids() if self._marked(pid)}  # also with a cgroup: the
        if self.cgroup is not None:  # sandbox may have failed to enter it (a cgroup we may not use)
            pids.update(_read_pids(self.cgroup / "cgroup.procs"))
        return sorted(pid for pid in pids if pid != os.getpid() and procfs.state(pid) not in (None, "Z", "X"))

    def _marked(self, pid: int) -> bool:
        try:
            if self.marker in Path(f"/proc/{pid}/environ").read_bytes():
                return True
        except OSError:  # gone, or not ours to read: then not ours to kill either
            return False
        info = procfs.read_stat(pid)
        return info is not None and self.session is not None and info.session == self.session

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every member until none is left (a fork bomb keeps making more); the pids killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = self.members()
            if not alive:
                break
            if self.cgroup is not None:
                _write(self.cgroup / "cgroup.kill", "1")  # all at once, forks in flight included
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(POLL_SECONDS)
        return sorted(killed)

    def close(self) -> None:
        """Remove the cgroup (possible once it is empty: after kill_all)."""
        if self.cgroup is None:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self.cgroup.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY: the last members are still being torn down
                time.sleep(POLL_SECONDS)


def make_cgroup(label: str) -> Path | None:
    """A new cgroup v2 directory beside ours, or None where the machine does not allow one."""
    if os.environ.get(NO_CGROUP_VARIABLE) == "1":
        return None
    base = own_cgroup_v2()
    if base is None:
        return None
    path = base / label
    try:
        path.mkdir()
    except OSError:
        return None
    if not (path / "cgroup.procs").exists():
        path.rmdir()
        return None
    return path


def join(cgroup: str | None) -> bool:
    """Called by the sandbox about itself: move into the run's cgroup before starting anything."""
    return bool(cgroup) and _write(Path(cgroup) / "cgroup.procs", str(os.getpid()))


def own_cgroup_v2() -> Path | None:
    """The directory of this process's cgroup in the v2 hierarchy, if one is mounted."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    if relative is None:
        return None
    path = mount / relative.lstrip("/")
    return path if path.is_dir() else None


def cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        before, _, after = line.partition(" - ")
        if after.split(" ")[0] == "cgroup2":
            return Path(before.split(" ")[4])
    return None


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False
