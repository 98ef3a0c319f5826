"""benchmark.stats checked against independent computations (scipy, statsmodels, sklearn, slow loops)."""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.metrics import r2_score
from statsmodels.stats.contingency_tables import mcnemar

from benchmark import intervals, stats

# ----------------------------------------------------------------------------
# helpers


def skewed_losses(n: int, seed: int, rho: float = 0.6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlated, right-skewed per-example losses (clean, ablated, replaced)."""
    rng = np.random.default_rng(seed)
    c = rng.lognormal(0.0, 1.0, n)
    e = rng.gamma(0.5, 2.0, n) * (0.5 + 0.5 * c / c.mean())
    p = c + (1 - rho) * e + 0.5 * (rng.exponential(1.0, n) - 1.0)
    return c, c + e, p


def slow_bootstrap_means(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Reference: one resample at a time, np.mean of the gathered rows."""
    rng = np.random.default_rng(seed)
    n = len(columns)
    out = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        out.append(np.mean(columns[idx], axis=0))
    return np.array(out)


def scipy_bca(data: tuple[np.ndarray, ...], statistic, n_resamples: int, seed: int, level: float = 0.95):
    res = sps.bootstrap(
        data,
        statistic,
        paired=True,
        vectorized=True,
        method="BCa",
        n_resamples=n_resamples,
        confidence_level=level,
        rng=np.random.default_rng(seed),
    )
    return res.confidence_interval.low, res.confidence_interval.high, res.bootstrap_distribution


def ratio_stat(a, p, c, axis=-1):
    return (np.mean(a, axis=axis) - np.mean(p, axis=axis)) / (np.mean(a, axis=axis) - np.mean(c, axis=axis))


def effect_stat(a, c, axis=-1):
    return np.mean(a, axis=axis) - np.mean(c, axis=axis)


# ----------------------------------------------------------------------------
# bootstrap means


@pytest.mark.parametrize("n", [1, 37, 200])
def test_bootstrap_means_match_slow_loop(n):
    cols = np.random.default_rng(5).normal(size=(n, 4)) * [1, 10, 1e3, 1e-3] + [0, 5, -7, 1e4]
    fast = stats.paired_bootstrap_means(cols, 257, seed=11)
    slow = slow_bootstrap_means(cols, 257, seed=11)
    assert fast.shape == (257, 4)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.abs(cols).max())


def test_bootstrap_means_independent_of_chunking(monkeypatch):
    cols = np.random.default_rng(6).normal(size=(101, 3))
    whole = stats.paired_bootstrap_means(cols, 50, seed=3)
    monkeypatch.setattr(stats, "_chunk_rows", lambda n, k: 7)  # 50 = 7 * 7 + 1: many chunks and a ragged one
    chunked = stats.paired_bootstrap_means(cols, 50, seed=3)
    np.testing.assert_allclose(chunked, whole, rtol=1e-13)
    assert not np.allclose(stats.paired_bootstrap_means(cols, 50, seed=4), whole)  # the seed matters


def test_bootstrap_means_are_paired():
    # identical columns must stay identical in every resample (same indices for all columns)
    x = np.random.default_rng(7).normal(size=300)
    boot = stats.paired_bootstrap_means(np.stack([x, x, 2 * x], 1), 100, seed=0)
    np.testing.assert_array_equal(boot[:, 0], boot[:, 1])
    np.testing.assert_allclose(boot[:, 2], 2 * boot[:, 0], rtol=1e-12)


