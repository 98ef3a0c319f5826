"""Candidate recovery intervals against Fieller's, on the uneven-recovery cells of the coverage table.

    python benchmarks/interval_candidates.py [--datasets 1000] [--only TEXT]

Fieller's interval is the set of R₀ where a t-test of mean u(R₀) = 0, u(R₀) = N − R₀ D `# [n]`, does not reject at
z = Φ⁻¹(0.975). It under-covers when a few examples carry the effect and recover unevenly (docs/statistics.md). Each
candidate inverts the same pivot with a different critical value; none is used by the board. With T(R₀) = √n ū / s
(s the SD, ddof 1) and the pivot's sample skewness γ(R₀) and kurtosis κ(R₀) = m₄ / m₂² (central moments):

- **fieller**: |T| ≤ z (`benchmark.intervals.fieller_ratio_interval`);
- **satterthwaite at R̂**: Fieller at c = t_ν(0.975) with ν = 2n / (κ(R̂) − 1), the degrees of freedom of a variance
  estimate whose relative variance is (κ − 1)/n (ν = n for normal data; ν ≈ 2 n_eff when a few examples carry
  the variance);
- **satterthwaite at each R₀**: |T(R₀)| ≤ t_ν(R₀)(0.975) with ν(R₀) = 2n / (κ(R₀) − 1), inverted on a grid;
- **hall + satterthwaite**: |g(T(R₀))| ≤ t_ν(R₀)(0.975), g Hall's (1992) transform with a = γ/(3√n), b = γ/(6√n)
  (`benchmark.intervals`), on the same grid.

Every candidate is "defined" only where the board's gate is (the effect's Hall interval lies above 0) and its own
set is bounded; the columns give coverage (defined rate). The grid spans R̂ ± 40 Fieller half-widths in 4,001 steps.
Also printed, for the Integrity issue's model (ρ = −4 on a random 10% of examples), is the share q of datasets that
draw no example that is both hurt and at −4: there N = D exactly, so any interval that gives an exact copy a tight
interval at 1 misses the truth 0.5, and coverage is at most 1 − q.

`--why` prints, instead of the table, where Fieller misses: for the uneven cells, the share of datasets with the
truth below and above the interval; for each real triple at n = 8,939, the eval pair with the largest share of the
pivot's variance Σ(u − ū)² at the true R, Fieller's coverage by how often a dataset draws that pair, and the
coverage among datasets whose pivot has an effective number of examples (Σe²)²/Σe⁴ ≥ 10 (e = u − ū at R̂).

`--board` counts, over the committed sidecars (leaderboard/results/*/*.npz, loss and KL against every ablation),
the recovery blocks that Fieller defines and that "satterthwaite at R̂" leaves unbounded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import coverage_gate as gate  # noqa: E402

from benchmark import intervals  # noqa: E402

Z = intervals.critical_value(0.95)
UNEVEN = ("10% at −4", "graded", "spiky", "real modadd", "hardest 1% at 0", "sparse, heavy-tailed")


def _t_critical(df: np.ndarray | float) -> np.ndarray:
    """t_ν(0.975), ν clipped to ≥ 1."""
    return special.stdtrit(np.maximum(df, 1.0), 0.975)


def _satterthwaite_df(m2: np.ndarray, m4: np.ndarray, n: int) -> np.ndarray:
    """ν = 2n / (κ − 1), κ = m₄ / m₂²; a pivot that is constant (m₂ = 0: an exact copy, or N ≡ 0) has no variance to
    estimate, ν = n as for normal data."""
    kurtosis = np.where(m2 > 1e-150, m4 / np.maximum(m2, 1e-150) ** 2, 3.0)
    return 2 * n / np.maximum(kurtosis - 1, 1e-12)


def _pivot_moments(num: np.ndarray, den: np.ndarray, gap: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean and central moments m₂, m₃, m₄ of u = U + s D `# [G]` for each s `# [G]` (U = N − D = gap, s = 1 − R₀),
    from the mixed power sums of the centred U and D: u is linear in s, so each moment is a polynomial in s."""
    u_bar, d_bar = gap.mean(), den.mean()
    cu, cd = gap - u_bar, den - d_bar  # [n]
    def sums(k: int) -> list[float]:
        return [float(np.mean(cu ** (k - j) * cd ** j)) for j in range(k + 1)]
    m = {k: sums(k) for k in (2, 3, 4)}
    binom = {2: (1, 2, 1), 3: (1, 3, 3, 1), 4: (1, 4, 6, 4, 1)}
    central = {k: sum(binom[k][j] * s ** j * m[k][j] for j in range(k + 1)) for k in (2, 3, 4)}
    return u_bar + s * d_bar, np.maximum(central[2], 0.0), central[3], central[4]


