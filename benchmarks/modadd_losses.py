"""The real per-example losses behind `coverage_gate.py`'s modadd data models: `benchmarks/data/modadd_losses.npz`.

    python benchmarks/modadd_losses.py        (about 35 s; rewrites the .npz)

Two targets of `modadd-p113` (the committed checkpoint), on the eval split `test` (8,939 pairs, sorted by pair number):
- **mlp**: all 512 neurons of `mlp_hook_post`;
- **cluster**: the largest key-frequency cluster, chosen on the FIT split `train` (3,830 pairs) only. Per neuron j
  and frequency k = 1..56 (w = 2πk/113), least squares of its activation on the 9 terms

      1, cos(wa), sin(wa), cos(wb), sin(wb), cos(wa)cos(wb), cos(wa)sin(wb), sin(wa)cos(wb), sin(wa)sin(wb)

  gives R²_jk = 1 − SS_res / SS_tot; neuron j belongs to the cluster of k_j = argmax_k R²_jk when
  max_k R²_jk ≥ 0.85. A cluster is the neurons sharing k_j.

For each target the harness's own baseline (`harness.baseline.load_or_compute`, no cache) gives `loss.clean` and
`loss.zero` `# [8939]` float64, stored as `<target>_clean`, `<target>_zero`; with them `cluster_k`, `cluster_units`
and the checkpoint's sha256. Committed (96 kB) so that the coverage gate needs numpy only;
`tests/test_coverage_models.py` recomputes the zero ablation from the checkpoint and checks the file against it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "benchmarks" / "data" / "modadd_losses.npz"
R2_MIN = 0.85


def fourier_terms(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The 9 terms of frequency k at pairs (a, b) `# [n]` (module docstring): `# [n, 9]` float64."""
    w = 2 * np.pi * k / 113
    ca, sa, cb, sb = np.cos(w * a), np.sin(w * a), np.cos(w * b), np.sin(w * b)
    return np.stack([np.ones_like(ca), ca, sa, cb, sb, ca * cb, ca * sb, sa * cb, sa * sb], axis=1)


def best_frequency(tokens: np.ndarray, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron, the frequency k = 1..56 whose 9 terms fit `acts # [n, m]` best, and that fit's R² (a neuron with
    no variance gets R² = −inf): `# [m]` int, `# [m]` float."""
    a, b = tokens[:, 0].astype(np.float64), tokens[:, 1].astype(np.float64)
    acts = acts.astype(np.float64)
    ss_tot = ((acts - acts.mean(0)) ** 2).sum(0)  # [m]
    ss = (acts**2).sum(0)  # [m]
    best_r2, best_k = np.full(acts.shape[1], -np.inf), np.zeros(acts.shape[1], dtype=np.int64)
    for k in range(1, 113 // 2 + 1):
        q, _ = np.linalg.qr(fourier_terms(a, b, k))  # [n, 9], orthonormal columns spanning the 9 terms
        ss_res = ss - ((q.T @ acts) ** 2).sum(0)  # least squares' residual: |y|² − |Qᵀy|²
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), -np.inf)
        better = r2 > best_r2
        best_r2[better], best_k[better] = r2[better], k
    return best_k, best_r2


def clusters(model, fit_tokens) -> dict[int, tuple[int, ...]]:
    """The key-frequency clusters of `mlp_hook_post` on the fit pairs: {k: units}, by the rule above."""
    import torch

    with torch.no_grad():
        acts = model.run(fit_tokens, until="mlp_hook_post").numpy()  # [n_fit, 512]
    k, r2 = best_frequency(fit_tokens.numpy(), acts)
    chosen = r2 >= R2_MIN
    return {int(f): tuple(int(u) for u in np.flatnonzero(chosen & (k == f))) for f in np.unique(k[chosen])}


def main() -> None:
    from helpers import modadd_task

    from benchmark.data.modadd import open_split
    from benchmark.harness.baseline import load_or_compute
    from benchmark.harness.context import prepare

    started = time.perf_counter()
    mlp = prepare(modadd_task("mlp_hook_post", tuple(range(512))))
    found = clusters(mlp.model, open_split("train").inputs)
    k = max(found, key=lambda f: (len(found[f]), -f))
    print("clusters (k: size):", {f: len(u) for f, u in found.items()}, f"-> the largest, k = {k}")
    arrays: dict[str, np.ndarray] = {"cluster_k": np.array(k), "cluster_units": np.array(found[k]),
                                     "checkpoint_sha256": np.array(mlp.checkpoint_sha256)}
    for name, ctx in (("mlp", mlp), ("cluster", prepare(modadd_task("mlp_hook_post", found[k])))):
        baseline = load_or_compute(ctx, use_cache=False)
        arrays[f"{name}_clean"], arrays[f"{name}_zero"] = baseline.loss("clean"), baseline.loss("zero")
    OUT.parent.mkdir(exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} bytes) in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