def test_bootstrap_memory_bounded():
    cols = np.random.default_rng(8).normal(size=(50_000, 6))
    tracemalloc.start()
    try:
        # B = 600: an unchunked [B, n] index or count matrix alone would take 240 MB
        stats.paired_bootstrap_means(cols, 600, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"


# ----------------------------------------------------------------------------
# jackknife


def test_jackknife_closed_forms_match_loop():
    c, a, p = skewed_losses(60, seed=1)
    num, den = a - p, a - c
    slow_ratio = np.array([np.mean(np.delete(num, i)) / np.mean(np.delete(den, i)) for i in range(60)])
    slow_ratio_cols = np.array(
        [ratio_stat(np.delete(a, i), np.delete(p, i), np.delete(c, i)) for i in range(60)]
    )
    np.testing.assert_allclose(stats.jackknife_ratio_of_means(num, den), slow_ratio, rtol=1e-11)
    np.testing.assert_allclose(stats.jackknife_ratio_of_means(num, den), slow_ratio_cols, rtol=1e-11)
    slow_mean = np.array([np.mean(np.delete(den, i)) for i in range(60)])
    np.testing.assert_allclose(stats.jackknife_mean(den), slow_mean, rtol=1e-12)


# ----------------------------------------------------------------------------
# BCa against scipy.stats.bootstrap
#
# Both sides are Monte-Carlo estimates with B = 50,000 independent resamples. A
# bootstrap quantile at probability q has standard error about
# sqrt(q (1 - q) / B) / f(x_q); for a near-normal bootstrap distribution with
# standard deviation s this is 0.012 s at q = 0.025, B = 50,000, plus a little from
# the z0 estimate. Measured on the recovery data below: the endpoints' standard
# deviation over 8 seeds is 0.013-0.014 s, so the difference of two independent runs
# has SD ~0.02 s; we allow TOL = 0.08 s (4 SD). So that the check has power, each case
# also asserts that the BCa endpoints differ from the plain percentile ones by more
# than 2 TOL (small, skewed samples, where bias correction and acceleration matter).

B_REF = 50_000
TOL = 0.08


def _bootstrap_sd_and_percentile(boot: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(np.std(boot)), float(lo), float(hi)


def test_recovery_bca_matches_scipy():
    c, a, p = skewed_losses(40, seed=2)
    ours = stats.bootstrap_recovery_stats(c, {"zero": a}, p, n_resamples=B_REF, seed=1)["zero"]
    assert ours.defined and ours.ci_method == "bca"
    lo, hi, boot = scipy_bca((a, p, c), ratio_stat, B_REF, seed=2)
    sd, plo, phi = _bootstrap_sd_and_percentile(boot)
    tol = TOL * sd
    assert ours.recovery == pytest.approx(ratio_stat(a, p, c), rel=1e-12)
    assert abs(ours.recovery_low - lo) < tol, (ours.recovery_low, lo, tol)
    assert abs(ours.recovery_high - hi) < tol, (ours.recovery_high, hi, tol)
    assert max(abs(lo - plo), abs(hi - phi)) > 2 * tol  # BCa is not just the percentile interval here


def test_kl_recovery_bca_matches_scipy():
    """KL recovery 1 − mean K_P / mean K_A, against scipy's BCa on the two KL columns directly."""
    rng = np.random.default_rng(11)
    k_abl = rng.lognormal(-3.0, 1.5, 40)  # sparse, heavy-tailed KL(clean ‖ ablated)
    k_rep = k_abl * (1 - rng.beta(7, 3, 40)) + rng.exponential(0.002, 40)
    ours = stats.bootstrap_kl_recovery_stats({"zero": k_abl}, k_rep, n_resamples=B_REF, seed=1)["zero"]
    assert ours.defined and ours.ci_method == "bca"
    lo, hi, boot = scipy_bca((k_abl, k_rep), lambda a, p, axis=-1: 1 - np.mean(p, axis) / np.mean(a, axis), B_REF, seed=2)
    sd, plo, phi = _bootstrap_sd_and_percentile(boot)
    tol = TOL * sd
    assert ours.recovery == pytest.approx(1 - k_rep.mean() / k_abl.mean(), rel=1e-12)
    assert ours.effect == pytest.approx(k_abl.mean(), rel=1e-12)
    assert abs(ours.recovery_low - lo) < tol, (ours.recovery_low, lo, tol)
    assert abs(ours.recovery_high - hi) < tol, (ours.recovery_high, hi, tol)
    assert max(abs(lo - plo), abs(hi - phi)) > 2 * tol  # BCa is not just the percentile interval here


def test_effect_bca_matches_scipy():
    c, a, p = skewed_losses(25, seed=3)
    ours = stats.bootstrap_recovery_stats(c, {"zero": a}, p, n_resamples=B_REF, seed=5)["zero"]
    lo, hi, boot = scipy_bca((a, c), effect_stat, B_REF, seed=6)
    sd, plo, phi = _bootstrap_sd_and_percentile(boot)
    tol = TOL * sd
    assert abs(ours.effect_low - lo) < tol, (ours.effect_low, lo, tol)
    assert abs(ours.effect_high - hi) < tol, (ours.effect_high, hi, tol)
    assert max(abs(lo - plo), abs(hi - phi)) > 2 * tol


def test_bca_interval_other_level_matches_scipy():
    x = np.random.default_rng(9).lognormal(0, 1.2, 30)
    boot = stats.paired_bootstrap_means(x[:, None], B_REF, seed=0)[:, 0]
    lo, hi = stats.bca_interval(x.mean(), boot, stats.jackknife_mean(x), level=0.8)
    slo, shi, sboot = scipy_bca((x,), lambda v, axis=-1: np.mean(v, axis=axis), B_REF, seed=1, level=0.8)
    tol = TOL * np.std(sboot)
    assert abs(lo - slo) < tol and abs(hi - shi) < tol, ((lo, hi), (slo, shi), tol)


def test_bca_degenerate_cases_do_not_crash():
    # all bootstrap values equal
    assert stats.bca_interval(1.0, np.ones(100), np.ones(10), 0.95) == (1.0, 1.0)
    # every theta* above theta_hat: z0 infinite -> percentile interval
    boot = np.linspace(2.0, 3.0, 101)
    iv = stats.bca_interval_info(1.0, boot, np.arange(10.0), 0.9)
    assert iv.method == "percentile"
    assert (iv.low, iv.high) == pytest.approx(tuple(np.quantile(boot, [0.05, 0.95])))
    # jackknife constant: acceleration undefined -> bias-corrected percentile, finite
    iv = stats.bca_interval_info(2.435, boot, np.full(10, 3.0), 0.9)
    assert iv.method == "bc" and math.isfinite(iv.low) and math.isfinite(iv.high)
    # with a = 0 the BC interval uses alpha_i = Phi(2 z0 +- z)
    z0 = sps.norm.ppf(np.mean(boot < 2.435))
    expect = np.quantile(boot, sps.norm.cdf([2 * z0 - 1.6448536269514722, 2 * z0 + 1.6448536269514722]))
    assert (iv.low, iv.high) == pytest.approx(tuple(expect), rel=1e-12)
    # ratio resamples with a zero denominator (+inf) or 0/0 (NaN): no NaN endpoints
    boot = np.concatenate([np.linspace(0.0, 1.0, 98), [np.inf, np.nan]])
    lo, hi = stats.bca_interval(0.5, boot, np.linspace(0.4, 0.6, 20), 0.95)
    assert 0.0 <= lo < 0.5 and not math.isnan(hi)
    assert stats.Interval(lo, np.inf, "bca").to_dict()["high"] is None  # JSON-safe


# ----------------------------------------------------------------------------
# recovery behaviour


def test_recovery_undefined_when_ablation_changes_nothing():
    c, _, p = skewed_losses(500, seed=4)
    res = stats.recovery_stats(c, {"zero": c.copy()}, p)["zero"]
    assert not res.defined
    assert res.recovery is None and res.recovery_low is None and res.recovery_high is None
    assert res.effect == 0.0 and res.effect_low == 0.0 and res.effect_high == 0.0
    # zero-mean noise: the effect CI straddles 0
    noise = np.random.default_rng(0).normal(0, 1, 500)
    res = stats.recovery_stats(c, {"zero": c + noise - noise.mean()}, p)["zero"]
    assert not res.defined and res.recovery is None
    assert res.effect_low < 0 < res.effect_high
    json.dumps(res.to_dict(), allow_nan=False)


def test_recovery_undefined_when_ablation_lowers_the_loss():
    """A significant negative effect leaves no loss to recover: undefined, not a sign-flipped ratio."""
    c, _, p = skewed_losses(500, seed=6)
    res = stats.recovery_stats(c, {"zero": c - 0.5}, p)["zero"]
    assert res.effect_high < 0
    assert not res.defined and res.recovery is None


def test_recovery_zero_and_one():
    c, a, p = skewed_losses(500, seed=5)
    res = stats.recovery_stats(c, {"zero": a, "mean": a + 0.5}, a.copy())
    z = res["zero"]
    assert z.defined and z.recovery == pytest.approx(0.0, abs=1e-12)
    assert abs(z.recovery_low) < 1e-9 and abs(z.recovery_high) < 1e-9  # replaced == ablated in every resample
    assert z.p_beats_ablation == 0.5  # zero differences: no evidence either way
    m = res["mean"]  # against a different ablation the same replacement recovers 0.5 / (effect + 0.5)
    assert m.recovery == pytest.approx(0.5 / (a.mean() + 0.5 - c.mean()), rel=1e-12)
    assert m.recovery_low < m.recovery < m.recovery_high
    res = stats.recovery_stats(c, {"zero": a}, c.copy())["zero"]
    assert res.recovery == pytest.approx(1.0, abs=1e-12)
    assert res.recovery_low == pytest.approx(1.0, abs=1e-9) and res.recovery_high == pytest.approx(1.0, abs=1e-9)
    assert res.p_beats_ablation < 1e-10


def test_recovery_stats_fields_and_shared_resamples():
    c, a, p = skewed_losses(300, seed=6)
    both = stats.recovery_stats(c, {"zero": a, "mean": a * 1.2}, p)
    alone = stats.recovery_stats(c, {"zero": a}, p)["zero"]
    z = both["zero"]
    assert z == alone  # adding an ablation does not change another's numbers
    assert z.n == 300
    assert z.mean_clean == pytest.approx(c.mean()) and z.mean_replaced == pytest.approx(p.mean())
    assert z.effect == pytest.approx(a.mean() - c.mean())
    assert z.recovery == pytest.approx((a.mean() - p.mean()) / (a.mean() - c.mean()))
    assert z.recovery_low < z.recovery < z.recovery_high
    assert z.p_beats_ablation == pytest.approx(sps.ttest_rel(a, p, alternative="greater").pvalue, rel=1e-9)
    d = z.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(z)}
    json.dumps(d, allow_nan=False)
    # the effect's interval is Hall's on D = A − C, the recovery's Fieller's on (A − P, A − C)
    assert (z.effect_low, z.effect_high) == intervals.skew_corrected_mean_interval(a - c, 0.95)
    assert (z.recovery_low, z.recovery_high) == intervals.fieller_ratio_interval(a - p, a - c, 0.95)
    assert z.ci_method == "fieller"


def test_recovery_stats_user_errors():
    with pytest.raises(stats.StatisticsError):
        stats.recovery_stats([1.0], {"zero": [2.0]}, [1.5])
    with pytest.raises(stats.StatisticsError):
        stats.recovery_stats([1.0, 2.0], {"zero": [2.0, 3.0]}, [1.5, float("nan")])
    with pytest.raises(ValueError):
        stats.recovery_stats([1.0, 2.0], {"zero": [2.0, 3.0, 4.0]}, [1.5, 2.5])


# ----------------------------------------------------------------------------
# t-tests


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_t_test_matches_scipy(alternative, seed):
    rng = np.random.default_rng(seed)
    n = [5, 40, 1000][seed]
    x = rng.normal(0, 1, n)
    y = x + rng.normal(0.1 * (seed - 1), 1, n)
    ours = stats.paired_t_test(x, y, alternative)
    ref = sps.ttest_rel(x, y, alternative=alternative)
    assert ours.t == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    assert ours.df == n - 1


def test_p_at_least_clean_matches_scipy():
    c, a, p = skewed_losses(200, seed=8)
    for rep in (p, c - 0.05 + np.random.default_rng(1).normal(0, 0.2, 200), c + 0.01):
        ref = sps.ttest_rel(c, rep, alternative="greater").pvalue
        assert stats.p_at_least_clean(c, rep) == pytest.approx(ref, rel=1e-9, abs=1e-300)
    assert stats.p_at_least_clean(c, c - 0.1 + np.random.default_rng(2).normal(0, 0.1, 200)) < 1e-6
    assert stats.p_at_least_clean(c, p) > 0.99


def test_t_test_zero_variance():
    x = np.arange(10.0)
    assert stats.paired_t_test(x, x, "greater").p_value == 0.5
    assert stats.paired_t_test(x, x, "two-sided").p_value == 1.0
    assert stats.paired_t_test(x + 1, x, "greater").p_value == 0.0
    assert stats.paired_t_test(x + 1, x, "less").p_value == 1.0
    assert stats.paired_t_test(x + 1, x, "two-sided").p_value == 0.0
    assert stats.p_at_least_clean(x, x) is None  # no difference at all: undefined, not 0.5


def test_p_at_least_clean_is_undefined_on_float32_noise():
    """A near-exact copy: L_replaced = L_clean up to a few float32 ulps (what another CPU's kernels give). The old
    p-value tested that rounding (0.843 on one CPU, 0.674 on another); now it is None. Where a few examples differ
    for real, the noise is 0 and the test runs on the rest."""
    c, _, _ = skewed_losses(10_000, seed=3)
    c = c.astype(np.float32).astype(np.float64)
    ulps = np.random.default_rng(4).integers(-3, 4, c.size)
    noisy = (c + ulps * np.spacing(c.astype(np.float32)).astype(np.float64))
    assert stats.p_at_least_clean(c, noisy) is None
    assert stats.p_at_least_clean(c, c) is None
    real = noisy.copy()
    real[:500] -= 0.05  # 5% of the examples gain 0.05 nats
    d = np.where(np.arange(c.size) < 500, c - real, 0.0)
    ref = sps.ttest_1samp(d, 0.0, alternative="greater").pvalue
    assert stats.p_at_least_clean(c, real) == pytest.approx(ref, rel=1e-9)
    assert stats.loss_noise(np.array([0.5, -3.0]))[1] == 3 * stats.loss_noise(np.array([0.5]))[0]


def test_the_noise_floor_adds_the_logit_scale_weighted_by_the_sensitivity():
    """loss: 16·ε₃₂·(max(1,|L|) + min(1,|L|)·M); KL: the same with min(1, √KL); no scale is M = 0. A confident
    example keeps the old floor, a wrong one with logits of 300 gets 16 ulps of 300 more; p(R ≥ 1) counts a
    difference of 80 ulps of L there as noise (None), which the flat floor took for a signal."""
    unit = stats.LOSS_NOISE_ULPS * stats.EPS32
    x, m = np.array([1e-6, 0.5, 5.0]), np.array([300.0, 300.0, 300.0])
    np.testing.assert_allclose(stats.loss_noise(x), unit * np.array([1, 1, 5]), rtol=1e-15)
    np.testing.assert_allclose(stats.loss_noise(x, m), unit * np.array([1 + 3e-4, 1 + 150, 5 + 300]), rtol=1e-12)
    kl = np.array([1e-4, 0.25, 4.0])
    np.testing.assert_allclose(stats.kl_noise(kl, m), unit * np.array([1 + 3, 1 + 150, 4 + 300]), rtol=1e-12)
    with pytest.raises(ValueError, match="logit scale"):
        stats.loss_noise(x, m[:2])
    rng = np.random.default_rng(5)
    c = rng.uniform(2.0, 6.0, 2000).astype(np.float32).astype(np.float64)  # ablated-like losses, logits ~300
    r = c + 80 * np.spacing(c.astype(np.float32)).astype(np.float64) * rng.choice([-1, 1], c.size)
    assert stats.p_at_least_clean(c, r) is not None
    assert stats.p_at_least_clean(c, r, np.full(c.size, 300.0), np.full(c.size, 300.0)) is None


# ----------------------------------------------------------------------------
# McNemar, accuracy, top-k


def test_mcnemar_matches_statsmodels():
    rng = np.random.default_rng(0)
    cases = [(200, 0.7, 0.72), (30, 0.5, 0.5), (1000, 0.9, 0.85), (12, 0.9, 0.1)]
    for n, pa, pb in cases:
        ca = rng.random(n) < pa
        cb = np.where(rng.random(n) < 0.7, ca, rng.random(n) < pb)
        ours = stats.mcnemar_exact(ca, cb)
        table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
        ref = mcnemar(table, exact=True)
        assert (ours.b, ours.c) == (table[0][1], table[1][0])
        assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    same = rng.random(50) < 0.5
    assert stats.mcnemar_exact(same, same) == stats.McNemarResult(0, 0, 1.0)
    assert stats.mcnemar_exact(torch.tensor(same), torch.tensor(same)).p_value == 1.0


def test_accuracy_and_topk():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 20)).astype(np.float32)
    labels = rng.integers(0, 20, 500)
    for k in (1, 5):
        ref = (torch.topk(torch.tensor(logits), k, dim=1).indices == torch.tensor(labels)[:, None]).any(1).numpy()
        np.testing.assert_array_equal(stats.topk_correct(logits, labels, k), ref)
        np.testing.assert_array_equal(stats.topk_correct(torch.tensor(logits), torch.tensor(labels), k), ref)
    assert stats.topk_correct(logits, labels, 20).all()
    # ties count in the label's favour
    assert stats.topk_correct(np.zeros((3, 4)), np.array([0, 1, 3]), 1).all()


