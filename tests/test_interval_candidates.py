"""The candidate recovery intervals of `benchmarks/interval_candidates.py`, against direct computations: the pivot's
moments as polynomials in R₀ against the moments of u = N − R₀ D computed from the examples, Satterthwaite's
degrees of freedom, the accepted set, and the share of datasets with no failing example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats as sps

from benchmark import intervals
from test_coverage_models import _load

candidates = _load("interval_candidates")
gate = _load("coverage_gate")


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D, U = N − D) `# [n]` from the sparse model with 10% at −4."""
    c, a, p = gate.with_recovery(gate._sparse_hurt, gate.ten_percent_at_minus4)(np.random.default_rng(seed), n)
    return a - p, a - c, c - p


def test_pivot_moments_are_the_moments_of_u_at_each_r0():
    num, den, gap = _data()
    r0 = np.array([-3.0, 0.2, 0.5, 1.0, 4.0])
    mean, m2, m3, m4 = candidates._pivot_moments(num, den, gap, 1.0 - r0)
    for k, r in enumerate(r0):
        u = num - r * den  # [n]
        e = u - u.mean()
        assert mean[k] == pytest.approx(u.mean(), rel=1e-9, abs=1e-12)
        assert m2[k] == pytest.approx(np.mean(e**2), rel=1e-9)
        assert m3[k] == pytest.approx(np.mean(e**3), rel=1e-7, abs=1e-12)
        assert m4[k] == pytest.approx(np.mean(e**4), rel=1e-9)


def test_satterthwaite_df_is_n_for_normal_data_and_small_when_few_examples_carry_the_variance():
    rng = np.random.default_rng(1)
    e = rng.normal(size=200_000)
    m2, m4 = np.mean(e**2), np.mean(e**4)
    assert candidates._satterthwaite_df(np.array([m2]), np.array([m4]), len(e))[0] == pytest.approx(len(e), rel=0.02)
    spikes = np.zeros(10_000)
    spikes[:3] = 1.0  # three examples carry everything: ν = 2n / (κ − 1) with κ = n/3 exactly for these moments
    e = spikes - spikes.mean()
    nu = candidates._satterthwaite_df(np.array([np.mean(e**2)]), np.array([np.mean(e**4)]), len(e))[0]
    kurtosis = np.mean(e**4) / np.mean(e**2) ** 2
    assert nu == pytest.approx(2 * len(e) / (kurtosis - 1)) and 5 < nu < 7
    # a constant pivot (an exact copy) has nothing to estimate: ν = n
    assert candidates._satterthwaite_df(np.array([0.0]), np.array([0.0]), 50)[0] == 50


def test_satterthwaite_at_the_estimate_is_fieller_at_students_critical_value():
    num, den, gap = _data(900, seed=3)
    n = len(num)
    r_hat = num.mean() / den.mean()
    e = num - r_hat * den
    e = e - e.mean()
    nu = 2 * n / (np.mean(e**4) / np.mean(e**2) ** 2 - 1)
    c = sps.t.ppf(0.975, nu)
    # Fieller at critical value c, by the quadratic written out (module docstring of benchmark.intervals)
    k = c * c / (n - 1)
    d_bar, n_bar = den.mean(), num.mean()
    v = np.cov(np.vstack([num, den]), bias=True)
    a_, b_, c_ = d_bar**2 - k * v[1, 1], n_bar * d_bar - k * v[0, 1], n_bar**2 - k * v[0, 0]
    root = math.sqrt(b_ * b_ - a_ * c_)
    low, high = candidates.satterthwaite_at_estimate(num, den, gap)
    assert low == pytest.approx((b_ - root) / a_, rel=1e-6) and high == pytest.approx((b_ + root) / a_, rel=1e-6)
    fieller = intervals.fieller_ratio_interval(num, den, 0.95, gap=gap)
    assert low < fieller[0] and high > fieller[1]  # ν is small here: wider than Fieller


@pytest.mark.parametrize("hall", [False, True])
def test_the_grid_interval_is_where_the_test_accepts(hall):
    """Inside the returned interval every R₀ is accepted, just outside it is rejected, each decided from u itself."""
    num, den, gap = _data(900, seed=5)
    n = len(num)
    low, high = candidates.grid_interval(num, den, gap, hall=hall)

    def accepted(r0: float) -> bool:
        u = num - r0 * den
        e = u - u.mean()
        t = math.sqrt(n) * u.mean() / u.std(ddof=1)
        nu = 2 * n / (np.mean(e**4) / np.mean(e**2) ** 2 - 1)
        if hall:
            gamma = np.mean(e**3) / np.mean(e**2) ** 1.5
            a = gamma / (3 * math.sqrt(n))
            t = t + a * t * t + a * a * t**3 / 3 + gamma / (6 * math.sqrt(n))
        return abs(t) <= special.stdtrit(nu, 0.975)

    step = (high - low) / 50
    assert all(accepted(r) for r in np.linspace(low, high, 11))
    assert not accepted(low - 2 * step) and not accepted(high + 2 * step)


def test_no_failing_example_share_matches_simulation():
    """q = P(no example is both hurt and at −4), against 4,000 simulated datasets of 200 (binomial SE ≈ 0.005)."""
    rng = np.random.default_rng(11)
    none = 0
    for _ in range(4000):
        c, d = gate._sparse_hurt(rng, 200)
        at_minus4 = rng.random(200) < 0.1
        none += not np.any((d > 0) & at_minus4)
    assert none / 4000 == pytest.approx(candidates.no_failing_example_share(200), abs=0.02)
