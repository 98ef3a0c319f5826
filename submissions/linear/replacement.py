"""The linear baseline: each unit as ReLU(w · features + b), w fitted by least squares; sequence targets as plain
least squares at every position.

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

Sequence targets (a language model's units at every position: neurons `# [b, T, n_units]`, a head's output
`# [b, T, n_heads, e]`). Recognised by the inputs, not the model's name: target_shape = (T, …) and some input is
token ids `# [b, T]` (int64) or a vector per position `# [b, T, d]` with the same T. Rows are (example, position)
pairs (b, t), and

    φ(b, t) = [onehot₆₅(tokens[b, t]) ; h¹[b, t] ; h²[b, t] ; … ; 1]      (inputs in sorted name order)
    ŷ(b, t) = W φ(b, t),   W = argmin_W Σ_{(b,t) ∈ R} ‖W φ(b, t) − y(b, t)‖²

with y(b, t) every target value at position t (n_units for neurons, n_heads·e for heads) and R every row, or a
seeded uniform subsample of ROW_BUDGET / (n_features + 1) of them. Plain least squares, no ReLU: these units are GELU
neurons (negative below zero) and attention outputs (signed), so nothing is known to be clipped. Attention patterns
`# [b, H, T, T]` are not features: row t of a pattern is a distribution over the earlier positions k ≤ t, not a
property of position t, and what a head makes of it (Σ_k A_tk v_k) is bilinear in the pattern and the other
positions' values, beyond a linear map of position t's features. Any other input shape is refused (ValueError).
"""

import math

import torch
import torch.nn.functional as F

FEATURE_BUDGET = 1200  # features per position for conv targets
ROW_BUDGET = 30_000_000  # rows × features held at once (float64)
REFITS = 4
SEED = 0
CHUNK = 256  # examples per feature-building step
VOCAB = 65  # token ids of a sequence target's inputs are one-hot over this many (shakespeare-char's characters)


def _sequence_length(inputs, target_shape):
    """T when the target is a sequence target (module docstring), else None."""
    if len(target_shape) < 2:
        return None
    t = target_shape[0]
    for x in inputs.values():
        token_ids = x.dim() == 2 and not x.is_floating_point()
        if (token_ids or x.dim() == 3) and x.shape[1] == t:
            return t
    return None


def _sequence_features(inputs, names, t):
    """φ without the bias column `# [batch * T, n_features]`: token one-hots and every per-position vector."""
    batch = inputs[names[0]].shape[0]
    parts = []
    for n in names:
        x = inputs[n]
        if x.dim() == 2 and not x.is_floating_point() and x.shape[1] == t:  # tokens [b, T]
            if int(x.min()) < 0 or int(x.max()) >= VOCAB:
                raise ValueError(f"linear baseline: input '{n}' has token ids outside 0..{VOCAB - 1}; the one-hot "
                                 f"features cover {VOCAB} characters")
            parts.append(F.one_hot(x, VOCAB).float())  # [b, T, 65]
        elif x.dim() == 3 and x.shape[1] == t:  # a vector per position [b, T, d]
            parts.append(x.float())
        elif x.dim() == 4 and x.shape[-2:] == (t, t):  # an attention pattern [b, H, T, T]: not a feature of t
            continue
        else:
            raise ValueError(f"linear baseline: input '{n}' has shape {tuple(x.shape)}; a sequence target of {t} "
                             f"positions needs token ids [b, {t}], vectors [b, {t}, d] or patterns [b, H, {t}, {t}]")
    return torch.cat(parts, dim=2).reshape(batch * t, -1)


