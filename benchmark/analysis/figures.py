"""Pictures and report folders for `inspect` and `diagnose`: PNGs (Pillow), a plain HTML page, atomic folders.

Images are shown as the eye sees them, by undoing each dataset's model-ready scaling
(`zoo.DatasetSpec`: pixels = x · pixel_scale + pixel_offset):
- digits: x = pixels / 16, so pixels = 255 · x;
- MNIST: x = (p / 255 − 0.1307) / 0.3081, so p = 255 · (0.3081 · x + 0.1307);
- ImageNet (InceptionV1): x = RGB − 117, so RGB = x + 117.
Heat maps use one fixed colour ramp (black → red → yellow → white) scaled to the map's own maximum, and
signed maps a blue–white–red ramp scaled to the largest |value|.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..errors import UserError
from ..zoo import dataset_spec

#: A marker file in every folder `inspect`, `diagnose` or `leaderboard --html` writes: only such a folder (or an
#: empty one) is ever replaced, so `--out ~` can never delete a user's files.
MARKER = ".replacebench-output"

def to_pixels(images: np.ndarray, dataset: str) -> np.ndarray:
    """Model-ready images `# [n, C, H, W]` → displayable uint8 RGB `# [n, H, W, 3]`: clip(x · scale + offset, 0, 255)."""
    spec = dataset_spec(dataset)
    pixels = np.clip(np.asarray(images, dtype=np.float64) * spec.pixel_scale + spec.pixel_offset, 0, 255)
    pixels = pixels.transpose(0, 2, 3, 1)  # [n, H, W, C]
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels.round().astype(np.uint8)


def heat_rgb(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """A non-negative map `# [h, w]` → RGB uint8 `# [h, w, 3]`: t = clip(v / vmax, 0, 1) on black→red→yellow→white."""
    v = np.asarray(values, dtype=np.float64)
    vmax = float(np.max(v)) if vmax is None else vmax
    t = np.clip(v / vmax, 0, 1) if vmax > 0 else np.zeros_like(v)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    return (255 * rgb).round().astype(np.uint8)


def signed_rgb(values: np.ndarray) -> np.ndarray:
    """A signed map `# [h, w]` → RGB uint8: t = v / max|v|; negative blue, 0 white, positive red."""
    v = np.asarray(values, dtype=np.float64)
    m = float(np.max(np.abs(v))) if v.size else 0.0
    t = v / m if m > 0 else np.zeros_like(v)
    r = np.where(t < 0, 1 + t, 1.0)
    b = np.where(t > 0, 1 - t, 1.0)
    g = 1 - np.abs(t)
    return (255 * np.stack([r, g, b], axis=-1)).round().astype(np.uint8)


def upsample(rgb: np.ndarray, size: tuple[int, int], smooth: bool = False) -> np.ndarray:
    """Resize an RGB array `# [h, w, 3]` to `size` = (H, W) (nearest, or bilinear when `smooth`)."""
    image = Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR if smooth else Image.NEAREST)
    return np.asarray(image)


def overlay(pixels: np.ndarray, act_map: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """An activation map `# [h, w]` laid over an image `# [H, W, 3]`, the image dimmed to half:
    out = (1 − α) · 0.5 · image + α · (255, 255 · t, 0), with t = clip(a / vmax, 0, 1) (the map bilinearly resized
    to the image) and α = 0.8 · t, so silent places show the dimmed image and strong ones red → yellow."""
    a = np.clip(np.asarray(act_map, dtype=np.float64), 0, None)
    vmax = float(a.max()) if vmax is None else vmax
    t = np.clip(a / vmax, 0, 1) if vmax > 0 else np.zeros_like(a)
    size = pixels.shape[:2]
    t_big = np.asarray(Image.fromarray((255 * t).astype(np.uint8)).resize((size[1], size[0]), Image.BILINEAR)) / 255.0
    heat = np.stack([np.full_like(t_big, 255.0), 255.0 * t_big, np.zeros_like(t_big)], axis=-1)
    alpha = 0.8 * t_big[..., None]
    return ((1 - alpha) * 0.5 * pixels + alpha * heat).round().astype(np.uint8)


def grid(tiles: Sequence[np.ndarray], captions: Sequence[str] | None = None, *, tile: int = 96, columns: int = 8,
         pad: int = 4) -> Image.Image:
    """RGB tiles `# [h, w, 3]` (each scaled to `tile` px, nearest for ≤ 64 px, else bilinear) in rows of
    `columns`, each with a caption line below; white background."""
    n = max(len(tiles), 1)
    cols = min(columns, n)
    rows = -(-n // cols)
    caption_h = 14 if captions else 0
    cell_w, cell_h = tile + pad, tile + pad + caption_h
    canvas = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, array in enumerate(tiles):
        r, c = divmod(i, cols)
        small = max(array.shape[:2]) <= 64
        image = Image.fromarray(array).resize((tile, tile), Image.NEAREST if small else Image.BILINEAR)
        x, y = pad + c * cell_w, pad + r * cell_h
        canvas.paste(image, (x, y))
        if captions:
            draw.text((x, y + tile + 1), captions[i][: max(tile // 6, 4)], fill=(0, 0, 0))
    return canvas


def scatter_png(x: np.ndarray, y: np.ndarray, *, size: int = 320, label_x: str = "", label_y: str = "") -> Image.Image:
    """A scatter of `y` against `x` (at most 20,000 points, evenly subsampled) with the identity line, as a PNG."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if len(x) > 20000:
        keep = np.linspace(0, len(x) - 1, 20000).astype(int)
        x, y = x[keep], y[keep]
    margin = 30
    canvas = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(canvas)
    lo = float(min(x.min(), y.min())) if len(x) else 0.0
    hi = float(max(x.max(), y.max())) if len(x) else 1.0
    hi = hi if hi > lo else lo + 1.0
    span = size - 2 * margin

    def px(v: np.ndarray) -> np.ndarray:
        return margin + (v - lo) / (hi - lo) * span

    draw.rectangle([margin, margin, size - margin, size - margin], outline=(120, 120, 120))
    draw.line([margin, size - margin, size - margin, margin], fill=(200, 200, 200))
    for a, b in zip(px(x), size - px(y)):
        draw.point((float(a), float(b)), fill=(30, 80, 200))
    draw.text((margin, size - margin + 4), f"{label_x}  [{lo:.3g}, {hi:.3g}]", fill=(0, 0, 0))
    draw.text((4, 4), label_y, fill=(0, 0, 0))
    return canvas


