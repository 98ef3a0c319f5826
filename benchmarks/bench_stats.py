"""Time `benchmark.stats.bootstrap_recovery_stats` (the intervals of records before schema 6) against a naive loop.

Run: `python benchmarks/bench_stats.py [--repeats R] [--n-resamples B]`

Both compute the same statistics for 3 ablations from the same random stream
(resample b uses `rng.integers(0, n, size=n)`), so their outputs must agree;
the naive one gathers each resample's rows and calls np.mean once per resample.
Prints the best-of-R wall and process-CPU time of each and the wall-time ratio
(on a shared machine, CPU time is the steadier number).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmark import stats


def synthetic_losses(n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Skewed, correlated per-example losses: clean, three ablations, replaced."""
    rng = np.random.default_rng(seed)
    clean = rng.lognormal(0.0, 0.8, n)
    effect = rng.gamma(0.5, 2.0, n)
    ablated = {"zero": clean + effect, "mean": clean + 0.7 * effect, "resample": clean + 0.9 * effect}
    replaced = clean + 0.4 * effect + 0.3 * (rng.exponential(1.0, n) - 1.0)
    return clean, ablated, replaced


def naive_recovery(clean, ablated, replaced, n_resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """Effect and recovery BCa CIs with a Python loop over resamples (np.mean per resample)."""
    names = list(ablated)
    columns = np.stack([clean, *(ablated[k] for k in names), replaced], axis=1)  # [n, m + 2]
    n = len(clean)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, columns.shape[1]))
    for b in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        boot[b] = np.mean(columns[idx], axis=0)
    out = {}
    for j, name in enumerate(names, start=1):
        a = ablated[name]
        r_hat = (a.mean() - replaced.mean()) / (a.mean() - clean.mean())
        e_boot = boot[:, j] - boot[:, 0]
        r_boot = (boot[:, j] - boot[:, -1]) / e_boot
        stats.bca_interval(a.mean() - clean.mean(), e_boot, stats.jackknife_mean(a - clean), 0.95)
        jack = stats.jackknife_ratio_of_means(a - replaced, a - clean)
        out[name] = stats.bca_interval(r_hat, r_boot, jack, 0.95)
    return out


def best_time(fn, repeats: int) -> tuple[float, float, object]:
    """Best wall time, best process CPU time (all threads), and the result of `fn()`."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-resamples", type=int, default=2000)
    args = parser.parse_args()
    b = args.n_resamples
    print(f"bootstrap_recovery_stats, 3 ablations, B={b}, best of {args.repeats}")
    for n in (10_000, 50_000):
        clean, ablated, replaced = synthetic_losses(n)
        t_fast, c_fast, fast = best_time(lambda: stats.bootstrap_recovery_stats(clean, ablated, replaced, n_resamples=b, seed=0), args.repeats)
        t_naive, c_naive, naive = best_time(lambda: naive_recovery(clean, ablated, replaced, b, seed=0), max(1, args.repeats // 3))
        for name, (lo, hi) in naive.items():  # same stream, same statistics
            assert np.isclose(lo, fast[name].recovery_low, rtol=1e-9) and np.isclose(hi, fast[name].recovery_high, rtol=1e-9)
        t_closed, _, _ = best_time(lambda: stats.recovery_stats(clean, ablated, replaced), args.repeats)
        print(
            f"n={n:>6}: bootstrap_recovery_stats {t_fast:6.3f} s wall ({c_fast:6.3f} s CPU)   "
            f"naive loop {t_naive:6.3f} s wall ({c_naive:6.3f} s CPU)   speed-up x{t_naive / t_fast:4.1f} wall   "
            f"closed-form recovery_stats (what scoring uses) {1000 * t_closed:6.2f} ms"
        )


if __name__ == "__main__":
    main()