def _features(inputs, names, target_shape, k):
    """Feature matrix `# [batch * positions, n_features]` for the target's grid."""
    batch = inputs[names[0]].shape[0]
    if len(target_shape) == 1:  # dense target
        return torch.cat([inputs[n].reshape(batch, -1) for n in names], dim=1)
    if len(target_shape) != 3:
        raise ValueError(f"linear baseline: target shape {tuple(target_shape)} is neither dense [n_units] nor conv "
                         f"[n_units, H, W], and no input is token ids [b, {target_shape[0]}] or vectors "
                         f"[b, {target_shape[0]}, d] for a sequence target (attention patterns alone are not features)")
    h, w = target_shape[1:]
    maps = []
    for n in names:
        x = inputs[n]
        if x.dim() != 4 or x.shape[-1] * h != x.shape[-2] * w:
            raise ValueError(f"linear baseline: input '{n}' has shape {tuple(x.shape)}; a conv target of {h}×{w} "
                             f"positions needs [b, C, H, W] inputs of the same aspect, a sequence target of "
                             f"{target_shape[0]} positions token ids [b, {target_shape[0]}] or vectors "
                             f"[b, {target_shape[0]}, d] (attention patterns alone are not features)")
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


def _lstsq(xr, yr):
    """min ‖X_r w − y_r‖² through the (slightly regularised) normal equations, minimum-norm solution."""
    gram = xr.T @ xr
    gram += 1e-9 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.lstsq(gram, xr.T @ yr, driver="gelsd").solution


def _solve(x, y, rows):
    """Least squares on the chosen rows: min ‖X_r w − y_r‖², minimum-norm solution."""
    return _lstsq(x[rows], y[rows])


def _design(n, positions, chunk_rows):
    """Rows of (features + bias column, targets), built CHUNK examples at a time (`chunk_rows(start, stop)` gives
    that chunk's features and targets) and subsampled uniformly (seeded) to at most ROW_BUDGET / n_features rows,
    so memory stays bounded."""
    generator = torch.Generator().manual_seed(SEED)
    xs, ys = [], []
    keep_rate = None
    for start in range(0, n, CHUNK):
        x, y = chunk_rows(start, start + CHUNK)
        if keep_rate is None:
            keep_rate = min(1.0, (ROW_BUDGET // (x.shape[1] + 1)) / (n * positions))
        if keep_rate < 1.0:
            keep = torch.rand(len(x), generator=generator) < keep_rate
            x, y = x[keep], y[keep]
        xs.append(torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1))
        ys.append(y.double())
    return torch.cat(xs), torch.cat(ys)


def _fit_sequence(target, inputs, names, t):
    """Plain least squares of every target value at a position on φ (module docstring)."""
    n = target.shape[0]

    def chunk_rows(start, stop):
        x = _sequence_features({m: inputs[m][start:stop] for m in names}, names, t)
        return x, target[start:stop].reshape(len(x), -1)  # [rows, n_features], [rows, n_outputs]

    x, y = _design(n, t, chunk_rows)
    return {"weight": _lstsq(x, y).T.float().contiguous()}  # weight: [n_outputs, n_features + 1]


def fit(target, task, **inputs):
    names = sorted(inputs)
    t = _sequence_length(inputs, task.target_shape)
    if t is not None:
        return _fit_sequence(target, inputs, names, t)
    k = _kernel(inputs, names, task.target_shape)
    n, n_units = target.shape[:2]
    positions = math.prod(task.target_shape[1:])  # 1 for a dense target, H·W for a conv one

    def chunk_rows(start, stop):
        x = _features({m: inputs[m][start:stop] for m in names}, names, task.target_shape, k)
        return x, target[start:stop].movedim(1, -1).reshape(-1, n_units)  # [rows, n_units]

    x, y_all = _design(n, positions, chunk_rows)  # [rows, n_features + 1], [rows, n_units]
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
    weight = params["weight"]
    batch = inputs[names[0]].shape[0]
    t = _sequence_length(inputs, task.target_shape)
    if t is not None:
        x = _sequence_features(inputs, names, t)
        return (x @ weight[:, :-1].T + weight[:, -1]).reshape(batch, *task.target_shape).contiguous()
    x = _features(inputs, names, task.target_shape, int(params["kernel"][0]))
    pre = x @ weight[:, :-1].T + weight[:, -1]  # [rows, n_units]
    out = torch.relu(pre)
    if len(task.target_shape) == 1:
        return out.reshape(batch, -1).contiguous()
    h, w = task.target_shape[1:]
    return out.reshape(batch, h, w, -1).permute(0, 3, 1, 2).contiguous()