def save_png(image: Image.Image | np.ndarray, path: Path) -> str:
    """Write a PNG; returns its file name (pages refer to images by relative name)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format="PNG", optimize=False)
    return path.name


def esc(text: Any) -> str:
    """Any text, escaped for HTML (quotes included)."""
    return html.escape(str(text), quote=True)


PAGE_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
padding:0 16px;color:#1b1f24;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 7px;text-align:right;
vertical-align:top}th{background:#f3f5f7}td.l,th.l{text-align:left}img{image-rendering:pixelated;max-width:100%;
border:1px solid #ccc}code{background:#f3f5f7;padding:0 3px}.muted{color:#57606a}figure{display:inline-block;
margin:6px 12px 6px 0;vertical-align:top}figcaption{font-size:12px;color:#57606a;max-width:420px}
a{color:#0550ae}.warn{color:#9a3412}
"""

#: Every page forbids loading anything from elsewhere (and runs no script); images may come from its own folder.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS, no scripts, a CSP that forbids external requests)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """An HTML table; every cell is escaped; the first `left` columns are left-aligned."""
    cls = lambda i: ' class="l"' if i < left else ""
    out = ["<table><tr>" + "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(head)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls(i)}>{esc(c)}</td>" for i, c in enumerate(row)) + "</tr>")
    return "\n".join(out) + "</table>"


def check_out_dir(dest: Path) -> None:
    """Refuse an output folder we may not replace: a file, or a non-empty folder without our marker."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise UserError(f"{dest} exists and is not a folder; pass --out with a new folder.")
        if any(dest.iterdir()) and not (dest / MARKER).exists():
            raise UserError(f"{dest} is a folder with other files in it (not one replacebench wrote); "
                            "pass --out with a new or empty folder.")


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """A fresh temporary folder beside `dest`; on success it replaces `dest` whole (the old one is removed), on
    failure it is removed and `dest` is left as it was. Only empty folders or our own (`MARKER`) are replaced."""
    dest = Path(dest).expanduser().absolute()
    check_out_dir(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise UserError(f"cannot write into {dest.parent} ({exc.strerror}); pass --out with a writable folder.") from None
    try:
        (tmp / MARKER).write_text("written by replacebench; the whole folder is replaced on the next run\n")
        yield tmp
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "x")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2) + "\n")


def quantile_summary(values: np.ndarray) -> dict[str, float]:
    """mean, sd (ddof 0), min, q01, q10, q25, median, q75, q90, q99, max and the fraction > 0 of `values`."""
    v = np.asarray(values, dtype=np.float64).ravel()
    qs = np.quantile(v, [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1])
    names = ["min", "q01", "q10", "q25", "median", "q75", "q90", "q99", "max"]
    return {"mean": float(v.mean()), "sd": float(v.std()), **{k: float(q) for k, q in zip(names, qs)},
            "fraction_active": float((v > 0).mean())}
