"""The linear baseline for text: every target value at a position as a least-squares linear map of that position's
features (a language model's units at every position: neurons `# [b, T, n_units]`, a head's output
`# [b, T, n_heads, e]`). The image and modular-addition baseline is `submissions/linear`; this one is kept apart so
that the committed records of that one stay current.

Rows are (example, position) pairs (b, t), and

    φ(b, t) = [onehot₆₅(tokens[b, t]) ; h¹[b, t] ; h²[b, t] ; … ; 1]      (inputs in sorted name order)
    ŷ(b, t) = W φ(b, t),   W = argmin_W Σ_{(b,t) ∈ R} ‖W φ(b, t) − y(b, t)‖²

with y(b, t) every target value at position t (n_units for neurons, n_heads·e for heads) and R every row, or a
seeded uniform subsample of ROW_BUDGET / (n_features + 1) of them. Plain least squares, no ReLU: these units are GELU
neurons (negative below zero) and attention outputs (signed), so nothing is known to be clipped. Attention patterns
`# [b, H, T, T]` are not features: row t of a pattern is a distribution over the earlier positions k ≤ t, not a
property of position t, and what a head makes of it (Σ_k A_tk v_k) is bilinear in the pattern and the other
positions' values, beyond a linear map of position t's features. Any other input shape is refused (ValueError).
"""

import torch
import torch.nn.functional as F

ROW_BUDGET = 30_000_000  # rows × features held at once (float64)
SEED = 0
CHUNK = 256  # examples per feature-building step
VOCAB = 65  # token ids are one-hot over this many (shakespeare-char's characters)


def _sequence_length(inputs, target_shape):
    """T: the target's positions, when some input is token ids `# [b, T]` or vectors `# [b, T, d]` (else None)."""
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


def _lstsq(xr, yr):
    """min ‖X_r w − y_r‖² through the (slightly regularised) normal equations, minimum-norm solution."""
    gram = xr.T @ xr
    gram += 1e-9 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.lstsq(gram, xr.T @ yr, driver="gelsd").solution


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


def _length(inputs, target_shape):
    t = _sequence_length(inputs, target_shape)
    if t is None:
        raise ValueError(f"linear-text: target shape {tuple(target_shape)} with inputs "
                         f"{ {n: tuple(x.shape) for n, x in inputs.items()} } is not a sequence target; it needs token "
                         f"ids [b, T] or vectors [b, T, d] (use submissions/linear for images and modular addition)")
    return t


def fit(target, task, **inputs):
    return _fit_sequence(target, inputs, sorted(inputs), _length(inputs, task.target_shape))


def replace(params, task, **inputs):
    names = sorted(inputs)
    weight = params["weight"]  # [n_outputs, n_features + 1]
    batch = inputs[names[0]].shape[0]
    x = _sequence_features(inputs, names, _length(inputs, task.target_shape))
    return (x @ weight[:, :-1].T + weight[:, -1]).reshape(batch, *task.target_shape).contiguous()
