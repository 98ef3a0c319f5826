"""Axes, colour bars and scatter plots drawn with Pillow (no plotting library), for `inspect` and `diagnose`.

Pillow's built-in font has no glyphs for "−" or "×": text drawn here is plain ASCII.

A map panel shows an array `# [rows, cols]` (or an image `# [H, W]`) enlarged to `# [Hd, Wd]` display pixels, with
the array's own indices on its axes: row k is ticked at display y = (k + ½) · Hd / rows, column k at
x = (k + ½) · Wd / cols, so a tick reads as the index into the array saved beside the PNG (`.npz`). A colour bar
beside it maps colour back to value: its top is `hi`, its bottom `lo`, linearly, with ticks at round values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLACK, GREY, LIGHT = (0, 0, 0), (120, 120, 120), (225, 225, 225)
BAR_W = 12  # colour bar width, display px


def font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font (scalable where FreeType is present, else its bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


FONT = font()


def text_size(text: str) -> tuple[int, int]:
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=FONT)
    return int(right - left), int(bottom - top)


def draw_text(canvas: Image.Image, xy: tuple[float, float], text: str, anchor: str = "la", vertical: bool = False) -> None:
    """Text at `xy` (Pillow anchors: l/m/r × t/m/b for horizontal text); `vertical`: rotated 90° (reads upwards),
    centred on `xy`."""
    if not vertical:
        ImageDraw.Draw(canvas).text(xy, text, fill=BLACK, font=FONT, anchor=anchor)
        return
    w, h = text_size(text)
    strip = Image.new("RGB", (w + 2, h + 6), "white")
    ImageDraw.Draw(strip).text((1, 1), text, fill=BLACK, font=FONT)
    strip = strip.rotate(90, expand=True)
    canvas.paste(strip, (int(xy[0] - strip.width / 2), int(xy[1] - strip.height / 2)))


def heat_rgb(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A non-negative map `# [h, w]` → RGB uint8 `# [h, w, 3]`: t = clip(v / vmax, 0, 1) on black→red→yellow→white."""
    v = np.asarray(values, dtype=np.float64)
    vmax = float(np.max(v)) if vmax is None else vmax
    t = np.clip(v / vmax, 0, 1) if vmax > 0 else np.zeros_like(v)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    return (255 * rgb).round().astype(np.uint8)


def signed_rgb(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A signed map `# [h, w]` → RGB uint8: t = clip(v / m, −1, 1), m = `vmax` (default max|v|); negative blue, 0 white,
    positive red."""
    v = np.asarray(values, dtype=np.float64)
    m = (float(np.max(np.abs(v))) if v.size else 0.0) if vmax is None else vmax
    t = np.clip(v / m, -1, 1) if m > 0 else np.zeros_like(v)
    r = np.where(t < 0, 1 + t, 1.0)
    b = np.where(t > 0, 1 - t, 1.0)
    g = 1 - np.abs(t)
    return (255 * np.stack([r, g, b], axis=-1)).round().astype(np.uint8)


def nice_step(span: float, n: int) -> float:
    """The smallest of 1, 2, 5 × 10^k that cuts `span` into at most about `n` steps."""
    raw = span / max(n, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))


def value_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round values in [lo, hi], about `n` of them."""
    if not hi > lo:
        return [lo]
    step = nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + k * step, 12) for k in range(count)]


def index_ticks(count: int, n: int = 8) -> list[int]:
    """Array indices 0, s, 2s, … below `count`, with s from 1, 2, 5, 10, … (at most about `n` ticks)."""
    step = max(1, int(nice_step(count, n)))
    return list(range(0, count, step))


def fmt(value: float) -> str:
    return f"{value:.3g}" if value != 0 else "0"


@dataclass
class ColourBar:
    """A colour ramp `# [m, 3]` uint8 from `lo` (first) to `hi` (last), and what the values are (`label`)."""

    colours: np.ndarray
    lo: float
    hi: float
    label: str

    def width(self) -> int:
        """Display width of the bar with its tick labels and rotated label."""
        labels = max(text_size(fmt(v))[0] for v in value_ticks(self.lo, self.hi)) if self.hi > self.lo else 10
        return 8 + BAR_W + 4 + labels + 6 + text_size("Ag")[1] + 6


def draw_bar(canvas: Image.Image, bar: ColourBar, x: int, y: int, height: int) -> None:
    """The bar at (x + 8, y), `height` px high, `hi` at the top, with ticks and the rotated label to its right."""
    draw = ImageDraw.Draw(canvas)
    x0 = x + 8
    m = len(bar.colours)
    for k in range(height):
        t = (height - 1 - k) / max(height - 1, 1)  # 1 at the top
        colour = tuple(int(c) for c in bar.colours[int(round(t * (m - 1)))])
        draw.line([x0, y + k, x0 + BAR_W - 1, y + k], fill=colour)
    draw.rectangle([x0 - 1, y - 1, x0 + BAR_W, y + height], outline=GREY)
    widest = 0
    if bar.hi > bar.lo:
        for v in value_ticks(bar.lo, bar.hi):
            ty = y + (bar.hi - v) / (bar.hi - bar.lo) * (height - 1)
            draw.line([x0 + BAR_W, ty, x0 + BAR_W + 3, ty], fill=BLACK)
            draw_text(canvas, (x0 + BAR_W + 5, ty), fmt(v), anchor="lm")
            widest = max(widest, text_size(fmt(v))[0])
    draw_text(canvas, (x0 + BAR_W + 5 + widest + 6 + text_size("Ag")[1] / 2 + 2, y + height / 2), bar.label, vertical=True)