# ----------------------------------------------------------------------------
# KL


def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(2)
    logits_p = rng.normal(0, 3, (50, 10))
    logits_q = logits_p + rng.normal(0, 1, (50, 10))
    lp = torch.log_softmax(torch.tensor(logits_p, dtype=torch.float32), 1)
    lq = torch.log_softmax(torch.tensor(logits_q, dtype=torch.float32), 1)
    p = np.exp(logits_p - logits_p.max(1, keepdims=True))
    q = np.exp(logits_q - logits_q.max(1, keepdims=True))
    ref = np.array([sps.entropy(p[i], q[i]) for i in range(50)])
    np.testing.assert_allclose(stats.per_example_kl(lp, lq), ref, rtol=1e-5, atol=1e-7)  # float32 inputs
    assert stats.per_example_kl(lp, lp) == pytest.approx(np.zeros(50), abs=1e-12)
    # exact zeros in p (log p = -inf): 0 log 0 = 0, no NaN
    with np.errstate(divide="ignore"):
        lp0 = np.log(np.array([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]]))
    lq0 = np.log(np.array([[0.1, 0.3, 0.6], [0.2, 0.7, 0.1]]))
    ref0 = [sps.entropy(np.exp(lp0[i]), np.exp(lq0[i])) for i in range(2)]
    np.testing.assert_allclose(stats.per_example_kl(lp0, lq0), ref0, rtol=1e-12)
    # q = 0 where p > 0: infinite, not NaN
    assert stats.per_example_kl(lq0, lp0)[0] == np.inf


