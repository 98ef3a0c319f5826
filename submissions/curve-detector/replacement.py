"""Hand-written curve detectors for InceptionV1's mixed3b curves and mixed3a early curves.

Built from the description in Distill's "Curve Circuits" (Cammarata et al.,
2021), never from the model's weights (this code is not given the model):
edge/line detectors are tiled along the tangent of a curve ("banana"
filters), excited by same-orientation curves and inhibited by the curve
facing the opposite way (3b curves have no "echo"; 3a early curves do).

Pipeline, from `image # [b, 3, 224, 224]` (Lucid scaling `[0,255] - 117`):

1. Luminance `Y = (mean_c image + 117) / 255`, 2x2 average-pooled to 112x112.
2. Steerable Gaussian-derivative filters (sigma = 1.5 px at 112x112, sampled
   with stride 2, i.e. on a 56x56 grid of stride 4 px):
   `Gx, Gy, Gxx, Gxy, Gyy`. For K = 12 tangent orientations `beta_k = k pi / K`
   (image coordinates, x right, y down) with normal `n = (-sin b, cos b)`:
   edge `d1 = n.grad Y`, line `d2 = n^T H n`, phase-invariant oriented energy
   `E_k = sqrt(d1^2 + (sigma d2)^2)`, divided by `(c0 + local mean energy)`
   (5x5 cells; contrast normalisation), then sharpened:
   `L_k = relu(E_k - mean_k E_k)` `# [b, K, 56, 56]`.
3. (The 56 grid's cell k is centred at pixel 4 k + 0.5.)
4. Banana filter of a unit facing `phi`: for radii R (3b: 14, 22, 34 px;
   3a: 8, 13, 20 px) the arc `P(psi) = M + R sin(psi) t + R (cos(psi) - 1) u`
   (same geometry as `benchmark.analysis.stimuli`: `u` the convex direction, arc half
   length 28 px (3b) / 18 px (3a), at most 70 deg) is sampled every pixel of
   arc length; each sample adds weight to the orientation channel(s) of the
   arc's tangent there (linear in angle) at its position (bilinear on the 56
   grid). Each radius is normalised to unit total weight; radii are averaged.
   Applied as a stride-2 convolution, giving `# [b, n_units, 28, 28]` with
   output cell (i, j) centred at pixel (8 j + 7, 8 i + 7), as in the model.
5. Score `s = B_phi - lambda B_{phi+180}` (lambda = 0.8 for 3b, 0 for 3a: 3a
   early curves keep their echo), output `relu(gain * s + bias)`.

Calibration: `fit` fits ONLY a per-unit gain and bias (2 parameters per unit)
by least squares on the fit split: ordinary least squares of the target on
`s`, then a few refits restricted to positions where the rectified prediction
or the target is positive (least squares of `relu(g s + c)` to the target).
Without `params`, gain = DEFAULT_GAIN (1000: the preferred synthetic curve then
gives ~500, the order of the article's 3b responses) and bias = -gain *
threshold, the threshold (3b 0.08, 3a 0.17) being the ~90th percentile of the
scores on 12 ImageNet sample images, so that about 10% of positions fire, as
the article reports for 3b curves.

Unit orientations (`ORIENTATION_DEG`, convex side's direction, degrees
counter-clockwise from "right", y up):

* mixed3b: measured from the Curve Detectors article's radial tuning data
  (distillpub/post--circuits-curve-detectors, pages/radial/data.json: 720
  responses per neuron, index/2 = stimulus angle theta, plotted at screen angle
  theta, clockwise from right since screen y points down). Argmax theta:
  379: 243, 406: 268.5, 385: 290, 343: 358, 342: 22.5, 388: 66.5, 324: 91.5,
  340: 110, 330: 145 (centre of a flat top), 349: 181. These agree with the
  article's remark of two large gaps at the top of the 3b radial plot. We map
  them to our convention as `phi = 360 - theta`, ASSUMING the plot shows each
  neuron in the direction its preferred curve's convex side faces (3b:379
  faces up-left, which matches its feature visualisation); this absolute
  convention was not verified against the model.
* mixed3a: not measured. ASSUMED: the listed order 81, 104, 92, 145, 95, 163,
  171, 71, 147, 189, 137 is the article's order by orientation, evenly spaced
  (360/11 deg), turning the same way as the 3b list and starting with 81 at
  3b:379's orientation.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

_THETA_3B = {379: 243.0, 406: 268.5, 385: 290.0, 343: 358.0, 342: 22.5, 388: 66.5, 324: 91.5, 340: 110.0, 330: 145.0, 349: 181.0}
_ORDER_3A = (81, 104, 92, 145, 95, 163, 171, 71, 147, 189, 137)

#: Convex-side direction of each unit's preferred curve (deg, CCW from right, y up).
ORIENTATION_DEG: dict[str, dict[int, float]] = {
    "mixed3b": {unit: (360.0 - theta) % 360.0 for unit, theta in _THETA_3B.items()},
    "mixed3a": {unit: ((360.0 - 243.0) - k * 360.0 / len(_ORDER_3A)) % 360.0 for k, unit in enumerate(_ORDER_3A)},
}

#: Per-layer design: radii (px), arc half length (px), opposite-curve inhibition, default threshold.
DESIGN = {
    "mixed3b": {"radii": (14.0, 22.0, 34.0), "half_length": 28.0, "inhibition": 0.8, "threshold": 0.08},
    "mixed3a": {"radii": (8.0, 13.0, 20.0), "half_length": 18.0, "inhibition": 0.0, "threshold": 0.17},
}

N_ORIENT = 12
SIGMA = 1.5  # Gaussian-derivative scale, in 112x112 pixels
CONTRAST_C0 = 0.02
DEFAULT_GAIN = 1000.0
MAX_HALF_ANGLE = math.radians(70.0)
# Output cell (i, j) of InceptionV1's mixed3a/3b grid is centred at pixel 8 i + 7 (TF 'SAME' padding
# puts 2 px before conv2d0 and none before the two stride-2 max pools; input-gradient centroids of
# the model confirm it). The stride-2 tap at the 56 grid's index 2 i + 1 is centred at pixel
# 4 (2 i + 1) + 0.5 = 8 i + 4.5, so the arc, drawn around the cell centre, sits 2.5 px further on.
_TAP_OFFSET_PX = -2.5
_GRID_PX = 4.0


def _layer_of(task) -> str:
    layer = getattr(task, "layer", None)
    if layer not in ORIENTATION_DEG:
        raise ValueError(f"curve-detector handles layers {sorted(ORIENTATION_DEG)}, not {layer!r}")
    return layer


def _orientations(task) -> list[float]:
    """Designed orientation of each unit in `task.units` (ValueError for a unit that is not a curve)."""
    layer = _layer_of(task)
    known = ORIENTATION_DEG[layer]
    unknown = [u for u in task.units if int(u) not in known]
    if unknown:
        raise ValueError(
            f"curve-detector has no curve detector for {layer} unit(s) {unknown}; "
            f"it handles {layer} units {sorted(known)}"
        )
    return [known[int(u)] for u in task.units]


def _derivative_filters(device: torch.device) -> torch.Tensor:
    """Gaussian-derivative basis `# [5, 1, k, k]`: Gx, Gy, Gxx, Gxy, Gyy (x right, y down)."""
    r = int(math.ceil(3 * SIGMA))
    ax = np.arange(-r, r + 1, dtype=np.float64)
    y, x = np.meshgrid(ax, ax, indexing="ij")
    g = np.exp(-(x**2 + y**2) / (2 * SIGMA**2))
    g /= g.sum()
    s2 = SIGMA**2
    gx, gy = -x / s2 * g, -y / s2 * g
    gxx, gyy = (x**2 / s2 - 1) / s2 * g, (y**2 / s2 - 1) / s2 * g
    gxy = x * y / s2**2 * g
    bank = np.stack([gx, gy, gxx - gxx.mean(), gxy, gyy - gyy.mean()])[:, None]
    return torch.tensor(bank, dtype=torch.float32, device=device)


def _steering(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients `# [K, 2]` (first) and `# [K, 3]` (second derivative) along each tangent's normal."""
    beta = np.arange(N_ORIENT) * math.pi / N_ORIENT
    nx, ny = -np.sin(beta), np.cos(beta)
    first = np.stack([nx, ny], 1)
    second = np.stack([nx * nx, 2 * nx * ny, ny * ny], 1)
    return (torch.tensor(first, dtype=torch.float32, device=device), torch.tensor(second, dtype=torch.float32, device=device))