def heat_bar(vmax: float, label: str) -> ColourBar:
    """The heat ramp (`heat_rgb`) from 0 to `vmax`."""
    hi = vmax if vmax > 0 else 1.0
    return ColourBar(heat_rgb(np.linspace(0, hi, 256)[None], hi)[0], 0.0, hi, label)


def signed_bar(vmax_abs: float, label: str) -> ColourBar:
    """The signed ramp (`signed_rgb`) from −m to m, m = `vmax_abs`."""
    m = vmax_abs if vmax_abs > 0 else 1.0
    return ColourBar(signed_rgb(np.linspace(-m, m, 256)[None])[0], -m, m, label)


def grey_bar(label: str = "pixel value") -> ColourBar:
    """Grey levels 0 (black) to 255 (white), as images are shown."""
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return ColourBar(ramp, 0.0, 255.0, label)


def overlay_bar(vmax: float, label: str) -> ColourBar:
    """The overlay's colour (`figures.overlay`) over a black pixel, from 0 to `vmax`: 0.8 t · (255, 255 t, 0)."""
    t = np.linspace(0, 1, 256)
    ramp = 0.8 * t[:, None] * np.stack([np.full_like(t, 255.0), 255.0 * t, np.zeros_like(t)], axis=1)
    return ColourBar(ramp.round().astype(np.uint8), 0.0, vmax if vmax > 0 else 1.0, label)


@dataclass
class Panel:
    """One map: display RGB `# [Hd, Wd, 3]` showing an array of `rows` × `cols` cells, a title and an optional bar.
    `row_names`/`col_names`: a label for every row/column (characters of a text), drawn at each cell instead of the
    round indices."""

    rgb: np.ndarray
    rows: int
    cols: int
    title: str = ""
    bar: ColourBar | None = None
    row_label: str = "row"
    col_label: str = "column"
    row_names: Sequence[str] | None = None
    col_names: Sequence[str] | None = None


LEFT, TOP, BOTTOM, GAP = 44, 20, 36, 14  # margins around each map, display px


def panel_size(p: Panel) -> tuple[int, int]:
    h, w = p.rgb.shape[:2]
    right = p.bar.width() if p.bar is not None else 6
    return max(LEFT + w + right, LEFT + text_size(p.title)[0] + 4), TOP + h + BOTTOM


def draw_panel(canvas: Image.Image, p: Panel, x: int, y: int) -> None:
    """`p` with its top-left corner at (x, y): title, map, row ticks on the left, column ticks below, bar right."""
    draw = ImageDraw.Draw(canvas)
    h, w = p.rgb.shape[:2]
    x0, y0 = x + LEFT, y + TOP
    canvas.paste(Image.fromarray(np.ascontiguousarray(p.rgb)), (x0, y0))
    draw.rectangle([x0 - 1, y0 - 1, x0 + w, y0 + h], outline=GREY)
    if p.title:
        draw_text(canvas, (x0, y + 3), p.title)
    rows = range(p.rows) if p.row_names is not None else index_ticks(p.rows)
    cols = range(p.cols) if p.col_names is not None else index_ticks(p.cols)
    for k in rows:
        ty = y0 + (k + 0.5) * h / p.rows
        draw.line([x0 - 5, ty, x0 - 2, ty], fill=BLACK)
        draw_text(canvas, (x0 - 7, ty), str(k) if p.row_names is None else p.row_names[k], anchor="rm")
    for k in cols:
        tx = x0 + (k + 0.5) * w / p.cols
        draw.line([tx, y0 + h + 1, tx, y0 + h + 4], fill=BLACK)
        draw_text(canvas, (tx, y0 + h + 6), str(k) if p.col_names is None else p.col_names[k], anchor="mt")
    draw_text(canvas, (x0 + w / 2, y0 + h + 22), p.col_label, anchor="mt")
    draw_text(canvas, (x + 8, y0 + h / 2), p.row_label, vertical=True)
    if p.bar is not None:
        draw_bar(canvas, p.bar, x0 + w, y0, h)


def figure(panels: Sequence[Panel]) -> Image.Image:
    """Panels side by side on a white canvas."""
    sizes = [panel_size(p) for p in panels]
    canvas = Image.new("RGB", (sum(s[0] for s in sizes) + GAP * (len(panels) - 1) + 4, max(s[1] for s in sizes) + 4),
                       "white")
    x = 2
    for p, (w, _) in zip(panels, sizes):
        draw_panel(canvas, p, x, 2)
        x += w + GAP
    return canvas


