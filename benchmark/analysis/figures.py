"""Pictures and report folders for `inspect` and `diagnose`: PNGs (Pillow), a plain HTML page, atomic folders.

Images are shown as the eye sees them, by undoing each dataset's model-ready scaling
(`zoo.DatasetSpec`: pixels = x · pixel_scale + pixel_offset):
- digits: x = pixels / 16, so pixels = 255 · x;
- MNIST: x = (p / 255 − 0.1307) / 0.3081, so p = 255 · (0.3081 · x + 0.1307);
- ImageNet (InceptionV1): x = RGB − 117, so RGB = x + 117.
Heat maps use one fixed colour ramp (black → red → yellow → white) scaled to the map's own maximum, and
signed maps a blue–white–red ramp scaled to the largest |value|. Maps are drawn with their array indices on the axes
and a colour bar (`plots`), and every figure's arrays are saved beside it (`save_npz`).
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
from ..untrusted import safe_lines
from ..zoo import dataset_spec
from . import plots
from .plots import heat_rgb, signed_rgb  # noqa: F401  (the colour ramps live with the colour bars)

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


#: At most this many points are drawn in a scatter (evenly subsampled); the npz beside it holds the same points.
SCATTER_POINTS = 20000


def scatter_index(n: int, limit: int = SCATTER_POINTS) -> np.ndarray:
    """Which of `n` points a scatter draws: all, or `limit` evenly spaced ones `# [m]` (indices into the flat array)."""
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).astype(int)


def scatter_limits(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """One range for both axes: [min, max] of all values, widened by 3% on each side ([lo, lo + 1] if constant)."""
    if not len(x):
        return 0.0, 1.0
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    if not hi > lo:
        return lo - 0.5, lo + 0.5
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


def scatter_png(x: np.ndarray, y: np.ndarray, *, size: int = 300, label_x: str = "",
                label_y: str = "") -> tuple[Image.Image, dict[str, np.ndarray]]:
    """A scatter of `y` against `x` (at most `SCATTER_POINTS`, evenly subsampled) on equal, ticked axes with the
    identity line. Returns the PNG and what it shows: `index` `# [m]` (into the flattened inputs), the points
    `x`, `y` `# [m]`, and the axis range `limits` `# [2]`."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    keep = scatter_index(len(x))
    x, y = x[keep], y[keep]
    lo, hi = scatter_limits(x, y)
    image = plots.scatter(x, y, lo, hi, size=size, label_x=label_x, label_y=label_y)
    return image, {"index": keep, "x": x, "y": y, "limits": np.array([lo, hi])}


def save_png(image: Image.Image | np.ndarray, path: Path) -> str:
    """Write a PNG; returns its file name (pages refer to images by relative name)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, format="PNG", optimize=False)
    return path.name


def save_npz(path: Path, arrays: dict[str, Any]) -> dict[str, Any]:
    """Write the arrays behind a figure (`np.savez_compressed`, beside its PNG, same stem). Returns what the
    report's JSON lists: the file's name and each array's shape and dtype (`{"file", "arrays": {name: {...}}}`)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    np.savez_compressed(path, **arrays)
    return {"file": path.name,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}


def esc(text: Any) -> str:
    """Any text, escaped for HTML (quotes included), with no control, format or separator characters (newlines
    kept: `untrusted.safe_lines`)."""
    return html.escape(safe_lines(str(text)), quote=True)


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


def figure_html(png: str, alt: str, caption: str, npz: str | None = None) -> str:
    """An image with its caption (`caption` is HTML, already escaped) and, when given, a link to its data file."""
    link = f' <a href="{esc(npz)}">data (.npz)</a>' if npz else ""
    return f'<figure><img src="{esc(png)}" alt="{esc(alt)}"><figcaption>{caption}{link}</figcaption></figure>'


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