def oriented_energy(image: torch.Tensor) -> torch.Tensor:
    """Sharpened, contrast-normalised oriented line/edge energy `# [b, K, 56, 56]` from `# [b, 3, 224, 224]`."""
    device = image.device
    box = torch.full((1, 3, 2, 2), 1.0 / 12.0, device=device)
    lum = (F.conv2d(image.float(), box, stride=2) + 117.0) / 255.0  # [b, 1, 112, 112]: channel mean, 2x2 pool
    bank = _derivative_filters(device)
    pad = bank.shape[-1] // 2
    # sampled every 2nd pixel: the 56 grid, cell k centred at pixel 4 k + 0.5
    basis = F.conv2d(F.pad(lum, (pad, pad - 1, pad, pad - 1), mode="replicate"), bank, stride=2)  # [b, 5, 56, 56]
    first, second = _steering(device)
    d1 = torch.einsum("kc,bchw->bkhw", first, basis[:, :2])  # [b, K, 56, 56]
    d2 = torch.einsum("kc,bchw->bkhw", second, basis[:, 2:])  # [b, K, 56, 56]
    energy = torch.sqrt(d1 * d1 + (SIGMA * d2) ** 2 + 1e-8)
    local = F.avg_pool2d(energy.mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)
    energy = energy / (CONTRAST_C0 + local)
    return torch.relu(energy - energy.mean(1, keepdim=True))  # [b, K, 56, 56]


