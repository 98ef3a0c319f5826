"""Text that originates in a submission, made safe to print or to write: the one sanitiser.

A submission controls its exception messages, its tracebacks, what it prints and its `submission.toml`. None of
that may move the terminal's cursor, reorder what is shown, or start a line of its own (a fake harness line, or a
`::` workflow command on CI). So every character in

- C0 and C1 controls (U+0000–001F, U+0080–009F, e.g. ESC and CSI U+009B) and DEL (U+007F),
- format characters (Unicode category Cf: bidi overrides U+202A–202E and isolates U+2066–2069, zero-width
  characters U+200B–200F, U+FEFF, ...), surrogates (Cs),
- line and paragraph separators (U+2028, U+2029; NEL U+0085 is C1)

is replaced by `REPLACEMENT`, and text printed on several lines gets `PREFIX` at the start of every line
(`prefixed`): a submission's line never starts a line of the output.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "?"
PREFIX = "[submission] "
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ASCII_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _non_ascii(match: re.Match[str]) -> str:
    char = match.group()
    return REPLACEMENT if unicodedata.category(char) in UNSAFE_CATEGORIES else char


def is_safe(text: str, keep_newlines: bool = False) -> bool:
    """Whether `one_line(text)` (or, keep_newlines, `safe_lines`) would leave `text` as it is."""
    return (safe_lines(text) if keep_newlines else one_line(text)) == text


def one_line(text: str, limit: int | None = None) -> str:
    """`text` (its first `limit` characters) on one line, every unsafe character (newlines too) replaced."""
    text = text if limit is None else text[:limit]
    return _NON_ASCII.sub(_non_ascii, _ASCII_UNSAFE.sub(REPLACEMENT, text))


def safe_lines(text: str, limit: int | None = None) -> str:
    """`text` (its first `limit` characters) split at '\\n' only, each line made `one_line`, joined by '\\n'."""
    text = text if limit is None else text[:limit]
    return "\n".join(one_line(line.removesuffix("\r")) for line in text.split("\n"))


def prefixed(text: str, prefix: str = PREFIX) -> str:
    """`safe_lines(text)` with `prefix` at the start of every line (no trailing newline)."""
    return "\n".join(prefix + line for line in safe_lines(text.rstrip("\n")).split("\n"))
