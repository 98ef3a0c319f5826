"""The linear baseline: each unit as ReLU(w · features + b), w fitted by least squares.

Features. For a dense target ([batch, n_units]) the features are all allowed
inputs, flattened. For a convolutional target ([batch, n_units, H, W]) each
input is max-pooled (or resized up) to the target's H×W grid and the features
at a position are the k×k patch of every input channel around it (zero
padding), with k = 3 unless that exceeds the feature budget, then k = 1.

Fit (ReLU-aware least squares). The targets are post-ReLU, so where a unit is
active (y > 0) its pre-activation equals y, and where it is silent only
`w·x + b ≤ 0` is known. We solve the normal equations on the active rows,
then add the silent rows the fit wrongly predicts positive (target 0) and
refit, a few times. For a unit that really is ReLU(linear(inputs)) this
recovers it exactly, which is why it scores ≈100% on MLP first-layer units:
it copies the weights, and its parameter count (one weight per feature per
unit) says so.
"""

import torch
import torch.nn.functional as F

FEATURE_BUDGET = 1200  # features per position for conv targets
ROW_BUDGET = 30_000_000  # rows × features held at once (float64)
REFITS = 4
SEED = 0
CHUNK = 256  # examples per feature-building step


def _features(inputs, names, target_shape, k):
    """Feature matrix `# [batch * positions, n_features]` for the target's grid."""
    batch = inputs[names[0]].shape[0]
    if len(target_shape) == 1:  # dense target
        return torch.cat([inputs[n].reshape(batch, -1) for n in names], dim=1)
    h, w = target_shape[1:]
    maps = []
    for n in names:
        x = inputs[n]
        if x.dim() != 4:
            raise ValueError(f"linear baseline: input '{n}' has shape {tuple(x.shape)}; a conv target needs [b, C, H, W] inputs")
        if x.shape[-2] > h:
            x = F.adaptive_max_pool2d(x, (h, w))
        elif x.shape[-2] < h:
            x = F.interpolate(x, size=(h, w), mode="nearest")
        maps.append(x)
    grid = torch.cat(maps, dim=1)  # [b, C_total, h, w]
    patches = F.unfold(grid, kernel_size=k, padding=k // 2)  # [b, C_total*k*k, h*w]
    return patches.transpose(1, 2).reshape(batch * h * w, -1)


def _kernel(inputs, names, target_shape):
    if len(target_shape) == 1:
        return 0
    channels = sum(inputs[n].shape[1] for n in names)
    return 3 if channels * 9 <= FEATURE_BUDGET else 1


def _solve(x, y, rows):
    """Least squares on the chosen rows: min ‖X_r w − y_r‖², minimum-norm solution."""
    xr, yr = x[rows], y[rows]
    gram = xr.T @ xr
    gram += 1e-9 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.lstsq(gram, xr.T @ yr, driver="gelsd").solution


def _design(target, inputs, names, target_shape, k):
    """Rows of (features + bias column, targets), built CHUNK examples at a time and subsampled
    uniformly (seeded) to at most ROW_BUDGET / n_features rows, so memory stays bounded."""
    n, n_units = target.shape[:2]
    positions = 1 if len(target_shape) == 1 else target_shape[1] * target_shape[2]
    generator = torch.Generator().manual_seed(SEED)
    xs, ys = [], []
    keep_rate = None
    for start in range(0, n, CHUNK):
        x = _features({m: inputs[m][start : start + CHUNK] for m in names}, names, target_shape, k)
        y = target[start : start + CHUNK].movedim(1, -1).reshape(-1, n_units)  # [rows, n_units]
        if keep_rate is None:
            keep_rate = min(1.0, (ROW_BUDGET // (x.shape[1] + 1)) / (n * positions))
        if keep_rate < 1.0:
            keep = torch.rand(len(x), generator=generator) < keep_rate
            x, y = x[keep], y[keep]
        xs.append(torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1))
        ys.append(y.double())
    return torch.cat(xs), torch.cat(ys)


def fit(target, task, **inputs):
    names = sorted(inputs)
    k = _kernel(inputs, names, task.target_shape)
    x, y_all = _design(target, inputs, names, task.target_shape, k)  # [rows, n_features + 1], [rows, n_units]
    n_units = target.shape[1]
    weights = []
    for u in range(n_units):
        y = y_all[:, u]
        active = y > 0
        if int(active.sum()) < 10:
            weights.append(_solve(x, y, torch.ones_like(active)))
            continue
        rows = active.clone()
        for _ in range(REFITS):
            w = _solve(x, torch.where(active, y, torch.zeros_like(y)), rows)
            wrong = (~active) & (x @ w > 0)
            if bool((rows == (active | wrong)).all()):
                break
            rows = active | wrong
        weights.append(w)
    return {"weight": torch.stack(weights).float(), "kernel": torch.tensor([k])}  # weight: [n_units, n_features + 1]


def replace(params, task, **inputs):
    names = sorted(inputs)
    x = _features(inputs, names, task.target_shape, int(params["kernel"][0]))
    weight = params["weight"]
    pre = x @ weight[:, :-1].T + weight[:, -1]  # [rows, n_units]
    out = torch.relu(pre)
    batch = inputs[names[0]].shape[0]
    if len(task.target_shape) == 1:
        return out.reshape(batch, -1).contiguous()
    h, w = task.target_shape[1:]
    return out.reshape(batch, h, w, -1).permute(0, 3, 1, 2).contiguous()
