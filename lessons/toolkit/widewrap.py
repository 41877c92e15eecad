"""Line breaks between Chinese characters in everything Rich wraps.

Rich wraps at spaces only: a Chinese paragraph has none, so Rich keeps a whole clause
together and moves it to the next line, leaving a short ragged line before it, and a
comma can start a line. Chinese text may break between any two characters, except that
closing punctuation (，。）) stays with the character before it and opening punctuation
（“ stays with the one after it. `allow_breaks_between_wide_characters()` teaches Rich's
word splitter exactly that; text without wide characters splits as before.
"""

from __future__ import annotations

import re
from typing import Iterable

CLOSING = "，。、；：？！）」』”’》〉】…"
OPENING = "（「『“‘《〈【"
WIDE = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"  # CJK, kana, hangul, full-width forms
CHARACTER = f"[{WIDE}](?<![{CLOSING}{OPENING}])"  # one wide character that is not punctuation
LATIN_RUN = f"(?:(?![{WIDE}{OPENING}])\\S)+"  # a run with no wide character: an English word, `os.fork()`
WORD = re.compile(f"\\s*(?:[{OPENING}]*(?:{CHARACTER}|{LATIN_RUN})[{CLOSING}]*|\\S)\\s*")


def words(text: str) -> Iterable[tuple[int, int, str]]:
    """Rich's `words`: (start, end, word with the spaces after it), now one per Chinese character."""
    position = 0
    match = WORD.match(text, position)
    while match is not None:
        start, end = match.span()
        yield start, end, match.group(0)
        match = WORD.match(text, end)


def allow_breaks_between_wide_characters() -> None:
    """Replace the splitter Rich's `divide_line` looks up; a Rich without it is left as it is."""
    try:
        from rich import _wrap
    except ImportError:  # pragma: no cover - a Rich that moved its private module
        return
    if hasattr(_wrap, "words") and hasattr(_wrap, "divide_line"):
        _wrap.words = words