def banana_kernel(orientation_deg: float, radii: tuple[float, ...], half_length: float) -> np.ndarray:
    """Weights `# [K, ks, ks]` of the arc filter facing `orientation_deg` on the 56 grid (see module doc)."""
    phi = math.radians(orientation_deg)
    u = np.array([math.cos(phi), -math.sin(phi)])
    t = np.array([-u[1], u[0]])
    pieces = []
    for radius in radii:
        alpha = min(MAX_HALF_ANGLE, half_length / radius)
        n = max(3, int(round(2 * alpha * radius)) + 1)
        psi = np.linspace(-alpha, alpha, n)
        pts = radius * np.sin(psi)[:, None] * t + radius * (np.cos(psi) - 1)[:, None] * u  # [n, 2] px
        tangent = np.cos(psi)[:, None] * t - np.sin(psi)[:, None] * u
        beta = np.arctan2(tangent[:, 1], tangent[:, 0]) % math.pi
        pieces.append((pts, beta, np.full(n, 1.0 / n)))
    extent = max(np.abs(p).max() for p, _, _ in pieces) + abs(_TAP_OFFSET_PX)
    c = int(math.ceil(extent / _GRID_PX)) + 1
    ks = 2 * c + 1
    kernel = np.zeros((N_ORIENT, ks, ks))
    for pts, beta, w in pieces:
        gx = (pts[:, 0] - _TAP_OFFSET_PX) / _GRID_PX + c
        gy = (pts[:, 1] - _TAP_OFFSET_PX) / _GRID_PX + c
        fo = beta / (math.pi / N_ORIENT)
        x0, y0, o0 = np.floor(gx).astype(int), np.floor(gy).astype(int), np.floor(fo).astype(int)
        fx, fy, fr = gx - x0, gy - y0, fo - o0
        for do, wo in ((0, 1 - fr), (1, fr)):
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    np.add.at(kernel, ((o0 + do) % N_ORIENT, y0 + dy, x0 + dx), w * wo * wy * wx)
    return kernel / len(radii)


