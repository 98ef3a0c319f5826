"""Synthetic curve stimuli and orientation tuning, after Distill's "Curve Detectors".

Geometry (one convention everywhere in this module):

* Pixel coordinates are `(x, y)` with x to the right (column) and y DOWN (row);
  pixel `(row i, col j)` has its centre at `(x, y) = (j, i)`.
* An orientation `phi` is measured in degrees COUNTER-CLOCKWISE from "right" as
  seen on screen (y up): 0 = right, 90 = up, 180 = left, 270 = down. Its unit
  vector in pixel coordinates is `u(phi) = (cos phi, -sin phi)`.
* A curve is an arc of a circle of radius `R` whose MIDPOINT is `M = center_xy`
  and whose CONVEX side faces `phi`: the circle's centre is `C = M - R u`, so
  `M` is the arc's extreme point in direction `u` and the rest of the arc bends
  away from `u`. With the tangent `t = (sin phi, cos phi)` (u turned 90 deg
  clockwise on screen) the arc is
      P(psi) = M + R sin(psi) t + R (cos(psi) - 1) u,   |psi| <= alpha.
* The arc's extent is either an angle (`arc_deg` = 2 alpha) or, by default, a
  fixed arc LENGTH `length_px` (alpha = length_px / (2 R)). With a fixed length
  `R -> inf` is a straight segment of that length through `M`, perpendicular to
  `u` (the limit is continuous; `radius_px=math.inf` renders it exactly).

Rendering: the exact Euclidean distance `d` of each pixel centre to the arc
(circle part where the pixel's polar angle about `C` is inside the arc,
otherwise the nearer endpoint) gives the ink value
    antialias:  clip(width/2 + 1/2 - d, 0, 1)      (box-filtered stroke)
    otherwise:  1 if d <= width/2 else 0.
The distance to the circle is computed in the cancellation-free form
    d_circle = (a^2 + b^2 + 2 b R) / (sqrt(a^2 + (b + R)^2) + R)
with `a = (p - M).t`, `b = (p - M).u`, which tends to `|b|` as R -> inf.

Model input: `to_model_input` draws the curve BLACK ON WHITE (ink 1 -> 0,
background -> 255), as the article's synthetic curves are drawn, grayscale on
all three channels, in Lucid InceptionV1's input scaling `[0, 255] - 117`.

Output position: InceptionV1's mixed3a/mixed3b grid is 28x28 with stride 8;
cell `(i, j)` is centred at pixel `(x, y) = (8 j + 7, 8 i + 7)` (TF 'SAME' padding:
2 px before conv2d0, none before the stride-2 max pools; checked against the
model's input-gradient centroids in tests/test_stimuli.py)
(`cell_center`), where `radial_tuning_set` centres its curves by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from ..zoo import IMAGENET_OFFSET  # Lucid InceptionV1 input: pixels in [0, 255] minus this

#: Stride (pixels) of the mixed3a / mixed3b grid and the offset of a cell's centre.
GRID_STRIDE_PX = 8
CELL_OFFSET_PX = 7


def cell_center(i: int, j: int) -> tuple[float, float]:
    """Pixel `(x, y)` at the centre of output cell `(row i, col j)` of a stride-8 grid."""
    return (float(GRID_STRIDE_PX * j + CELL_OFFSET_PX), float(GRID_STRIDE_PX * i + CELL_OFFSET_PX))


def direction(orientation_deg: float) -> np.ndarray:
    """Unit vector `u = (cos phi, -sin phi)` in pixel coordinates (y down)."""
    phi = math.radians(orientation_deg)
    return np.array([math.cos(phi), -math.sin(phi)])


def arc_half_angle(radius_px: float, arc_deg: float | None, length_px: float) -> float:
    """Half-angle alpha (radians) of the arc: `arc_deg / 2`, else `length_px / (2 R)` (capped at pi)."""
    if arc_deg is not None:
        return math.radians(arc_deg) / 2.0
    if math.isinf(radius_px):
        return 0.0
    return min(math.pi, length_px / (2.0 * radius_px))


def arc_distance(
    x: np.ndarray,
    y: np.ndarray,
    orientation_deg: float,
    radius_px: float,
    center_xy: tuple[float, float],
    arc_deg: float | None = None,
    length_px: float = 64.0,
) -> np.ndarray:
    """Euclidean distance from points `(x, y)` (pixel coordinates) to the arc (see module doc)."""
    if radius_px <= 0:
        raise ValueError(f"radius_px must be positive (got {radius_px}); use math.inf for a straight line")
    u = direction(orientation_deg)
    t = np.array([-u[1], u[0]])  # (sin phi, cos phi): u turned 90 deg clockwise on screen
    dx, dy = x - center_xy[0], y - center_xy[1]
    a = dx * t[0] + dy * t[1]  # along the tangent at M
    b = dx * u[0] + dy * u[1]  # along the convex normal
    if math.isinf(radius_px):
        if arc_deg is not None:
            raise ValueError("a straight line (radius inf) needs a finite length_px, not arc_deg")
        half = length_px / 2.0
        along = np.clip(a, -half, half)
        return np.hypot(a - along, b)
    r = float(radius_px)
    alpha = arc_half_angle(r, arc_deg, length_px)
    rho = np.sqrt(a * a + (b + r) ** 2)
    d_circle = np.abs((a * a + b * b + 2.0 * b * r) / (rho + r))
    psi = np.arctan2(a, b + r)  # polar angle about the circle's centre, 0 at M
    inside = np.abs(psi) <= alpha
    end_a = r * math.sin(alpha)
    end_b = -2.0 * r * math.sin(alpha / 2.0) ** 2  # r (cos alpha - 1), stable
    d_end = np.minimum(np.hypot(a - end_a, b - end_b), np.hypot(a + end_a, b - end_b))
    return np.where(inside, d_circle, d_end)


def render_curve(
    orientation_deg: float,
    radius_px: float,
    center_xy: tuple[float, float] | None = None,
    size: int = 224,
    arc_deg: float | None = None,
    width_px: float = 3.0,
    antialias: bool = True,
    length_px: float = 64.0,
) -> np.ndarray:
    """Ink image `# [size, size]` float32 in [0, 1] of one arc (1 = on the stroke).

    `orientation_deg`: direction the convex side faces (CCW from right, y up);
    `radius_px`: radius (math.inf: straight line); `center_xy`: the arc's
    midpoint in pixels (default: image centre); extent `arc_deg` or `length_px`.
    """
    if width_px <= 0:
        raise ValueError(f"width_px must be positive (got {width_px})")
    if center_xy is None:
        center_xy = ((size - 1) / 2.0, (size - 1) / 2.0)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    d = arc_distance(xs, ys, orientation_deg, radius_px, center_xy, arc_deg, length_px)
    if antialias:
        ink = np.clip(width_px / 2.0 + 0.5 - d, 0.0, 1.0)
    else:
        ink = (d <= width_px / 2.0).astype(np.float64)
    return ink.astype(np.float32)


def to_model_input(gray: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Ink images `# [n, H, W]` in [0,1] -> InceptionV1 input `# [n, 3, H, W]`.

    Black curve on white: pixel = 255 (1 - ink) - 117 on all three channels.
    """
    ink = torch.as_tensor(np.asarray(gray), dtype=torch.float32)
    if ink.ndim == 2:
        ink = ink[None]
    if ink.ndim != 3:
        raise ValueError(f"expected ink images [n, H, W], got shape {tuple(ink.shape)}")
    pixels = 255.0 * (1.0 - ink.clamp(0.0, 1.0)) - IMAGENET_OFFSET  # [n, H, W]
    return pixels[:, None].expand(-1, 3, -1, -1).contiguous()  # [n, 3, H, W]


