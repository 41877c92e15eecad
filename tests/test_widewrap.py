"""Rich breaks Chinese lines between characters, and English exactly as it did."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich import _wrap
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from lessons.toolkit import widewrap

PARAGRAPH = ("os.fork() 把正在运行的进程（process）复制一份。调用之后就有了两个进程，从同一个位置开始执行同样的代码；"
             "一开始，唯一能把它们区分开的，是 fork() 返回的值。")


def wrapped(text: str, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(Text(text))
    return out.getvalue().splitlines()


def test_chinese_lines_are_filled_and_no_line_starts_with_closing_punctuation() -> None:
    widewrap.allow_breaks_between_wide_characters()
    lines = wrapped(PARAGRAPH, 40)
    assert "".join(line.replace(" ", "") for line in lines) == PARAGRAPH.replace(" ", "")
    for line in lines[:-1]:
        assert cell_len(line.rstrip()) >= 36, lines  # filled up to the edge, not ragged
    assert not any(line[0] in widewrap.CLOSING for line in lines), lines
    assert not any(line.rstrip()[-1] in widewrap.OPENING for line in lines), lines


def test_the_splitter_covers_every_character_without_gaps() -> None:
    pieces = list(widewrap.words(PARAGRAPH))
    assert "".join(word for _, _, word in pieces) == PARAGRAPH
    assert all(end == next_start for (_, end, _), (next_start, _, _) in zip(pieces, pieces[1:]))


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=80))
def test_text_without_wide_characters_splits_exactly_as_rich_does(text: str) -> None:
    original = list(_wrap.re_word.finditer(text))
    assert [word for _, _, word in widewrap.words(text)] == [match.group(0) for match in original]
