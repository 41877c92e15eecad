"""docs/ must ship inside the package: `learn show` works from a built wheel, not only a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(180)
def test_show_works_from_a_built_wheel(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=170,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(tmp_path.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "lessons/_docs/lessons/poll-server.md" in names
        assert "capstone/room.py" in names
        assert "lessons/exercises/poll_echo/hints.md" in names  # exercise data files ship too
        archive.extractall(tmp_path / "site")
    # Run from an empty directory with only the unpacked wheel on the path: no checkout to fall back on.
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    shown = subprocess.run(
        [sys.executable, "-m", "lessons", "show", "poll-server"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert shown.returncode == 0, shown.stderr
    page_title = (ROOT / "docs/lessons/poll-server.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
    assert page_title.split()[0] in shown.stdout
    located = subprocess.run(
        [sys.executable, "-c", "from lessons import catalog; print(catalog.docs_root())"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )
    assert located.stdout.strip() == str(tmp_path / "site" / "lessons" / "_docs")
