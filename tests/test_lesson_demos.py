"""A sender's --demo is its receiver's demo, run in the same process, from anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lessonrun import child_env

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("sender", "receiver_line"), [
    ("struct-send", "one recv() is not one record"),
    ("unix-send", "private directory, mode 0600"),
])
def test_a_senders_demo_is_the_receivers_demo(sender: str, receiver_line: str, tmp_path: Path) -> None:
    # from an empty directory, `lessons` found through sys.path only: the receiver must be found the same way
    start = f"import sys; sys.path.insert(0, {str(REPO)!r}); from lessons.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", start, "run", sender, "--demo"], cwd=tmp_path, env=child_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert receiver_line in result.stdout.splitlines()[-1]