def test_logsumexp_rows_is_scipys_bit_for_bit():
    """`stats.logsumexp_rows` repeats scipy's `special.logsumexp(a, axis=-1, keepdims=True)` operation for operation:
    the same bits (NaN's included) on ties, ±inf, NaN, all -inf rows and every scale, so no KL on the board moves.
    A scipy whose algorithm changes fails here first."""
    from scipy import special

    rng = np.random.default_rng(7)
    for trial in range(120):
        n, c = int(rng.integers(1, 200)), int(rng.integers(1, 100))
        a = rng.normal(scale=[0.01, 1.0, 10.0, 300.0][trial % 4], size=(n, c))
        if trial % 3 == 0:
            a = np.round(a, 1)  # ties at the maximum
        if trial % 5 == 0:
            a[rng.random(a.shape) < 0.2] = -np.inf
        if trial % 7 == 0:
            a[0] = -np.inf  # a row of zeros
        if trial % 11 == 0:
            a[rng.random(a.shape) < 0.05] = np.inf
        if trial % 13 == 0:
            a[rng.random(a.shape) < 0.05] = np.nan
        a = a.astype(np.float32).astype(np.float64)  # log-probabilities arrive as float32
        with np.errstate(all="ignore"):
            expected = special.logsumexp(a, axis=-1, keepdims=True)
        assert stats.logsumexp_rows(a).tobytes() == expected.tobytes(), trial