def grid_interval(num: np.ndarray, den: np.ndarray, gap: np.ndarray, hall: bool) -> tuple[float, float] | None:
    """The connected accepted set around R̂ of |T| ≤ t_ν(R₀) (or |g(T)| ≤ t_ν(R₀) with `hall`), on the grid."""
    n = len(num)
    fieller = intervals.fieller_ratio_interval(num, den, 0.95, gap=gap)
    if fieller is None:
        return None
    r_hat = float(num.mean() / den.mean())
    half = max((fieller[1] - fieller[0]) / 2, 1e-12 * max(1.0, abs(r_hat)))
    r0 = r_hat + np.linspace(-40, 40, 4001) * half  # [G]
    mean, m2, m3, m4 = _pivot_moments(num, den, gap, 1.0 - r0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(m2 > 0, math.sqrt(n - 1) * mean / np.sqrt(m2), np.where(mean == 0, 0.0, np.inf))  # √n ū / s
        gamma = np.where(m2 > 1e-150, m3 / np.maximum(m2, 1e-150) ** 1.5, 0.0)
    critical = _t_critical(_satterthwaite_df(m2, m4, n))
    if hall:
        a = gamma / (3 * math.sqrt(n))
        t = t + a * t * t + a * a * t**3 / 3 + a / 2  # b = γ/(6√n) = a/2
    accepted = np.abs(t) <= critical
    centre = 2000
    accepted[centre] = True
    lo = hi = centre
    while lo > 0 and accepted[lo - 1]:
        lo -= 1
    while hi < len(r0) - 1 and accepted[hi + 1]:
        hi += 1
    if lo == 0 or hi == len(r0) - 1:
        return None
    return float(r0[lo]), float(r0[hi])


def satterthwaite_at_estimate(num: np.ndarray, den: np.ndarray, gap: np.ndarray) -> tuple[float, float] | None:
    """Fieller with c = t_ν(0.975), ν = 2n / (κ(R̂) − 1): Fieller at the normal level 2Φ(c) − 1."""
    n = len(num)
    r_hat = float(num.mean() / den.mean())
    _, m2, _, m4 = _pivot_moments(num, den, gap, np.array([1.0 - r_hat]))
    c = float(_t_critical(_satterthwaite_df(m2, m4, n))[0])
    return intervals.fieller_ratio_interval(num, den, 2 * float(special.ndtr(c)) - 1, gap=gap)


CANDIDATES = {
    "fieller": lambda num, den, gap: intervals.fieller_ratio_interval(num, den, 0.95, gap=gap),
    "satterthwaite at R̂": satterthwaite_at_estimate,
    "satterthwaite at each R₀": lambda num, den, gap: grid_interval(num, den, gap, hall=False),
    "hall + satterthwaite": lambda num, den, gap: grid_interval(num, den, gap, hall=True),
}


def cell(model: gate.Model, recovery: float, n: int, datasets: int) -> dict[str, tuple[float, float]]:
    """{candidate: (coverage among defined, defined rate)} over `datasets` seeded datasets."""
    rng = np.random.default_rng(20261125 + n)
    covered = dict.fromkeys(CANDIDATES, 0)
    defined = dict.fromkeys(CANDIDATES, 0)
    for _ in range(datasets):
        c, a, p = model(rng, n)
        d, num, gap = a - c, a - p, c - p
        if not intervals.skew_corrected_mean_interval(d, 0.95)[0] > 0:
            continue
        for name, method in CANDIDATES.items():
            iv = method(num, d, gap)
            if iv is not None:
                defined[name] += 1
                covered[name] += iv[0] <= recovery <= iv[1]
    return {name: (covered[name] / defined[name] if defined[name] else math.nan, defined[name] / datasets)
            for name in CANDIDATES}


def no_failing_example_share(n: int) -> float:
    """q for the sparse model with ρ = −4 on 10%: the chance that none of n examples is both hurt and at −4,
    (1 − 0.1 · P(hurt))ⁿ, P(hurt) from 4 million examples of the model."""
    _, d = gate._sparse_hurt(np.random.default_rng(99), 4_000_000)
    return float((1 - 0.1 * np.mean(d > 0)) ** n)


def sides(model: gate.Model, recovery: float, n: int, datasets: int) -> tuple[float, float]:
    """Fieller's misses among defined datasets: (truth below the interval, truth above it)."""
    rng = np.random.default_rng(20261125 + n)
    below = above = defined = 0
    for _ in range(datasets):
        c, a, p = model(rng, n)
        d, num, gap = a - c, a - p, c - p
        iv = CANDIDATES["fieller"](num, d, gap)
        if iv is None or not intervals.skew_corrected_mean_interval(d, 0.95)[0] > 0:
            continue
        defined += 1
        below += recovery < iv[0]
        above += recovery > iv[1]
    return below / defined, above / defined


def top_pair(triples: gate.Triples, datasets: int) -> str:
    """The real eval pair that carries most of the pivot's variance, and Fieller's coverage by how often a dataset
    of the real size draws it; also the coverage among datasets with n_eff ≥ 10."""
    _, recovery = triples.truth()
    d_all = triples.ablated - triples.clean  # [N]
    u = (triples.ablated - triples.replaced) - recovery * d_all  # [N]
    e = u - u.mean()
    top = int(np.argmax(np.abs(e)))
    share = float(e[top] ** 2 / (e @ e))
    rng = np.random.default_rng(20261125)
    by_count: dict[int, list[int]] = {}
    gated = [0, 0]
    n = len(d_all)
    for _ in range(datasets):
        i = rng.integers(0, n, n)  # [n]
        c, a, p = triples.clean[i], triples.ablated[i], triples.replaced[i]
        iv = CANDIDATES["fieller"](a - p, a - c, c - p)
        hit = iv is not None and iv[0] <= recovery <= iv[1]
        tally = by_count.setdefault(min(int(np.sum(i == top)), 3), [0, 0])
        tally[0] += 1
        tally[1] += hit
        r_hat = float((a - p).mean() / (a - c).mean())
        e_hat = (a - p) - r_hat * (a - c)
        e_hat = e_hat - e_hat.mean()
        if (e_hat @ e_hat) ** 2 >= 10 * float((e_hat**2) @ (e_hat**2)):
            gated[0] += 1
            gated[1] += hit
    counts = ", ".join(f"{'≥3' if k == 3 else k} copies: {t / datasets:.0%} of datasets, covered {h / t:.3f}"
                       for k, (t, h) in sorted(by_count.items()))
    kept = f"{gated[1] / gated[0]:.3f} of {gated[0] / datasets:.0%}" if gated[0] else "none kept"
    return f"top pair carries {share:.0%} of the pivot's variance; {counts}; n_eff ≥ 10: covered {kept}"


def why(datasets: int) -> None:
    print("Fieller's misses among defined datasets (truth below / above the interval):")
    for label, (model, has_effect, sizes) in gate.MODELS.items():
        if has_effect and any(key in label for key in UNEVEN):
            _, recovery = gate.truth(model)
            for n in sizes:
                below, above = sides(model, recovery, n, datasets)
                print(f"  {label}, n = {n:,}: {below:.3f} / {above:.3f}", flush=True)
    print("\nReal triples at n = 8,939:")
    for label, triples in gate.triples_models().items():
        print(f"  {label}: {top_pair(triples, datasets)}", flush=True)


BOARD = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


def board() -> None:
    """Defined blocks of the committed board that Satterthwaite at R̂ leaves unbounded (module docstring)."""
    defined, lost = 0, []
    for sidecar in sorted(BOARD.glob("*/*.npz")):
        with np.load(sidecar) as arrays:
            blocks = {}
            for ablation in ("zero", "mean", "resample"):
                if f"loss.{ablation}" in arrays.files:
                    blocks[f"loss {ablation}"] = (arrays["loss.clean"], arrays[f"loss.{ablation}"], arrays["loss.replaced"])
                if f"kl.{ablation}" in arrays.files:
                    blocks[f"KL {ablation}"] = (np.zeros(len(arrays["kl"])), arrays[f"kl.{ablation}"], arrays["kl"])
        for name, (c, a, p) in blocks.items():
            c, a, p = (x.astype(np.float64) for x in (c, a, p))
            d, num, gap = a - c, a - p, c - p
            if not (intervals.skew_corrected_mean_interval(d, 0.95)[0] > 0 and CANDIDATES["fieller"](num, d, gap)):
                continue
            defined += 1
            if satterthwaite_at_estimate(num, d, gap) is None:
                lost.append(f"{sidecar.parent.name}/{sidecar.name.split('.')[0]} {name}")
    print(f"{defined} recovery blocks defined by Fieller; Satterthwaite at R̂ leaves {len(lost)} unbounded:")
    for line in lost:
        print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--only", metavar="TEXT", help="only the data models whose label contains TEXT")
    parser.add_argument("--board", action="store_true", help="the committed board's blocks (module docstring)")
    parser.add_argument("--why", action="store_true", help="where Fieller misses, instead of the table (module docstring)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.board:
        board()
        return
    if args.why:
        why(args.datasets)
        print(f"\n{time.perf_counter() - started:.0f} s")
        return
    print(f"Recovery coverage (defined rate), {args.datasets:,} datasets per cell\n")
    print("| data model | n | " + " | ".join(CANDIDATES) + " |")
    print("|" + "---|" * (2 + len(CANDIDATES)))
    for label, (model, has_effect, sizes) in gate.MODELS.items():
        if not has_effect or not any(key in label for key in UNEVEN) or (args.only and args.only not in label):
            continue
        _, recovery = gate.truth(model)
        for n in sizes:
            rates = cell(model, recovery, n, args.datasets)
            print(f"| {label} | {n:,} | " + " | ".join(f"{cov:.3f} ({dfd:.2f})" for cov, dfd in rates.values()) + " |",
                  flush=True)
    print("\nsparse, 10% at −4: share of datasets with no hurt example at −4 (coverage ≤ 1 − q): "
          + ", ".join(f"n = {n:,}: q = {no_failing_example_share(n):.3f}" for n in gate.SIZES))
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
