"""The coloured, narrated log every lesson prints through.

One place decides how a lesson talks: a tag (`accept`, `recv`, `poll`...) in a colour,
then the text. Text that came from a peer must go through `lessons.toolkit.common.printable`
first; `Narrator` escapes Rich markup itself so a peer cannot inject styles.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

TAG_STYLES = {
    "listen": "bold green",
    "accept": "green",
    "recv": "cyan",
    "send": "blue",
    "close": "yellow",
    "error": "bold red",
    "trace": "dim",
    "demo": "bold magenta",
    "client": "magenta",
    "summary": "bold",
}


class Narrator:
    """Prints `tag  text` lines; thread-safe so demo clients and server can share it."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "") -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        self.prefix = prefix
        self._lock = threading.Lock()

    def __call__(self, tag: str, text: str) -> None:
        from rich.markup import escape

        style = TAG_STYLES.get(tag, "")
        label = f"[{style}]{escape(tag):>7}[/]" if style else f"{escape(tag):>7}"
        with self._lock:
            if self.console.is_terminal:
                self.console.print(self._wrapped(f"{escape(self.prefix)}{label}", text), soft_wrap=False)
            else:  # a pipe or a file: one line per event, whole, for grep and for tests
                self.console.print(f"{escape(self.prefix)}{label}  {escape(text)}")

    def _wrapped(self, label: str, text: str) -> object:
        """On a terminal: the text wraps between words, indented under itself, never mid-word at the edge."""
        from rich.text import Text

        head = Text.from_markup(label + "  ")
        indent = head.cell_len
        lines = Text(text).wrap(self.console, max(20, self.console.width - indent))
        for line in lines:
            line.rstrip()
        body = Text("\n" + " " * indent).join(lines)
        return head + body

    def rule(self, title: str) -> None:
        from rich.markup import escape

        with self._lock:
            self.console.rule(f"[bold]{escape(title)}")
