"""Closed-form confidence intervals for the effect and the recovery: no resampling, so no Monte Carlo error.

Two intervals, both functions of the data alone (the same data give the same digits, whatever the seed):

**The effect** E = mean D, with D_i = L_ablated,i − L_clean,i, gets Hall's (1992) skewness-corrected
studentized interval. With n examples, sample mean D̄, SD s (ddof 1), skewness γ = m3 / m2^(3/2)
(central sample moments m_k) and T = √n (D̄ − E) / s, Hall's transform

    g(T) = T + a T² + a² T³ / 3 + b,    a = γ / (3 √n),  b = γ / (6 √n)

is monotone ((1 + aT)² ≥ 0) and nearly normal; inverting |g(T)| ≤ z = Φ⁻¹(1 − α/2) gives

    E ∈ [D̄ − g⁻¹(z) s/√n,  D̄ − g⁻¹(−z) s/√n],    g⁻¹(y) = (∛(1 + 3a(y − b)) − 1) / a.

With a right-skewed D (a few examples hurt a lot) it reaches further up than the t-interval does.

**The recovery** R = mean N / mean D, with N_i = L_ablated,i − L_replaced,i, gets Fieller's interval:
the R₀ that a t-test of mean(N − R₀ D) = 0 does not reject. With centred second moments
v_XY = mean((X − X̄)(Y − Ȳ)) and k = z² / (n − 1), these solve A R₀² − 2 B R₀ + C ≤ 0 with

    A = D̄² − k v_DD,   B = N̄ D̄ − k v_ND,   C = N̄² − k v_NN,
    R ∈ [(B − √(B² − AC)) / A,  (B + √(B² − AC)) / A]      when A > 0.

A > 0 says exactly that D̄ differs from 0 by more than z of its standard errors; otherwise the set
is unbounded and the recovery has no finite interval.

B² − AC is not computed as written: where R is near 1 and the CI is narrow (modadd-p113: N̄ ≈ D̄ ≈ 8
nats, 1 − R ≈ 1e-8) its two terms agree to 16 digits and rounding leaves nothing. Expanded, with
U = N − D (= C − P, the replacement's gain over the clean model, passed in exactly where known),

    B² − AC = k · mean((D̄ (U − Ū) − Ū (D − D̄))²) − k² · (v_UU v_DD − v_UD²),

a sum with no large cancelling terms (the second factor is the covariance determinant of (N, D),
unchanged when N is replaced by N − D). The same interval, in every digit that survives. The coverage of both, on skewed and sparse
data, is measured in `benchmarks/coverage_gate.py` (README: Statistics).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def critical_value(level: float) -> float:
    """z = Φ⁻¹((1 + level) / 2), the two-sided normal critical value."""
    return float(special.ndtri(0.5 + level / 2))


def _hall_inverse(y: float, a: float, b: float) -> float:
    """g⁻¹(y) = (∛(1 + 3a(y − b)) − 1) / a, and y − b as a → 0."""
    if abs(a) < 1e-12:
        return y - b
    return (float(np.cbrt(1.0 + 3.0 * a * (y - b))) - 1.0) / a


def skew_corrected_mean_interval(x: np.ndarray, level: float) -> tuple[float, float]:
    """Hall's (1992) skewness-corrected interval for the mean of `x` `# [n]` (module docstring).

    Every x equal: (x̄, x̄). n ≥ 2.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    mean = float(x.mean())
    d = x - mean
    m2 = float(d @ d) / n
    if m2 <= 0.0:
        return mean, mean
    se = math.sqrt(m2 * n / (n - 1)) / math.sqrt(n)
    gamma = float(np.mean(d**3)) / m2**1.5
    a, b = gamma / (3.0 * math.sqrt(n)), gamma / (6.0 * math.sqrt(n))
    z = critical_value(level)
    return mean - _hall_inverse(z, a, b) * se, mean - _hall_inverse(-z, a, b) * se


def fieller_ratio_interval(num: np.ndarray, den: np.ndarray, level: float,
                           gap: np.ndarray | None = None) -> tuple[float, float] | None:
    """Fieller's interval for mean(num) / mean(den), paired `# [n]` (module docstring); None when unbounded (A ≤ 0).

    `gap` = num − den `# [n]`, when the caller has it more exactly than that subtraction (recovery: C − P from
    the losses themselves); else it is computed. The discriminant is the expanded form (module docstring), never
    B² − AC; one that rounding makes slightly negative is read as 0 (a replacement whose N is an exact multiple
    of D, e.g. `linear` with N = D, has B² = AC and the interval [R, R]).
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    gap = num - den if gap is None else np.asarray(gap, dtype=np.float64)
    n = len(num)
    n_bar, d_bar, u_bar = float(num.mean()), float(den.mean()), float(gap.mean())
    cn, cd, cu = num - n_bar, den - d_bar, gap - u_bar
    v_dd, v_nd = float(cd @ cd) / n, float(cn @ cd) / n
    v_uu, v_ud = float(cu @ cu) / n, float(cu @ cd) / n
    k = critical_value(level) ** 2 / (n - 1)
    a = d_bar * d_bar - k * v_dd
    if not a > 0.0:
        return None
    b = n_bar * d_bar - k * v_nd
    spread = d_bar * cu - u_bar * cd  # [n]: D̄ (U − Ū) − Ū (D − D̄)
    discriminant = k * float(spread @ spread) / n - k * k * (v_uu * v_dd - v_ud * v_ud)
    root = math.sqrt(max(discriminant, 0.0))
    return (b - root) / a, (b + root) / a
