"""Checks for poll-echo: your serve(listener, stop), run in a thread, against real clients.

The listener is bound to 127.0.0.1 port 0 (a free port the kernel picks), so checks
never collide. The tests themselves are shared with the other echo-server exercises:
see lessons/exercises/echo_battery.py.
"""

from __future__ import annotations

from types import ModuleType
from typing import Iterator

import pytest

from lessons.exercises.echo_battery import *  # noqa: F401,F403 - the shared echo-server checks
from lessons.exercises.echo_battery import EchoServer, serving_on_loopback


@pytest.fixture
def server(learner: ModuleType) -> Iterator[EchoServer]:
    with serving_on_loopback(learner.serve) as running:
        yield running