def test_kl_in_threaded_blocks_is_the_whole_array_formula_bit_for_bit():
    """More rows than a block (`KL_BLOCK_ROWS`), so the blocks run on threads: every KL is the bits of the plain
    formula on the whole array through scipy (the implementation before blocks), -inf log-probabilities included."""
    from scipy import special

    def whole(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lp, lq = (x.astype(np.float64) - special.logsumexp(x.astype(np.float64), axis=-1, keepdims=True) for x in (a, b))
        p = np.exp(lp)
        return np.where(p > 0.0, p * (lp - lq), 0.0).sum(axis=1)

    rng = np.random.default_rng(11)
    with np.errstate(all="ignore"):
        for n, c in ((stats.KL_BLOCK_ROWS * 3 + 17, 65), (stats.KL_BLOCK_ROWS + 1, 113), (5, 7)):
            a = rng.normal(scale=3.0, size=(n, c)).astype(np.float32)
            b = (a + rng.normal(scale=0.3, size=a.shape)).astype(np.float32)
            a[rng.random(a.shape) < 0.05] = -np.inf
            b[rng.random(b.shape) < 0.02] = -np.inf
            assert stats.per_example_kl(torch.from_numpy(a), b).tobytes() == whole(a, b).tobytes(), (n, c)


# ----------------------------------------------------------------------------
# fidelity


def test_fidelity_matches_pearsonr_and_r2_over_batches():
    rng = np.random.default_rng(3)
    n_units, batches = 3, [7, 1, 12, 5]
    acc = stats.FidelityAccumulator(n_units)
    ys, hs = [], []
    for bsz in batches:
        y = rng.normal(size=(bsz, n_units, 4, 5)).astype(np.float32) * [[[2.0]], [[0.1]], [[5.0]]] + 3.0
        h = (0.8 * y + rng.normal(0, 0.5, y.shape)).astype(np.float32)
        acc.update(torch.tensor(y), h)
        ys.append(y)
        hs.append(h)
    y = np.concatenate(ys).transpose(1, 0, 2, 3).reshape(n_units, -1).astype(np.float64)
    h = np.concatenate(hs).transpose(1, 0, 2, 3).reshape(n_units, -1).astype(np.float64)
    res = acc.result()
    assert [u.unit for u in res] == [0, 1, 2]
    for u in range(n_units):
        assert res[u].n_samples == sum(batches) * 20
        assert res[u].pearson_r == pytest.approx(sps.pearsonr(y[u], h[u]).statistic, rel=1e-10)
        assert res[u].r2 == pytest.approx(r2_score(y[u], h[u]), rel=1e-10)


def test_fidelity_dense_and_large_offset():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 2))
    xh = x + rng.normal(0, 0.3, x.shape)
    offset = 1e8  # float64 mean-of-squares would lose ~all digits of variance ~1
    acc = stats.FidelityAccumulator(2)
    for i in range(0, 3000, 250):
        acc.update(x[i : i + 250] + offset, xh[i : i + 250] + offset)
    for u, res in enumerate(acc.result()):
        assert res.pearson_r == pytest.approx(sps.pearsonr(x[:, u], xh[:, u]).statistic, rel=1e-7)
        assert res.r2 == pytest.approx(r2_score(x[:, u], xh[:, u]), rel=1e-7)