def radial_tuning_set(
    orientations: Sequence[float],
    radii: Sequence[float],
    center_xy: tuple[float, float] | None = None,
    size: int = 224,
    arc_deg: float | None = None,
    width_px: float = 3.0,
    length_px: float = 64.0,
    antialias: bool = True,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Every (orientation, radius) curve as model input, like the article's radial tuning images.

    Returns `images # [n, 3, size, size]` (black on white, `[0,255]-117`) and a
    DataFrame with one row per image: `orientation_deg, radius_px, center_x,
    center_y` in image order (orientation-major). Default centre: `cell_center(14, 14)`.
    """
    if center_xy is None:
        center_xy = cell_center(14, 14)
    rows, inks = [], []
    for orientation in orientations:
        for radius in radii:
            inks.append(render_curve(orientation, radius, center_xy, size, arc_deg, width_px, antialias, length_px))
            rows.append(
                {
                    "orientation_deg": float(orientation) % 360.0,
                    "radius_px": float(radius),
                    "center_x": float(center_xy[0]),
                    "center_y": float(center_xy[1]),
                }
            )
    return to_model_input(np.stack(inks)), pd.DataFrame(rows)


def circular_mean_deg(angles_deg: np.ndarray, weights: np.ndarray) -> float:
    """Weighted circular mean in [0, 360): atan2(sum w sin a, sum w cos a); NaN if all weights are 0."""
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    a = np.radians(np.asarray(angles_deg, dtype=np.float64))
    s, c = float((w * np.sin(a)).sum()), float((w * np.cos(a)).sum())
    if s == 0.0 and c == 0.0:
        return float("nan")
    return math.degrees(math.atan2(s, c)) % 360.0


def half_width_half_max(angles_deg: np.ndarray, response: np.ndarray) -> float:
    """Half-width at half-maximum (degrees) of a tuning curve sampled on a circle.

    From the argmax, walk each way until the response first drops below
    (max + min)/2 (the baseline is the curve's minimum), interpolating linearly
    between samples; HWHM = mean of the two half-widths. 180 if it never drops.
    """
    order = np.argsort(np.asarray(angles_deg) % 360.0)
    ang = (np.asarray(angles_deg, dtype=np.float64) % 360.0)[order]
    r = np.asarray(response, dtype=np.float64)[order]
    n = len(r)
    peak, base = r.max(), r.min()
    if n < 3 or peak <= base:
        return 180.0
    half = (peak + base) / 2.0
    k0 = int(np.argmax(r))
    widths = []
    for step in (1, -1):
        width, k = None, k0
        for _ in range(n - 1):
            k_next = (k + step) % n
            gap = (ang[k_next] - ang[k]) * step % 360.0
            if r[k_next] < half:
                frac = (r[k] - half) / (r[k] - r[k_next])
                width = _distance_walked(ang, k0, k, step) + frac * gap
                break
            k = k_next
        widths.append(180.0 if width is None else width)
    return float(np.mean(widths))


def _distance_walked(ang: np.ndarray, k0: int, k: int, step: int) -> float:
    """Angular distance (degrees) walked from sample k0 to sample k in direction `step`."""
    return float(((ang[k] - ang[k0]) * step) % 360.0)


def orientation_tuning(
    activation_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    meta: pd.DataFrame,
    units: Sequence[int],
    position: tuple[int, int] = (14, 14),
    batch_size: int = 64,
) -> pd.DataFrame:
    """Each unit's response vs orientation at output cell `position`, with its preferred orientation and width.

    `activation_fn(images) -> # [n, n_units, 28, 28]` (a submission or the real
    model's hooked activations), unit k of the output being `units[k]`.
    The response at an orientation is the mean over the radii in `meta`.
    Returns a long DataFrame, one row per (unit, orientation):
    `unit, orientation_deg, response` plus per-unit columns (repeated on its rows)
    `preferred_deg_mean` (circular mean weighted by the rectified response),
    `preferred_deg_argmax`, `hwhm_deg` (`half_width_half_max`) and `peak_response`.
    """
    if len(meta) != len(images):
        raise ValueError(f"meta has {len(meta)} rows but there are {len(images)} images")
    i, j = position
    outs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            act = activation_fn(images[start : start + batch_size])  # [b, n_units, H, W]
            if act.ndim != 4 or act.shape[1] != len(units):
                raise ValueError(f"activation_fn returned shape {tuple(act.shape)}; expected [b, {len(units)}, H, W]")
            outs.append(act[:, :, i, j].detach().float().cpu())
    values = torch.cat(outs).numpy()  # [n, n_units]
    frame = meta[["orientation_deg"]].copy()
    rows = []
    for k, unit in enumerate(units):
        frame["response"] = values[:, k]
        curve = frame.groupby("orientation_deg", sort=True)["response"].mean()
        ang, resp = curve.index.to_numpy(dtype=np.float64), curve.to_numpy(dtype=np.float64)
        summary = {
            "preferred_deg_mean": circular_mean_deg(ang, resp),
            "preferred_deg_argmax": float(ang[int(np.argmax(resp))]),
            "hwhm_deg": half_width_half_max(ang, resp),
            "peak_response": float(resp.max()),
        }
        for a, r in zip(ang, resp):
            rows.append({"unit": int(unit), "orientation_deg": float(a), "response": float(r), **summary})
    return pd.DataFrame(rows)


def summarize_tuning(table: pd.DataFrame) -> pd.DataFrame:
    """One row per unit from an `orientation_tuning` table: preferred orientations, HWHM, peak."""
    cols = ["preferred_deg_mean", "preferred_deg_argmax", "hwhm_deg", "peak_response"]
    return table.groupby("unit", sort=False)[cols].first().reset_index()


def angular_difference(a_deg: float, b_deg: float) -> float:
    """Smallest absolute difference between two angles, in [0, 180]."""
    d = (a_deg - b_deg) % 360.0
    return float(min(d, 360.0 - d))
