"""How far each figure of a record may move when its per-example losses move by float32 noise (`verify`).

Re-scoring on another CPU (vector width, BLAS, thread count) moves each float32 per-example value x_i (losses,
KLs) by up to its noise floor δ_i (`noise_floors`: `stats.loss_noise` of a loss, LOSS_NOISE_ULPS · ε₃₂ ·
(max(1, |L_i|) + min(1, |L_i|) · M_i) with M_i the example's logit scale, and `stats.kl_noise` of a KL, with the
logit scales of both its distributions; without the scales, M = 0). A figure F computed from them
(mean, effect, recovery, their intervals, p-values) may then move by up to, to first order,

    |ΔF| ≤ Σ_columns Σ_i |∂F/∂x_i| δ_i.

The figures here are smooth functions of a few sample moments (means, variances, covariances, skewness) of the
columns and their differences Z, so h_i = ∂F/∂x_i · δ_i lies in the span of the basis φ_j(i): 1, Z_i − Z̄ and
(Z_i − Z̄)² − mean (Z the column and its differences with the others of its kind). Perturb and recompute: the
central differences s_j = (F(x + δ ⊙ φ_j) − F(x − δ ⊙ φ_j)) / 2 = Σ_i h_i φ_j(i) give h = Φ (ΦᵀΦ)⁻¹ s, and

    tol(F) = SAFETY · Σ_columns Σ_i |h_i|,

twice the first-order worst case over every per-example error within the noise floor (for a mean, exactly
SAFETY · mean δ; the losses' actual changes between CPUs are far smaller, random in sign).

A figure that is None or a boolean (`defined`) on one side may differ only if some perturbation changes it too
(it sits on the boundary of its definition). Figures that do not come from these arrays (activation fidelity,
accuracy and McNemar from the exact per-example correctness) keep a fixed tolerance (`verify.py`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import stats
from ..tasks import ABLATIONS

SAFETY = 2.0
LOSSES = ("loss.clean", *(f"loss.{a}" for a in ABLATIONS), "loss.replaced")
KLS = ("kl", *(f"kl.{a}" for a in ABLATIONS))


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value flattened to its leaves, keyed by path: `{"a": {"b": [1, 2]}}` → `{"a.b[0]": 1, "a.b[1]": 2}`."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(leaves(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def noise_floors(arrays: dict[str, np.ndarray], scales: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The noise floor δ `# [n]` of each per-example loss and KL column (module docstring), at `arrays`' values, from
    the logit scale of each condition `scales` (`ScoreResult.scales`: clean, the ablations, replaced; None: M = 0):
    loss.<c> with M_c; kl (clean ‖ replaced) with M_clean + M_replaced; kl.<a> with M_clean + M_a."""
    m = scales or {}

    def both(a: str, b: str) -> np.ndarray | None:
        return None if a not in m or b not in m else np.asarray(m[a], dtype=np.float64) + np.asarray(m[b], dtype=np.float64)

    floors = {f"loss.{c}": stats.loss_noise(arrays[f"loss.{c}"], m.get(c)) for c in ("clean", *ABLATIONS, "replaced")}
    floors["kl"] = stats.kl_noise(arrays["kl"], both("clean", "replaced"))
    floors.update({f"kl.{a}": stats.kl_noise(arrays[f"kl.{a}"], both("clean", a)) for a in ABLATIONS})
    return floors


def loss_figures(arrays: dict[str, np.ndarray], primary: str,
                 scales: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Every figure of `results` that the per-example losses and KLs determine, keyed as `results`' JSON leaves
    (`primary.recovery_low`, `recovery.zero.effect`, `kl_recovery.mean.recovery`, `p_at_least_clean`, …);
    `scales`: the logit scales `p_at_least_clean`'s noise floor takes (None: M = 0)."""
    x = {k: np.asarray(arrays[k], dtype=np.float64) for k in (*LOSSES, *KLS)}
    clean, replaced = x["loss.clean"], x["loss.replaced"]
    m = scales or {}
    recovery = stats.recovery_stats(clean, {a: x[f"loss.{a}"] for a in ABLATIONS}, replaced)
    kl = stats.kl_recovery_stats({a: x[f"kl.{a}"] for a in ABLATIONS}, x["kl"])
    return leaves({
        "primary": {"ablation": primary, **recovery[primary].to_dict()},
        "recovery": {a: r.to_dict() for a, r in recovery.items()},
        "kl_recovery": {a: r.to_dict() for a, r in kl.items()},
        "p_at_least_clean": stats.p_at_least_clean(clean, replaced, m.get("clean"), m.get("replaced")),
        "mean_loss": {k.removeprefix("loss."): float(x[k].mean()) for k in LOSSES},
        "mean_kl_clean_replaced": float(x["kl"].mean()),
    })


def _basis(family: dict[str, np.ndarray], column: str) -> np.ndarray:
    """The functions of the example that ∂F/∂column is a combination of `# [n, k]`: 1, and for Z = the column and
    its differences with the others of its family, Z − Z̄ and (Z − Z̄)² − mean((Z − Z̄)²), each scaled to max |·| = 1."""
    x = family[column]
    parts = [np.ones_like(x)]
    for other in [None, *(k for k in family if k != column)]:
        z = x if other is None else x - family[other]
        centred = z - z.mean()
        parts += [centred, centred**2 - (centred**2).mean()]
    scaled = [v / m for v in parts if (m := float(np.abs(v).max())) > 0]
    return np.stack(scaled, axis=1)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def figure_tolerances(arrays: dict[str, np.ndarray], primary: str,
                      scales: dict[str, np.ndarray] | None = None) -> tuple[dict[str, float], set[str]]:
    """(tolerance of each numeric figure of `loss_figures`, the figures that some perturbation changes in kind:
    None ↔ a number, or a boolean flipped). Computed at `arrays`, with the noise floors of the logit scales
    `scales` (module docstring)."""
    x = {k: np.asarray(arrays[k], dtype=np.float64) for k in (*LOSSES, *KLS)}
    floors = noise_floors(x, scales)
    base = loss_figures(x, primary, scales)
    bound = {k: 0.0 for k, v in base.items() if _numeric(v)}
    boundary: set[str] = set()
    for family in (LOSSES, KLS):
        columns = {k: x[k] for k in family}
        for column in family:
            noise = floors[column]  # [n]
            phi = _basis(columns, column)  # [n, k]
            slopes = {key: np.zeros(phi.shape[1]) for key in bound}  # F'(δ ⊙ φ_j), central differences
            for j in range(phi.shape[1]):
                up = loss_figures({**x, column: x[column] + noise * phi[:, j]}, primary, scales)
                down = loss_figures({**x, column: x[column] - noise * phi[:, j]}, primary, scales)
                for key in base:
                    if key in bound and _numeric(up[key]) and _numeric(down[key]):
                        slopes[key][j] = (up[key] - down[key]) / 2
                    elif up[key] != base[key] or down[key] != base[key]:
                        boundary.add(key)
            # h_i = ∂F/∂x_i · δ_i = Σ_j β_j φ_ij with Φᵀ h = slopes: least squares, then Σ_i |h_i|
            gram_inverse = np.linalg.pinv(phi.T @ phi)  # [k, k]
            for key, slope in slopes.items():
                if key not in boundary and slope.any():
                    bound[key] += float(np.abs(phi @ (gram_inverse @ slope)).sum())
    return {k: SAFETY * v for k, v in bound.items() if k not in boundary}, boundary
