"""The held-out split: secret-seeded small shifts and rotations of a task's eval images.

Every public eval image and its label can be read by anyone, so a replacement could look an image up and set the
unit to whatever lowers its true label's loss. A board maintainer therefore also scores with a secret (a file only
the harness's own process reads; never an environment variable, never in a child's reach). Each eval example i of
task T is moved by its own transform, derived from

    h = HMAC-SHA256(secret, "replacebench-heldout-v1\\n" + T + "\\n" + str(i))
    u_k = uint32(h[4k : 4k+4], big-endian) / 2^32 · 2 − 1            (k = 0, 1, 2; each in [−1, 1))
    dx = MAX_SHIFT · u_0,  dy = MAX_SHIFT · u_1  (pixels),  θ = MAX_ROTATION · u_2  (degrees)

and resampled bilinearly about the image centre, with the dataset's background value outside the image:

    x'(p) = bg + bilinear(x − bg)(R(−θ) (p − c − (dx, dy)) + c)

in exact integer arithmetic, so that the moved images are the same bits on every CPU, vector width and thread count
(float32 `grid_sample` differed by an ulp between kernels, and an ulp at a level boundary flipped a pixel's level).
Output pixel (i, j) samples the input at pixel-index coordinates (pixel k's centre at k; u = j + ½ − W/2,
v = i + ½ − H/2 its offset from the centre)

    s_x = W/2 − ½ + cos θ (u − dx) + sin θ (v − dy),   s_y = H/2 − ½ − sin θ (u − dx) + cos θ (v − dy)

computed in float64 (cos and sin from the C library, one call per image; each other step one IEEE operation), then
rounded to fixed point, S = round(s · 2^FIXED_BITS) (int64). With S = 2^FIXED_BITS·s₀ + f (0 ≤ f < 2^FIXED_BITS),
the corners s₀ and s₀ + 1 get integer weights 2^FIXED_BITS − f and f on each axis, and the moved value in level units
is the exact integer

    V = Σ_corners w_x w_y (k − k_bg)          (k: the corner's stored level, k_bg the background's; 0 off the image)

(x' = bg + V / 4^FIXED_BITS level steps). A float64 coordinate wrong in its last bits (another C library's cos) could
change S only where s · 2^FIXED_BITS lies within MIN_ROUNDING_MARGIN of a rounding boundary; `min_rounding_margin`
measures how far every sample is from one.

Interpolation puts values between the dataset's stored levels (digits are multiples of 1/16, MNIST pixels k/255), and
blurs: fewer pixels at full ink or at the background. A submission could tell the split apart by either, so every
moved value is mapped back onto the dataset's grid (`zoo.Grid`: x = (k / levels − mean) / std) by one monotone map
per split that matches the pooled histogram of levels of the public split (quantile matching):

    F(k) = share of the public split's pixels at level ≤ k           (k = 0 … k_max − 1)
    t_k  = the ⌈F(k) · N⌉-th smallest of the N moved values V pooled over the whole split
    level(V) = #{k : t_k < V},  x'' = the grid value of that level

Both are exact on integers: ties (equal V) fall on one side of every threshold on every machine. So held-out values
are bit-identical to stored ones, and the split's histogram of levels is the public one's (up to
ties). The map is one function of the pooled values, never per image, so it does not bring an image's own public
histogram back (which would name the public image it came from).

The fit set is public and untouched. The record stores only the commitment
sha256("replacebench-heldout-v1" + secret) in hex, never the secret; the baseline cache is keyed by it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import ExampleSet
from ..errors import UserError
from ..zoo import DATASETS, Grid, Transform

DOMAIN = b"replacebench-heldout-v1"
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 1 << 16
#: Source coordinates are rounded to multiples of 2^−FIXED_BITS pixel (the weights are then integers; module docstring).
FIXED_BITS = 16
ONE = 1 << FIXED_BITS
#: What the moved images depend on besides the secret and the transform's magnitudes (in the split's content hash).
RESAMPLING = f"integer bilinear, 2^-{FIXED_BITS} px"
#: A float64 s (≤ 40 pixels) is computed with an error of a few units of 2⁻⁴⁷ (each step rounds once; cos and sin within
#: an ulp in any C library); times 2^FIXED_BITS that is under 2⁻²⁸. A sample this close to a rounding boundary could
#: round the other way elsewhere: the held-out splits in use keep every sample further away (`tests/test_heldout.py`).
MIN_ROUNDING_MARGIN = 2.0**-28


#: The datasets with a measured held-out transform (`zoo.DatasetSpec.heldout`; README: Held-out split).
TRANSFORMS: dict[str, Transform] = {d.name: d.heldout for d in DATASETS.values() if d.heldout is not None}


def read_secret(path: str | Path) -> bytes:
    """The secret's bytes from a file (one trailing newline dropped); a missing, empty or short file is a UserError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"--held-out-secret {path}: no such file.") from None
    except OSError as exc:
        raise UserError(f"--held-out-secret {path}: cannot read it ({exc.strerror}).") from None
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    if len(data) < MIN_SECRET_BYTES:
        raise UserError(f"--held-out-secret {path} holds {len(data)} bytes; a secret needs at least {MIN_SECRET_BYTES} "
                        "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))' > FILE`).")
    if len(data) > MAX_SECRET_BYTES:
        raise UserError(f"--held-out-secret {path} is over {MAX_SECRET_BYTES} bytes; a secret is a short random string.")
    return data