def with_bar(image: Image.Image, bar: ColourBar, height: int | None = None, pad: int = 4) -> Image.Image:
    """`image` (e.g. a grid of overlays) with a colour bar to its right, `height` px high (default: the image's,
    at most 240), top-aligned."""
    height = min(image.height - 2 * pad, 240) if height is None else height
    canvas = Image.new("RGB", (image.width + bar.width() + 4, max(image.height, height + 2 * pad)), "white")
    canvas.paste(image, (0, 0))
    draw_bar(canvas, bar, image.width - 4, pad, height)
    return canvas


def scatter(x: np.ndarray, y: np.ndarray, lo: float, hi: float, *, size: int = 300, label_x: str = "",
            label_y: str = "") -> Image.Image:
    """Points (x, y) on equal axes [lo, hi] × [lo, hi], `size` px square, with the identity line (grey), light
    grid lines at the ticks, ticked and labelled axes."""
    left, bottom, top, right = 58, 40, 10, 16
    canvas = Image.new("RGB", (left + size + right, top + size + bottom), "white")
    draw = ImageDraw.Draw(canvas)
    span = hi - lo

    def px(v: np.ndarray | float) -> np.ndarray | float:
        return (v - lo) / span * (size - 1)

    x0, y1 = left, top + size - 1  # the plot's left and bottom edges
    for v in value_ticks(lo, hi):
        p = px(v)
        draw.line([x0 + p, top, x0 + p, y1], fill=LIGHT)
        draw.line([x0, y1 - p, x0 + size - 1, y1 - p], fill=LIGHT)
        draw.line([x0 + p, y1 + 1, x0 + p, y1 + 4], fill=BLACK)
        draw.line([x0 - 4, y1 - p, x0 - 1, y1 - p], fill=BLACK)
        draw_text(canvas, (x0 + p, y1 + 6), fmt(v), anchor="mt")
        draw_text(canvas, (x0 - 6, y1 - p), fmt(v), anchor="rm")
    draw.line([x0, y1, x0 + size - 1, top], fill=(190, 190, 190))
    for a, b in zip(px(np.asarray(x)), px(np.asarray(y))):
        draw.point((float(x0 + a), float(y1 - b)), fill=(30, 80, 200))
    draw.rectangle([x0 - 1, top - 1, x0 + size, y1 + 1], outline=GREY)
    draw_text(canvas, (x0 + size / 2, y1 + 22), label_x, anchor="mt")
    draw_text(canvas, (12, top + size / 2), label_y, vertical=True)
    return canvas


BAR, BAR_HIGHLIGHT = (30, 80, 200), (200, 40, 40)


def bars(values: np.ndarray, *, first: int = 0, highlight: int | None = None, width: int = 340, height: int = 160,
         label_x: str = "", label_y: str = "") -> Image.Image:
    """A bar chart of `values # [m]` (non-negative) at x = first, first + 1, …: bar k spans display columns
    [k · c, (k + 1) · c − 1] of the plot, c = width // m, and rises from 0 to v_k on a y axis [0, max v] (ticked,
    as are the x values below); a bar under half a display pixel is not drawn. The bar at x = `highlight` is red,
    the others blue."""
    v = np.asarray(values, dtype=np.float64).ravel()
    m = max(len(v), 1)
    cell = max(width // m, 1)
    size_x = cell * m
    left, bottom, top, right = 58, 40, 10, 16
    canvas = Image.new("RGB", (left + size_x + right, top + height + bottom), "white")
    draw = ImageDraw.Draw(canvas)
    hi = float(v.max()) if len(v) and v.max() > 0 else 1.0
    x0, y1 = left, top + height - 1  # the plot's left and bottom edges
    for tick in value_ticks(0.0, hi):
        py = y1 - tick / hi * (height - 1)
        draw.line([x0, py, x0 + size_x - 1, py], fill=LIGHT)
        draw.line([x0 - 4, py, x0 - 1, py], fill=BLACK)
        draw_text(canvas, (x0 - 6, py), fmt(tick), anchor="rm")
    for k, value in enumerate(v):
        if value / hi * (height - 1) >= 0.5:  # at least half a display pixel high
            colour = BAR_HIGHLIGHT if highlight is not None and k + first == highlight else BAR
            draw.rectangle([x0 + k * cell, y1 - value / hi * (height - 1), x0 + (k + 1) * cell - 1 - (cell > 2), y1],
                           fill=colour)
    for x in (x for x in index_ticks(first + m) if x >= first):  # round values of x
        tx = x0 + (x - first + 0.5) * cell
        draw.line([tx, y1 + 1, tx, y1 + 4], fill=BLACK)
        draw_text(canvas, (tx, y1 + 6), str(x), anchor="mt")
    draw.rectangle([x0 - 1, top - 1, x0 + size_x, y1 + 1], outline=GREY)
    draw_text(canvas, (x0 + size_x / 2, y1 + 22), label_x, anchor="mt")
    draw_text(canvas, (12, top + height / 2), label_y, vertical=True)
    return canvas
