"""The one sanitiser for a submission's text (`benchmark/untrusted.py`) and the board's cells that use it."""

from __future__ import annotations

import pytest

from benchmark.analysis.figures import esc
from benchmark.board.leaderboard import md
from benchmark.untrusted import is_safe, one_line, prefixed, safe_lines

UNSAFE = ["\x00", "\x07", "\t", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u200b", "\u200e", "\u202a", "\u202e",
          "\u2066", "\u2069", "\ufeff", "\u2028", "\u2029", "\ud800"]


@pytest.mark.parametrize("char", UNSAFE)
def test_every_unsafe_character_is_replaced_everywhere(char):
    text = f"a{char}b"
    assert one_line(text) == safe_lines(text) == "a?b"
    assert char not in md(text) and char not in esc(text) and not is_safe(text)


def test_printable_text_is_left_as_it_is():
    text = "Ada Lovelace — α·β ≥ 1 中文 😀 'quoted' <b>"
    assert one_line(text) == text and is_safe(text)


def test_each_line_is_prefixed_so_none_starts_with_the_submissions_text():
    out = prefixed("Traceback\n::error::x\r\nlast\n")
    assert out.split("\n") == ["[submission] Traceback", "[submission] ::error::x", "[submission] last"]
    assert one_line("a\nb") == "a?b" and safe_lines("a\nb") == "a\nb"
