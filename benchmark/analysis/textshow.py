"""Characters for people, shared by the text kind's `inspect` and `diagnose` (`text`, `text_diagnosis`): each
character's label on a map's axis, runs of characters coloured by a value per character (HTML), and maps with the
characters on their axes.

Colours of a value v per character, on a scale m > 0 (light, so that the text stays legible):
- heat (non-negative values): t = clip(v / m, 0, 1), background (255, 255 − 90 t, 255 − 200 t) (white → orange);
- signed: t = clip(v / m, −1, 1), background (255, 255 − 170 t, 255 − 170 t) for t ≥ 0 (white → red) and
  (255 − 170 |t|, 255 − 170 |t|, 255) for t < 0 (white → blue).
A character marked as the one that fires is wrapped in `<mark>` (outlined, bold); no other `<mark>` is written.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.shakespeare import VOCAB
from . import figures, plots
from .figures import esc

#: How a character shows on a map's axis (one glyph the plots' font has: `/` for a newline, as verse is quoted,
#: and not one of the corpus's characters; `·` for a space) and in HTML (a newline also breaks the line where
#: `breaks`).
AXIS_NAMES = {"\n": "/", " ": "·"}
HTML_NAMES = {"\n": "↵", " ": "\u00a0"}
CELL_PX = 12  # display pixels per cell of a map with characters on its axes
TEXT_STYLE = "font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.6"
MARK_STYLE = "outline:2px solid #111;font-weight:bold;color:#000"


def axis_name(char_id: int) -> str:
    """A character's label on a map's axis: itself, or `/` for a newline and `·` for a space."""
    c = VOCAB[int(char_id)]
    return AXIS_NAMES.get(c, c)


def html_name(char_id: int) -> str:
    """A character as HTML text (escaped): itself, `↵` for a newline, a no-break space for a space."""
    c = VOCAB[int(char_id)]
    return esc(HTML_NAMES.get(c, c))


def background(value: float, scale: float, signed: bool) -> str:
    """The CSS colour of `value` on `scale` (module docstring; `scale` ≤ 0 or a NaN value: white)."""
    if not np.isfinite(value) or scale <= 0:
        return "rgb(255,255,255)"
    t = float(np.clip(value / scale, -1 if signed else 0, 1))
    if not signed:
        return f"rgb(255,{round(255 - 90 * t)},{round(255 - 200 * t)})"
    g = round(255 - 170 * abs(t))
    return f"rgb(255,{g},{g})" if t >= 0 else f"rgb({g},{g},255)"


def coloured_text(ids: Sequence[int], values: Sequence[float], scale: float, *, signed: bool = False,
                  mark: int | None = None, breaks: bool = False) -> str:
    """Characters `ids # [k]` as HTML spans, each with the background of its value `values # [k]` (NaN: white) and
    the value as its tooltip; character `mark` (an index into `ids`) in `<mark>`. `breaks`: a newline also breaks
    the line."""
    parts = []
    for k, (c, v) in enumerate(zip(ids, values)):
        tip = "" if not np.isfinite(v) else f' title="{float(v):.4g}"'
        style = f"background:{background(float(v), scale, signed)}"
        tag = "mark" if k == mark else "span"
        extra = f";{MARK_STYLE}" if k == mark else ""
        parts.append(f'<{tag} style="{style}{extra}"{tip}>{html_name(c)}</{tag}>')
        if breaks and VOCAB[int(c)] == "\n":
            parts.append("\n")
    return f'<span style="{TEXT_STYLE}">{"".join(parts)}</span>'


def char_map(values: np.ndarray, rows: Sequence[int], cols: Sequence[int], title: str, bar_label: str, *,
             row_label: str, col_label: str, signed: bool, vmax: float | None = None) -> plots.Panel:
    """A map `# [len(rows), len(cols)]` with character `rows[r]` on row r and `cols[c]` on column c, `CELL_PX` px a
    cell: the signed ramp or the heat ramp up to `vmax` (default the largest |value|); NaN cells grey."""
    keep = np.isfinite(values)
    v = np.where(keep, values, 0.0)
    m = float(np.abs(v).max()) if vmax is None else vmax
    rgb = plots.signed_rgb(v, m) if signed else plots.heat_rgb(v, m)
    bar = plots.signed_bar(m, bar_label) if signed else plots.heat_bar(m, bar_label)
    rgb[~keep] = (170, 170, 170)
    size = (len(rows) * CELL_PX, len(cols) * CELL_PX)
    return plots.Panel(figures.upsample(rgb, size), len(rows), len(cols), title, bar, row_label, col_label,
                       [axis_name(c) for c in rows], [axis_name(c) for c in cols])
