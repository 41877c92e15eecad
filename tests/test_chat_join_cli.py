"""`learn chat join` follows the one client rule for hosts (lessons.toolkit.common.check_client_host)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_join_refuses_every_address_as_a_host(host: str) -> None:
    result = subprocess.run([sys.executable, "-m", "lessons", "chat", "join", "--name", "ann", "--host", host],
                            input="", capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"error: {host} means 'every address' to a server"), result.stderr
    assert "Traceback" not in result.stderr