def test_fidelity_constant_sides():
    acc = stats.FidelityAccumulator(2)
    y = np.zeros((4, 2, 3))
    y[:, 0] = 0.1  # constant original for unit 0 (0.1 is not exact in binary)
    y[:, 1] = np.arange(12.0).reshape(4, 3)
    h = np.ones_like(y)  # constant replacement for both
    acc.update(y[:2], h[:2])
    acc.update(y[2:], h[2:])
    r0, r1 = acc.result()
    assert r0.pearson_r is None and r0.r2 is None
    assert r1.pearson_r is None
    assert r1.r2 == pytest.approx(r2_score(y[:, 1].ravel(), h[:, 1].ravel()))
    assert stats.FidelityAccumulator(1).result()[0].n_samples == 0
    with pytest.raises(ValueError):
        acc.update(np.zeros((2, 3)), np.zeros((2, 3)))


# ----------------------------------------------------------------------------
# comparing two submissions


def test_compare_paired_matches_references():
    c, abl, pa = skewed_losses(40, seed=10)
    pb = pa + 0.3 * np.random.default_rng(11).gamma(0.5, 1.0, 40) - 0.1
    cmp = stats.compare_paired(c, abl, pa, pb, level=0.95)
    assert cmp.diff == pytest.approx(pa.mean() - pb.mean(), rel=1e-12)
    assert cmp.p_ttest == pytest.approx(sps.ttest_rel(pa, pb).pvalue, rel=1e-9)
    assert cmp.p_wilcoxon == pytest.approx(sps.wilcoxon(pa, pb).pvalue, rel=1e-12)
    single_a = stats.recovery_stats(c, {"z": abl}, pa)["z"]
    single_b = stats.recovery_stats(c, {"z": abl}, pb)["z"]
    assert cmp.defined == single_a.defined is True
    assert cmp.recovery_a == pytest.approx(single_a.recovery, rel=1e-12)
    assert cmp.recovery_diff == pytest.approx(single_a.recovery - single_b.recovery, rel=1e-10)
    # the loss difference: Hall's interval of L_a − L_b; the recovery difference: Fieller's on (L_b − L_a, A − C),
    # i.e. the R₀ that a t-test of (L_b − L_a) − R₀ (A − C) does not reject
    assert (cmp.diff_low, cmp.diff_high) == intervals.skew_corrected_mean_interval(pa - pb, 0.95)
    z = sps.norm.ppf(0.975)
    for edge in (cmp.recovery_diff_low, cmp.recovery_diff_high):
        u = (pb - pa) - edge * (abl - c)
        assert abs(sps.ttest_1samp(u, 0.0).statistic) == pytest.approx(z, rel=1e-6)
    assert cmp.recovery_diff_low < cmp.recovery_diff < cmp.recovery_diff_high
    json.dumps(cmp.to_dict(), allow_nan=False)


