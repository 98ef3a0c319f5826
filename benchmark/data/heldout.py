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

Interpolation puts values between the dataset's stored levels (digits are multiples of 1/16, MNIST pixels k/255), and
blurs: fewer pixels at full ink or at the background. A submission could tell the split apart by either, so every
moved value is mapped back onto the dataset's grid (`zoo.Grid`: x = (k / levels − mean) / std) by one monotone map
per split that matches the pooled histogram of levels of the public split (quantile matching):

    F(k) = share of the public split's pixels at level ≤ k           (k = 0 … k_max − 1)
    t_k  = the ⌈F(k) · N⌉-th smallest of the N moved values pooled over the whole split
    level(v) = #{k : t_k < v},  x'' = the grid value of that level

So held-out values are bit-identical to stored ones, and the split's histogram of levels is the public one's (up to
ties). The map is one function of the pooled values, never per image, so it does not bring an image's own public
histogram back (which would name the public image it came from).

The fit set is public and untouched. The record stores only the commitment
sha256("replacebench-heldout-v1" + secret) in hex, never the secret; the baseline cache is keyed by it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import ExampleSet
from ..errors import UserError
from ..zoo import DATASETS, Grid, Transform

DOMAIN = b"replacebench-heldout-v1"
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 1 << 16


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


def apply(images: torch.Tensor, params: np.ndarray, background: float) -> torch.Tensor:
    """Shift and rotate each image `# [n, C, H, W]` by its (dx, dy, θ) `# [n, 3]`, bilinear, about the centre.

    In normalised coordinates (align_corners=False, so ±1 are the outer pixel edges), the sampling grid for output
    point q is R(−θ)(q − t) with t = (2dx/W, 2dy/H): the content moves by +dx pixels right, +dy down, and turns by θ
    (the sign of θ's direction does not matter: θ is symmetric about 0). Non-square images: the rotation is in pixels.
    """
    n, _, h, w = images.shape
    p = torch.as_tensor(params, dtype=torch.float64)
    theta = torch.deg2rad(p[:, 2])
    cos, sin = torch.cos(theta), torch.sin(theta)
    sx, sy = w / 2.0, h / 2.0
    a = torch.zeros((n, 2, 3), dtype=torch.float64)
    # src = R(-θ)(dst - d) in pixels about the centre, R(-θ) = [[cos, sin], [-sin, cos]], rescaled per axis
    a[:, 0, 0] = cos
    a[:, 0, 1] = sin * sy / sx
    a[:, 1, 0] = -sin * sx / sy
    a[:, 1, 1] = cos
    tx, ty = p[:, 0] / sx, p[:, 1] / sy  # the shift in normalised units
    a[:, 0, 2] = -(a[:, 0, 0] * tx + a[:, 0, 1] * ty)
    a[:, 1, 2] = -(a[:, 1, 0] * tx + a[:, 1, 1] * ty)
    grid = F.affine_grid(a.to(torch.float32), [n, images.shape[1], h, w], align_corners=False)
    moved = F.grid_sample(images.float() - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (moved + background).contiguous()


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
    ordered = np.sort(moved.ravel().astype(np.float64))
    rank = np.clip(np.ceil(share * len(ordered)).astype(np.int64) - 1, 0, len(ordered) - 1)
    return ordered[rank]


class HeldOutImageSet(ExampleSet):
    """A task's eval split with every example moved by its secret-seeded transform (labels unchanged).

    content_hash = sha256(base content hash + "\\nheld-out\\n" + commitment + transform), so every cache that keys on it
    keeps public and held-out apart.
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

    def _moved(self, indices: np.ndarray) -> torch.Tensor:
        params = example_params(self._secret, self._task_id, indices, self.transform)
        return apply(self.base.load(indices), params, self.transform.background)

    def thresholds(self) -> np.ndarray:
        """The split's quantile-matching thresholds `# [k_max]` (`matching_thresholds` over every example)."""
        if self._thresholds is None:
            everything = np.arange(len(self.base))
            moved, public = [], []
            for chunk in np.array_split(everything, max(1, len(everything) // 1000)):
                moved.append(self._moved(chunk).numpy().ravel())
                public.append(grid_levels(self.base.load(chunk), self.transform.grid).numpy().ravel())
            self._thresholds = matching_thresholds(np.concatenate(moved), np.concatenate(public), self.transform.grid.k_max)
        return self._thresholds

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """The moved images `# [n, C, H, W]`, mapped onto the dataset's grid (the module docstring)."""
        indices = np.asarray(indices, dtype=np.int64)
        moved = self._moved(indices)
        level = np.searchsorted(self.thresholds(), moved.numpy().astype(np.float64), side="left")  # #{k: t_k < v}
        return grid_values(self.transform.grid)[torch.from_numpy(level)].contiguous()

    def content_hash(self) -> str:
        spec = repr(sorted(self.transform.to_dict().items()))
        return hashlib.sha256(f"{self.base.content_hash()}\nheld-out\n{self.commitment}\n{spec}".encode()).hexdigest()


def held_out(base: ExampleSet, dataset: str, secret: bytes, task_id: str) -> HeldOutImageSet:
    """The held-out version of a task's eval split; a dataset without a measured transform is a UserError."""
    if dataset not in TRANSFORMS:
        raise UserError(f"no held-out split is defined for {dataset} tasks (only {', '.join(sorted(TRANSFORMS))}): "
                        "score them without --held-out-secret.")
    return HeldOutImageSet(base, secret, task_id, TRANSFORMS[dataset])
