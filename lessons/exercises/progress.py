"""What `learn exercise check` shows while the checks run: which one, for how long.

On a terminal, one live line ("check 3 of 9: Echoes what one client sends, 2.1 s")
that is replaced as checks start and end and disappears before the report; a check
stopped at its time limit also leaves a line of its own, so a slow failure is never
silent. Piped, plain lines instead: one when a check starts, one when it ends.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from lessons.toolkit.i18n import _


class CheckProgress:
    """Fed the plugin's records (runner.run_check's `progress`); a context manager around the run."""

    def __init__(self, console: Console, plain: bool) -> None:
        self.console, self.plain = console, plain
        self.total = 0
        self.number = 0
        self.title = ""
        self.outcome = ""
        self.started = time.monotonic()
        self.live: Live | None = None

    def __enter__(self) -> "CheckProgress":
        if not self.plain:
            self.live = Live(self, console=self.console, transient=True, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None

    def __rich__(self) -> Text:
        """The live line, drawn afresh at each refresh so that the seconds count up."""
        if not self.title:
            return Text(_("starting the checks ..."), style="dim")
        return Text(_("check {number} of {total}: {title}, {seconds:.1f} s").format(
            number=self.number, total=self.total or "?", title=self.title,
            seconds=time.monotonic() - self.started), style="dim", overflow="ellipsis", no_wrap=True)

    def __call__(self, record: dict) -> None:
        event = record.get("event")
        if event == "collected":
            self.total = record["count"]
        elif event == "start":
            self.number += 1
            self.title, self.started, self.outcome = record["title"], time.monotonic(), ""
            if self.plain:
                self.say(_("  [{number}/{total}] {title} ...").format(
                    number=self.number, total=self.total or "?", title=self.title))
        elif event == "result":
            if record.get("timed_out"):  # never silent: the reason now, not only in the report
                self.say(_("  check {title!r} took longer than {limit} s: {reason}").format(
                    title=record["title"], limit=f"{record.get('limit', 0):g}", reason=record.get("reason", "")))
            if self.outcome != "failed":  # setup, call, teardown: the first failure decides
                self.outcome = record["outcome"]
        elif event == "finish" and self.plain:
            word = {"passed": _("PASS"), "failed": _("FAIL"), "skipped": _("SKIP")}.get(self.outcome, "?")
            self.say(_("  [{number}/{total}] {word} {title} ({seconds:.1f} s)").format(
                number=self.number, total=self.total or "?", word=word, title=self.title,
                seconds=time.monotonic() - self.started))

    def say(self, line: str) -> None:
        self.console.print(escape(line), highlight=False)
