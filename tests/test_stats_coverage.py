"""Coverage of the recovery (Fieller) and effect (Hall) intervals on simulated data with a known truth.

Each synthetic dataset mimics per-example losses: right-skewed clean losses, a
skewed, heteroscedastic ablation effect correlated with the clean loss, and a
replacement that removes a known fraction RHO of the effect plus skewed
zero-mean noise:

    C_i = LogNormal(0, 0.8)
    E_i = Gamma(shape 0.5, scale 2) * (0.5 + 0.5 * C_i / E[C])     E[E_i] = 1 (Gamma independent of C)
    A_i = C_i + E_i
    P_i = C_i + (1 - RHO) E_i + 0.5 (Exp(1) - 1)                 noise mean 0

so the true effect is E[A - C] = 1 and the true recovery is
(E[A] - E[P]) / (E[A] - E[C]) = RHO exactly. Seeded, hence deterministic.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark import stats

RHO = 0.6
TRUE_EFFECT = 1.0
N_DATASETS = 1000
N_EXAMPLES = 400


def simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = rng.lognormal(0.0, 0.8, n)
    mean_c = np.exp(0.8**2 / 2)  # E[LogNormal(0, 0.8)]
    e = rng.gamma(0.5, 2.0, n) * (0.5 + 0.5 * c / mean_c)
    p = c + (1 - RHO) * e + 0.5 * (rng.exponential(1.0, n) - 1.0)
    return c, c + e, p


@pytest.mark.slow
def test_coverage_recovery_and_effect():
    rng = np.random.default_rng(20240601)
    hit_r = hit_e = undefined = 0
    widths = []
    t0 = time.perf_counter()
    for k in range(N_DATASETS):
        c, a, p = simulate(rng, N_EXAMPLES)
        s = stats.recovery_stats(c, {"zero": a}, p, level=0.95)["zero"]
        hit_e += s.effect_low <= TRUE_EFFECT <= s.effect_high
        if not s.defined:
            undefined += 1  # counted as a miss for the recovery
            continue
        hit_r += s.recovery_low <= RHO <= s.recovery_high
        widths.append(s.recovery_high - s.recovery_low)
    elapsed = time.perf_counter() - t0
    cov_r, cov_e = hit_r / N_DATASETS, hit_e / N_DATASETS
    print(
        f"\n95% closed-form coverage over {N_DATASETS} datasets (n={N_EXAMPLES}): "
        f"recovery {cov_r:.3f}, effect {cov_e:.3f}; undefined {undefined}; "
        f"median recovery CI width {np.median(widths):.3f}; {elapsed:.1f} s"
    )
    assert undefined <= N_DATASETS // 200
    # binomial SD of a coverage estimate at 0.95 over 1000 datasets is 0.007; 0.93..0.97 is ~3 SD
    assert 0.93 <= cov_r <= 0.97, cov_r
    assert 0.93 <= cov_e <= 0.97, cov_e


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="Integrity round 2, known: Fieller under-covers uneven recovery on sparse data")
def test_recovery_covers_the_issues_uneven_recovery_on_sparse_data():
    """The Integrity issue's uneven recovery (ρ = −4 on a random 10% of examples, 1 elsewhere: truth 0.5 exactly) on
    `benchmarks/coverage_gate.py`'s sparse, heavy-tailed model at n = 900: 300 datasets must cover ≥ 0.93. Fieller
    covers about 0.85 (docs/statistics.md); strict xfail, so fixing the interval makes this test fail until the
    marker goes."""
    from test_coverage_models import gate

    model = gate.MODELS["sparse, heavy-tailed: 10% at −4"][0]
    rng = np.random.default_rng(20261125 + 900)
    hits = defined = 0
    for _ in range(300):
        c, a, p = model(rng, 900)
        s = stats.recovery_stats(c, {"zero": a}, p)["zero"]
        if s.defined:
            defined += 1
            hits += s.recovery_low <= 0.5 <= s.recovery_high
    assert defined >= 290 and hits / defined >= 0.93