def detector_scores(image: torch.Tensor, task) -> torch.Tensor:
    """Pre-calibration scores `s = B_phi - lambda B_{phi+180}` `# [b, n_units, 28, 28]` float32."""
    orientations = _orientations(task)
    design = DESIGN[_layer_of(task)]
    weight_t = _weights(tuple(orientations), _layer_of(task)).to(image.device)
    c = weight_t.shape[-1] // 2
    energy = oriented_energy(image)  # [b, K, 56, 56]
    padded = F.pad(energy, (c - 1, c + 1, c - 1, c + 1))
    resp = F.conv2d(padded, weight_t, stride=2)  # [b, 2 n_units, 28, 28]
    n = len(orientations)
    return resp[:, :n] - design["inhibition"] * resp[:, n:]


@functools.lru_cache(maxsize=64)
def _weights(orientations: tuple[float, ...], layer: str) -> torch.Tensor:
    """Banana filters for `orientations` then their opposites `# [2 n, K, ks, ks]` (CPU, cached)."""
    design = DESIGN[layer]
    kernels = [banana_kernel(o, design["radii"], design["half_length"]) for o in orientations]
    kernels += [banana_kernel(o + 180.0, design["radii"], design["half_length"]) for o in orientations]
    ks = max(k.shape[-1] for k in kernels)
    weight = np.zeros((len(kernels), N_ORIENT, ks, ks))
    for idx, k in enumerate(kernels):
        off = (ks - k.shape[-1]) // 2
        weight[idx, :, off : off + k.shape[-1], off : off + k.shape[-1]] = k
    return torch.tensor(weight, dtype=torch.float32)


def replace(image: torch.Tensor, task, params: dict | None = None) -> torch.Tensor:
    """Curve-detector activations `# [b, n_units, 28, 28]` float32 on `image.device`."""
    scores = detector_scores(image, task)  # [b, n, 28, 28]
    n = scores.shape[1]
    if params:
        gain = params["gain"].to(scores.device, torch.float32).view(1, n, 1, 1)
        bias = params["bias"].to(scores.device, torch.float32).view(1, n, 1, 1)
    else:
        threshold = DESIGN[_layer_of(task)]["threshold"]
        gain = torch.full((1, n, 1, 1), DEFAULT_GAIN, device=scores.device)
        bias = torch.full((1, n, 1, 1), -DEFAULT_GAIN * threshold, device=scores.device)
    out = torch.relu(gain * scores + bias)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).float()


def _fit_gain_bias(s: torch.Tensor, y: torch.Tensor, iterations: int = 10) -> tuple[float, float]:
    """Least squares of `relu(g s + c)` to `y` (1-D float64): OLS, then refits on the active set."""

    def ols(mask: torch.Tensor) -> tuple[float, float]:
        sm, ym = s[mask], y[mask]
        if sm.numel() < 2 or float(sm.var()) == 0.0:
            return 0.0, float(y.mean())
        design = torch.stack([sm, torch.ones_like(sm)], 1)
        sol = torch.linalg.lstsq(design, ym[:, None]).solution[:, 0]
        return float(sol[0]), float(sol[1])

    g, c = ols(torch.ones_like(s, dtype=torch.bool))
    best = (float(((torch.relu(g * s + c) - y) ** 2).mean()), g, c)
    for _ in range(iterations):
        active = (g * s + c > 0) | (y > 0)
        g, c = ols(active)
        loss = float(((torch.relu(g * s + c) - y) ** 2).mean())
        if loss < best[0] - 1e-12:
            best = (loss, g, c)
        else:
            break
    return best[1], best[2]


def fit(image: torch.Tensor, target: torch.Tensor, task, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Per-unit gain and bias (2 parameters per unit) by least squares on the fit split."""
    chunks = [detector_scores(image[i : i + batch_size], task).cpu() for i in range(0, len(image), batch_size)]
    scores = torch.cat(chunks).double()  # [n_fit, n, 28, 28]
    target = target.double()
    gains, biases = [], []
    for k in range(scores.shape[1]):
        g, c = _fit_gain_bias(scores[:, k].reshape(-1), target[:, k].reshape(-1))
        gains.append(g)
        biases.append(c)
    return {"gain": torch.tensor(gains, dtype=torch.float32), "bias": torch.tensor(biases, dtype=torch.float32)}