def test_compare_identical_submissions():
    c, abl, pa = skewed_losses(100, seed=12)
    cmp = stats.compare_paired(c, abl, pa, pa.copy())
    assert cmp.diff == 0.0 and cmp.p_ttest == 1.0 and cmp.p_wilcoxon == 1.0
    assert cmp.recovery_diff == 0.0 and cmp.recovery_diff_low == 0.0 and cmp.recovery_diff_high == 0.0
    cmp = stats.compare_paired(c, c, pa, pa + 1.0)
    assert not cmp.defined and cmp.recovery_diff is None and cmp.recovery_a is None
    assert cmp.diff == pytest.approx(-1.0) and cmp.p_ttest == 0.0


@pytest.mark.parametrize(("draw", "low", "high"), [
    (lambda rng, n: rng.normal(1.0, np.sqrt(2.0), n), 0.775, 0.825),  # normal effects: the formula's own model
    (lambda rng, n: rng.gamma(0.5, 2.0, n), 0.775, 0.86),  # skewed (Gamma 0.5): a t-test gains a little power
])
def test_detectable_recovery_difference_has_80_percent_power_by_simulation(draw, low, high):
    """At the returned difference, a paired two-sided t-test at α = 0.05 rejects in ~80% of simulated datasets."""
    rng = np.random.default_rng(5)
    n, effect, sd = 900, 1.0, np.sqrt(2.0)  # both models: per-example effect D with mean 1 and SD √2
    clean = rng.lognormal(0, 0.8, n)
    ablated = clean + draw(rng, n)
    d = ablated - clean
    mde = stats.detectable_recovery_difference(clean, ablated)
    assert mde == pytest.approx((sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * d.std(ddof=1) / (np.sqrt(n) * d.mean()))
    population_mde = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd / (np.sqrt(n) * effect)
    trials = 3000
    # two entries whose recoveries differ by the MDE; their per-example loss difference has the SD of D
    diffs = np.stack([population_mde * effect + (draw(rng, n) - effect) for _ in range(trials)])  # [trials, n]
    rejections = int((sps.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05).sum())  # one t-test per row
    assert low <= rejections / trials <= high, rejections / trials  # binomial SD 0.007
    assert stats.detectable_recovery_difference(clean, clean - 0.1) is None  # nothing to recover


def test_one_top_k_rule_in_scoring_and_statistics():
    """The scoring path's top-k (`per_example_outputs`) is `topk_correct`'s: a tie counts in the label's favour,
    whatever order a sort would put the tied classes in."""
    from benchmark.kinds.base import classification_outputs as per_example_outputs

    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 1.0, 1.0], [0.5, 0.5, 0.5]])  # [4, 3]
    labels = torch.tensor([1, 1, 2, 2])
    out = per_example_outputs(logits, labels, (1, 2))
    for k in (1, 2):
        np.testing.assert_array_equal(out[f"top{k}"], stats.topk_correct(logits.numpy(), labels.numpy(), k))
    np.testing.assert_array_equal(out["top1"], [True, True, False, True])