def commitment(secret: bytes) -> str:
    """sha256("replacebench-heldout-v1" + secret) as hex: what a record stores in place of the secret."""
    return hashlib.sha256(DOMAIN + secret).hexdigest()


def example_params(secret: bytes, task_id: str, indices: Sequence[int], transform: Transform) -> np.ndarray:
    """(dx, dy, θ) per example `# [n, 3]` float64: pixels, pixels, degrees (the module docstring's formula)."""
    out = np.empty((len(indices), 3), dtype=np.float64)
    scale = np.array([transform.max_shift_px, transform.max_shift_px, transform.max_rotation_deg])
    for row, index in enumerate(indices):
        h = hmac.new(secret, DOMAIN + b"\n" + task_id.encode() + b"\n" + str(int(index)).encode(), hashlib.sha256).digest()
        u = np.frombuffer(h[:12], dtype=">u4").astype(np.float64) / 2.0**32 * 2.0 - 1.0
        out[row] = u * scale
    return out


def _scaled_coordinates(params: np.ndarray, h: int, w: int) -> np.ndarray:
    """The module docstring's s_x, s_y times 2^FIXED_BITS, unrounded `# [n, h, w, 2]` float64 (x then y)."""
    p = np.asarray(params, dtype=np.float64)
    cos = np.array([math.cos(math.radians(t)) for t in p[:, 2]], dtype=np.float64)[:, None, None]  # [n, 1, 1]
    sin = np.array([math.sin(math.radians(t)) for t in p[:, 2]], dtype=np.float64)[:, None, None]
    u = (np.arange(w, dtype=np.float64) + 0.5 - w / 2.0)[None, None, :] - p[:, 0, None, None]  # [n, 1, w]
    v = (np.arange(h, dtype=np.float64) + 0.5 - h / 2.0)[None, :, None] - p[:, 1, None, None]  # [n, h, 1]
    sx = (w / 2.0 - 0.5) + (cos * u + sin * v)  # [n, h, w]
    sy = (h / 2.0 - 0.5) + (cos * v - sin * u)
    return np.stack([sx * ONE, sy * ONE], axis=-1)


def source_coordinates(params: np.ndarray, h: int, w: int) -> np.ndarray:
    """Where each output pixel samples its input, in fixed point `# [n, h, w, 2]` int64 (x then y, in units of
    2^−FIXED_BITS pixel; pixel k's centre at k·2^FIXED_BITS): S = round(s · 2^FIXED_BITS) of the module docstring's
    s_x, s_y for each example's (dx, dy, θ) `# [n, 3]`."""
    return np.rint(_scaled_coordinates(params, h, w)).astype(np.int64)


def min_rounding_margin(params: np.ndarray, h: int, w: int) -> float:
    """The smallest distance of any unrounded s · 2^FIXED_BITS from a rounding boundary (a half-integer), over every
    sample of every example `# [n, 3]`: how far a coordinate may move, in units of 2^−FIXED_BITS pixel, before its
    fixed point S changes (MIN_ROUNDING_MARGIN: what another C library's cos and sin could move it)."""
    scaled = _scaled_coordinates(params, h, w)
    return float(np.abs(np.abs(scaled - np.floor(scaled)) - 0.5).min())


