"""The closed-form intervals, each against an independent computation, and what they promise.

- Fieller's interval is the set of R₀ that scipy's one-sample t-test of N − R₀ D does not reject,
  found here by brute force on a fine grid.
- Hall's interval is the set of means μ whose transformed statistic lies within ±z, found here with
  scipy's skewness and a root finder, from the paper's formula rather than its closed-form inverse.
- No digit depends on a seed or on the order of the examples (20 shuffles).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from benchmark import intervals, stats


def sparse_losses(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean, ablated, replaced: ~10% of examples hurt, by lognormal amounts; per-example recovery Beta(7, 3)."""
    rng = np.random.default_rng(seed)
    c = rng.lognormal(-1.0, 1.5, n)
    hurt = rng.random(n) < 0.1
    s = rng.lognormal(-1.5, 1.2, n) * hurt
    a = c + s
    return c, a, a - rng.beta(7, 3, n) * s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fieller_equals_the_t_tests_acceptance_set(seed):
    c, a, p = sparse_losses(300, seed)
    num, den = a - p, a - c
    lo, hi = intervals.fieller_ratio_interval(num, den, 0.95)
    z = sps.norm.ppf(0.975)
    r_hat = num.mean() / den.mean()

    def accepted(r0: float) -> bool:
        u = num - r0 * den
        t = sps.ttest_1samp(u, 0.0).statistic
        return abs(t) <= z

    assert lo < r_hat < hi
    for edge, inside in ((lo, r_hat), (hi, r_hat)):
        step = 1e-6 * max(1.0, abs(edge))
        assert accepted(edge + math.copysign(step, inside - edge)) and not accepted(edge - math.copysign(step, inside - edge))
    grid = np.linspace(lo - 1, hi + 1, 4001)
    t_grid = sps.ttest_1samp(num[None, :] - grid[:, None] * den[None, :], 0.0, axis=1).statistic  # [4001]: one call
    found = grid[np.abs(t_grid) <= z]
    assert found.min() == pytest.approx(lo, abs=(grid[1] - grid[0])) and found.max() == pytest.approx(hi, abs=grid[1] - grid[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_fieller_keeps_its_width_when_recovery_is_near_one_with_a_narrow_interval(seed):
    """modadd-p113's scale: clean losses ~1e-6, ablation ~8 nats, a replacement within 1e-7 of the clean loss, so
    1 − R ≈ 1e-8. B² − AC would lose every digit there (it gave ends where t² was 100 times z²); the expanded
    discriminant gives ends where the t-statistic of U + (1 − R₀) D, computed without cancellation, is z."""
    rng = np.random.default_rng(seed)
    n = 8939
    c = np.abs(rng.normal(1e-6, 2e-6, n))
    a = c + rng.lognormal(2.0, 0.5, n)
    p = c * rng.uniform(0.5, 1.3, n)
    gap, den = c - p, a - c
    lo, hi = intervals.fieller_ratio_interval(a - p, den, 0.95, gap=gap)
    z = sps.norm.ppf(0.975)
    assert lo < 1 - (p.mean() - c.mean()) / den.mean() < hi and hi - lo > 1e-9
    for edge in (lo, hi):
        u = gap + (1.0 - edge) * den  # N − R₀ D
        t = u.mean() / (u.std(ddof=1) / math.sqrt(n))
        assert abs(t) == pytest.approx(z, rel=1e-4)


def test_fieller_is_unbounded_when_the_denominator_is_not_significant():
    rng = np.random.default_rng(3)
    den = rng.normal(0.01, 1.0, 200)  # mean far inside its standard error
    assert intervals.fieller_ratio_interval(0.5 * den + rng.normal(0, 0.1, 200), den, 0.95) is None


def test_fieller_exact_multiples_give_a_point():
    c, a, _ = sparse_losses(500, 4)
    d = a - c
    assert intervals.fieller_ratio_interval(d, d, 0.95) == pytest.approx((1.0, 1.0), abs=1e-9)  # replaced = clean
    assert intervals.fieller_ratio_interval(np.zeros_like(d), d, 0.95) == pytest.approx((0.0, 0.0), abs=1e-12)


def hall_statistic(x: np.ndarray, mu: float) -> float:
    """g(T) = T + γ T²/(3√n) + γ² T³/(27 n) + γ/(6√n), T = √n (x̄ − μ)/s (Hall 1992), γ the biased sample skewness."""
    n = len(x)
    t = math.sqrt(n) * (x.mean() - mu) / x.std(ddof=1)
    g = sps.skew(x, bias=True)
    return t + g * t * t / (3 * math.sqrt(n)) + g * g * t**3 / (27 * n) + g / (6 * math.sqrt(n))


@pytest.mark.parametrize("level", [0.9, 0.95])
@pytest.mark.parametrize("seed", [0, 1])
def test_hall_interval_inverts_the_transformed_statistic(seed, level):
    c, a, _ = sparse_losses(400, seed)
    d = a - c
    lo, hi = intervals.skew_corrected_mean_interval(d, level)
    z = sps.norm.ppf(0.5 + level / 2)
    se = d.std(ddof=1) / math.sqrt(len(d))
    # g(T(μ)) decreases in μ: the lower end solves g = +z, the upper g = −z
    lo_ref = optimize.brentq(lambda mu: hall_statistic(d, mu) - z, d.mean() - 20 * se, d.mean())
    hi_ref = optimize.brentq(lambda mu: hall_statistic(d, mu) + z, d.mean(), d.mean() + 20 * se)
    assert (lo, hi) == pytest.approx((lo_ref, hi_ref), rel=1e-9)
    t_lo, t_hi = d.mean() - z * se, d.mean() + z * se
    assert hi > t_hi and lo > t_lo  # right-skewed: shifted up, further on the long side


def test_hall_interval_without_skew_is_the_normal_interval():
    x = np.concatenate([np.linspace(-1, 1, 101), [0.0]])  # symmetric: skewness 0
    z = sps.norm.ppf(0.975)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert intervals.skew_corrected_mean_interval(x, 0.95) == pytest.approx((-z * se, z * se), abs=1e-12)
    assert intervals.skew_corrected_mean_interval(np.full(10, 2.5), 0.95) == (2.5, 2.5)


def printed(res: dict[str, stats.RecoveryStats]) -> list[str]:
    """Every figure as the board prints it (percent with one decimal, effects to 4 significant digits)."""
    out = []
    for r in res.values():
        out.append(f"{r.effect:+.4g} [{r.effect_low:+.4g}, {r.effect_high:+.4g}] {r.defined}")
        if r.defined:
            out.append(f"{100 * r.recovery:.1f}% [{100 * r.recovery_low:.1f}, {100 * r.recovery_high:.1f}]")
    return out


def test_no_printed_digit_depends_on_a_seed_or_the_order_of_examples():
    """20 shuffles (seeds 0–19) of a sparse, heavy-tailed task: every printed digit is the same.

    A bootstrap interval fails this: its resamples pick different examples once the order changes.
    """
    c, a, p = sparse_losses(900, 7)
    mean_abl = a + np.random.default_rng(8).normal(0, 0.02, 900)
    reference = printed(stats.recovery_stats(c, {"zero": a, "mean": mean_abl}, p))
    kl_reference = printed(stats.kl_recovery_stats({"zero": a - c}, p - c + 0.01))
    boot_prints = set()
    for seed in range(20):
        order = np.random.default_rng(seed).permutation(900)
        res = stats.recovery_stats(c[order], {"zero": a[order], "mean": mean_abl[order]}, p[order])
        assert printed(res) == reference, seed
        assert printed(stats.kl_recovery_stats({"zero": (a - c)[order]}, (p - c + 0.01)[order])) == kl_reference
        boot = stats.bootstrap_recovery_stats(c[order], {"zero": a[order]}, p[order], n_resamples=2000, seed=0)
        boot_prints.add(tuple(printed(boot)))
    assert len(boot_prints) > 1  # the test can fail: the bootstrap's digits do move


def test_records_before_schema_6_are_checked_with_their_bootstrap(tmp_path, cli, session_cache):
    """A schema-6 record rewritten as schema 5 with bootstrap figures passes the board's checks; the same record
    with the closed-form figures but the legacy label does not (the check really recomputes the bootstrap)."""
    import json

    from benchmark.board.verify import load_checked
    from benchmark.record.io import read_sidecar
    from benchmark.record.typed import Record

    results = tmp_path / "results"
    assert cli("score", "mean", "--task", "digits-mlp/fc1:17", "--results-dir", str(results)).returncode == 0
    path = results / "digits-mlp__fc1-17" / "mean.json"
    record = json.loads(path.read_text())
    assert record["provenance"]["intervals"] == stats.INTERVALS and load_checked(path)[0] is not None
    arrays = read_sidecar(path, Record.read(path))
    c, z, p = (arrays[f"loss.{k}"].astype(np.float64) for k in ("clean", "zero", "replaced"))
    boot = stats.bootstrap_recovery_stats(c, {"zero": z}, p, n_resamples=2000, seed=0)["zero"].to_dict()
    kl = stats.bootstrap_kl_recovery_stats({"zero": arrays["kl.zero"].astype(np.float64)}, arrays["kl"].astype(np.float64),
                                           n_resamples=2000, seed=0)["zero"].to_dict()
    closed_low = record["results"]["primary"]["recovery_low"]
    legacy = {k: v for k, v in json.loads(json.dumps(record)).items() if k not in ("split", "heldout_commitment")}
    legacy["schema_version"] = 5
    legacy["provenance"] = {**{k: v for k, v in record["provenance"].items() if k != "intervals"},
                            "seed": 0, "bootstrap_resamples": 2000}
    unchanged = json.loads(json.dumps(legacy))
    legacy["results"]["primary"].update(boot)
    legacy["results"]["kl_recovery"]["zero"] = kl
    path.write_text(json.dumps(legacy))
    loaded, problems = load_checked(path)
    assert loaded is not None and loaded.provenance.intervals == stats.LEGACY_INTERVALS, problems
    assert boot["recovery_low"] != closed_low  # the two methods differ here
    path.write_text(json.dumps(unchanged))  # closed-form figures under the legacy label
    assert load_checked(path)[0] is None
