"""The worker pool: forked processes that each drive a share of the members, steered over pipes.

The generator must not be what limits the measurement, so the members are spread over
several worker processes, round robin. The parent speaks to each worker over its own
pipe: it tells them all the next phase (`tell`) and waits until each has answered
(`collect`); a worker that fails says so in one line instead of dying silently.
"""

from __future__ import annotations

import resource
import signal
import time
from multiprocessing.connection import Connection
from typing import Callable
from lessons.toolkit.i18n import _


def own_cpu_seconds() -> float:
    """The CPU this process has used (user + system), as a worker reports it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_in_worker(control: Connection, work: Callable[[], None]) -> None:
    """The body of one forked worker: any failure becomes one line for the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        work()
    except Exception as err:  # the parent prints it as one sentence
        tell_parent_failed(control, err)
    finally:
        control.close()


def tell_parent_failed(control: Connection, err: Exception) -> None:
    try:
        control.send(("error", f"{type(err).__name__}: {err}"))
    except OSError:
        pass  # the parent is gone: nobody to tell



class Workers:
    """Forked worker processes, each given a share of the members, and a pipe to each one."""

    def __init__(self, members: int, count: int, body: Callable[[Connection, list[int]], None]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        count = min(count, members)
        self.pipes: list[Connection] = []
        self.processes = []
        for number in range(count):
            ours, theirs = context.Pipe()
            indexes = list(range(number, members, count))  # round robin: senders spread out
            process = context.Process(target=body, args=(theirs, indexes), daemon=True)
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    def tell(self, command: str) -> None:
        for pipe in self.pipes:
            try:
                pipe.send((command, None))
            except OSError:
                pass  # that worker already ended; its error was reported

    def collect(self, wanted: str, deadline: float, on_progress: Callable[[int], None] | None = None) -> list:
        """Wait until every worker has said `wanted` (or failed); returns their payloads."""
        from multiprocessing.connection import wait

        answers: dict[int, object] = {}
        progress = [0] * len(self.pipes)
        while len(answers) < len(self.pipes):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(_("the workers did not finish {wanted!r} in time").format(wanted=wanted))
            for pipe in wait([p for i, p in enumerate(self.pipes) if i not in answers], timeout=min(left, 0.2)):
                number = self.pipes.index(pipe)
                try:
                    kind, payload = pipe.recv()
                except EOFError:
                    raise RuntimeError(_("a load worker died without a word")) from None
                if kind == "error":
                    raise RuntimeError(_("a load worker failed: {payload}").format(payload=payload))
                if kind == "progress":
                    progress[number] = payload
                    if on_progress:
                        on_progress(sum(progress))
                elif kind == wanted:
                    answers[number] = payload
        return [answers[number] for number in range(len(self.pipes))]

    def close(self) -> None:
        self.tell("close")
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
        for pipe in self.pipes:
            pipe.close()