def resample(values: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Bilinear samples of `values # [n, C, h, w]` (0 off the image) at fixed-point `coordinates # [n, h, w, 2]`
    (`source_coordinates`), in units of 4^−FIXED_BITS of a value: Σ_corners w_x w_y value, the weights integers
    (module docstring). Exact for int64 values `# [n, C, h, w]`; float64 values give float64 in the same order."""
    n, c, h, w = values.shape
    whole, frac = coordinates >> FIXED_BITS, coordinates & (ONE - 1)  # floor and remainder; [n, h, w, 2] each
    out = np.zeros(values.shape, dtype=values.dtype)
    examples = np.arange(n)[:, None, None]
    for dy in (0, 1):
        row = whole[..., 1] + dy  # [n, h, w]
        wy = frac[..., 1] if dy else ONE - frac[..., 1]
        for dx in (0, 1):
            col = whole[..., 0] + dx
            wx = frac[..., 0] if dx else ONE - frac[..., 0]
            inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)  # [n, h, w]
            corner = values[examples, :, np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]  # [n, h, w, C]
            weight = np.where(inside, wx * wy, 0).astype(values.dtype)  # [n, h, w], at most 4^FIXED_BITS
            out += np.moveaxis(corner * weight[..., None], -1, 1)
    return out


def apply(images: torch.Tensor, params: np.ndarray, background: float) -> torch.Tensor:
    """Shift and rotate each image `# [n, C, H, W]` by its (dx, dy, θ) `# [n, 3]`, bilinear, about the centre, with
    `background` moving in (module docstring; float64 inside, float32 out). The content moves by +dx pixels right,
    +dy down, and turns by θ (the sign of θ's direction does not matter: θ is symmetric about 0). The held-out
    split itself resamples stored levels exactly (`HeldOutImageSet`)."""
    n, _, h, w = images.shape
    x = images.double().numpy() - background
    moved = resample(x, source_coordinates(params, h, w)) / float(ONE * ONE)
    return torch.from_numpy(moved + background).float().contiguous()


def grid_values(grid: Grid) -> torch.Tensor:
    """The stored value of every level `# [k_max + 1]` float32, computed as the openers compute them."""
    return torch.arange(grid.k_max + 1, dtype=torch.float32).div(grid.levels).sub(grid.mean).div(grid.std)


def grid_levels(values: torch.Tensor, grid: Grid) -> torch.Tensor:
    """The nearest level k = round((x · std + mean) · levels) of each value, clipped to [0, k_max] (int64)."""
    k = torch.round((values.double() * grid.std + grid.mean) * grid.levels)
    return k.clamp(0, grid.k_max).long()


def matching_thresholds(moved: np.ndarray, public_levels: np.ndarray, k_max: int) -> np.ndarray:
    """t_k `# [k_max]` (the module docstring): the moved values' quantiles at the public levels' cumulative shares."""
    counts = np.bincount(public_levels.ravel(), minlength=k_max + 1)  # [k_max + 1]
    share = np.cumsum(counts)[:-1] / counts.sum()  # F(k), k < k_max
    ordered = np.sort(moved.ravel())  # exact: int64 V from the split's `_moved`
    rank = np.clip(np.ceil(share * len(ordered)).astype(np.int64) - 1, 0, len(ordered) - 1)
    return ordered[rank]


class HeldOutImageSet(ExampleSet):
    """A task's eval split with every example moved by its secret-seeded transform (labels unchanged).

    content_hash = sha256(base content hash + "\\nheld-out\\n" + commitment + transform + RESAMPLING), so every cache
    that keys on it keeps public and held-out apart, and the images of an older resampling apart from these.
    """

    def __init__(self, base: ExampleSet, secret: bytes, task_id: str, transform: Transform) -> None:
        self.base, self.name, self.split = base, base.name, base.split
        self._secret, self._task_id, self.transform = secret, task_id, transform
        self.commitment = commitment(secret)
        self._thresholds: np.ndarray | None = None  # [k_max], computed on first load over the whole split

    def __len__(self) -> int:
        return len(self.base)

    def labels(self) -> np.ndarray:
        return self.base.labels()

    def _stored_levels(self, indices: np.ndarray) -> np.ndarray:
        """The public images' stored levels `# [n, C, H, W]` int64 (`grid_levels`) of the examples at `indices`."""
        return grid_levels(self.base.load(indices), self.transform.grid).numpy()

    def _moved(self, indices: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """The moved values V `# [n, C, H, W]` int64 (exact; module docstring) of the examples at `indices`, from
        their stored `levels` (`_stored_levels`, loaded when None)."""
        levels = self._stored_levels(indices) if levels is None else levels
        params = example_params(self._secret, self._task_id, indices, self.transform)
        background = int(grid_levels(torch.tensor([self.transform.background]), self.transform.grid)[0])
        return resample(levels - background, source_coordinates(params, levels.shape[2], levels.shape[3]))

    def thresholds(self) -> np.ndarray:
        """The split's quantile-matching thresholds `# [k_max]` (`matching_thresholds` over every example)."""
        if self._thresholds is None:
            everything = np.arange(len(self.base))
            moved, public = [], []
            for chunk in np.array_split(everything, max(1, len(everything) // 1000)):
                levels = self._stored_levels(chunk)  # [n, C, H, W], loaded once for both
                moved.append(self._moved(chunk, levels).ravel())
                public.append(levels.ravel())
            self._thresholds = matching_thresholds(np.concatenate(moved), np.concatenate(public), self.transform.grid.k_max)
        return self._thresholds

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """The moved images `# [n, C, H, W]`, mapped onto the dataset's grid (the module docstring)."""
        indices = np.asarray(indices, dtype=np.int64)
        moved = self._moved(indices)
        level = np.searchsorted(self.thresholds(), moved, side="left")  # #{k: t_k < V}, exact on int64
        return grid_values(self.transform.grid)[torch.from_numpy(level)].contiguous()

    def content_hash(self) -> str:
        spec = repr(sorted(self.transform.to_dict().items()))
        return hashlib.sha256(f"{self.base.content_hash()}\nheld-out\n{self.commitment}\n{spec}\n{RESAMPLING}"
                              .encode()).hexdigest()


def held_out(base: ExampleSet, dataset: str, secret: bytes, task_id: str) -> HeldOutImageSet:
    """The held-out version of a task's eval split; a dataset without a measured transform is a UserError."""
    if dataset not in TRANSFORMS:
        raise UserError(f"no held-out split is defined for {dataset} tasks (only {', '.join(sorted(TRANSFORMS))}): "
                        "score them without --held-out-secret.")
    return HeldOutImageSet(base, secret, task_id, TRANSFORMS[dataset])
