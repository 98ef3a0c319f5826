"""Coverage of the KL-recovery interval by simulation: how often the 95% CI holds the true KL recovery.

    python benchmarks/coverage_kl.py [--datasets 1000] [--resamples 1000]

Data model (per example i, n examples; seeded, so the table is reproducible):

    K_A,i = LogNormal(−3, σ)                         KL(clean ‖ ablated)
    K_P,i = K_A,i · (1 − R_i) + Exp(mean 0.01)       KL(clean ‖ replaced); R_i ~ Beta(7, 3), E[R] = 0.7

so the true KL recovery 1 − E[K_P] / E[K_A] = 0.7 − 0.01 / E[K_A], with E[K_A] = exp(−3 + σ²/2).
σ = 0.8 is a moderate spread; σ = 1.5 is sparse and heavy-tailed: a few examples carry most of the KL.
Prints a Markdown table: coverage (its binomial SD), median CI width and the rate of undefined results.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmark import stats

SIGMAS = {"moderate (σ 0.8)": 0.8, "sparse, heavy-tailed (σ 1.5)": 1.5}
SIZES = (200, 1000, 10000)


def simulate(rng: np.random.Generator, n: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    k_ablated = rng.lognormal(-3.0, sigma, n)  # [n]
    k_replaced = k_ablated * (1 - rng.beta(7, 3, n)) + rng.exponential(0.01, n)  # [n]
    return k_ablated, k_replaced


def true_kl_recovery(sigma: float) -> float:
    """1 − E[K_P] / E[K_A] = 1 − (0.3 E[K_A] + 0.01) / E[K_A]."""
    mean_ablated = math.exp(-3.0 + sigma**2 / 2)
    return 1 - (0.3 * mean_ablated + 0.01) / mean_ablated


def coverage(sigma: float, n: int, datasets: int, resamples: int) -> tuple[float, float, float]:
    """(coverage, median width, undefined rate) of the 95% KL-recovery BCa interval over `datasets` datasets."""
    rng = np.random.default_rng(20261125)
    truth = true_kl_recovery(sigma)
    hits = undefined = 0
    widths = []
    for k in range(datasets):
        k_ablated, k_replaced = simulate(rng, n, sigma)
        s = stats.bootstrap_kl_recovery_stats({"zero": k_ablated}, k_replaced, n_resamples=resamples, seed=k)["zero"]
        if not s.defined:
            undefined += 1  # counted as a miss
            continue
        hits += s.recovery_low <= truth <= s.recovery_high
        widths.append(s.recovery_high - s.recovery_low)
    return hits / datasets, float(np.median(widths)) if widths else math.nan, undefined / datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    sd = math.sqrt(0.95 * 0.05 / args.datasets)
    print(f"95% BCa KL-recovery intervals, {args.datasets} datasets per cell, B = {args.resamples} "
          f"(binomial SD of a coverage of 0.95: {sd:.3f})\n")
    print("| data model | n | coverage | median CI width | undefined |")
    print("|---|---|---|---|---|")
    for label, sigma in SIGMAS.items():
        for n in SIZES:
            cov, width, undefined = coverage(sigma, n, args.datasets, args.resamples)
            print(f"| {label} | {n:,} | {cov:.3f} | {width:.3f} | {undefined:.3f} |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
