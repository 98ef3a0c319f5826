"""The gate and the intervals, by simulation: how often "defined" is declared with no effect, and how often
the 95% intervals hold the truth.

    python benchmarks/coverage_gate.py [--datasets 1000] [--bootstrap] [--only TEXT]

Per example i of n (seeded, so the table is reproducible). Clean loss C_i, ablated A_i = C_i + D_i,
replaced P_i = A_i − ρ_i D_i with a per-example recovery ρ_i ~ Beta(7, 3) (true recovery 0.7 when ρ is
independent of D):

- **moderate**: C ~ LogNormal(−1, 0.5); D = LogNormal(−3, 0.5) + Normal(0, 0.05): every example is hurt a little.
- **sparse, heavy-tailed** (the issue's): C ~ LogNormal(−1, 1.5); an example is hurt with probability
  logistic(−2.5 + 0.8 (log C + 1)) (about 10%, more often when its clean loss is high), by LogNormal(−1.5, 1.2).
- **KL, moderate / sparse**: K_A ~ LogNormal(−3, σ), σ = 0.8 / 1.5; K_P = K_A (1 − ρ) + Exp(mean 0.01).
  KL recovery 1 − E[K_P]/E[K_A] = 0.7 − 0.01 / E[K_A].

**modadd-p113** (`benchmarks/data/modadd_losses.npz`, made by `benchmarks/modadd_losses.py`): the real eval set's
8,939 pairs (C_i, A_i), clean and zero-ablated losses, of two shipped tasks: all 512 MLP neurons ("MLP", `:all`,
effect E[D] = 4.690, every pair hurt, by 1.7 to 12.4) and the largest key-frequency cluster (`:freq8`, k = 8,
179 neurons; effect 7.742, 14% of pairs not hurt, the rest by up to 35). Clean losses are near 0 (mean 8.8e-7).
A dataset is a seeded bootstrap of those pairs (n drawn with replacement, C and A kept together), so the population
is the eval set and the truth is exact: effect = its mean D, recovery = Σ E[ρ | D_i] D_i / Σ D_i. With F(D) the
rank of D among the 8,939 divided by 8,939 (the hardest-hit pair has F = 1), ρ_i is one of

- **Beta(7, 3)**, independent of D: recovery 0.700 on both;
- **graded** ρ = 1 − F(D): the harder a pair is hit, the less it recovers (MLP 0.423, cluster 0.234);
- **hardest 10% at −4**: ρ = −4 where F(D) > 0.9, else 1 (the Integrity issue's uneven recovery, on the pairs
  that carry the most effect; MLP 0.201, cluster −0.440);
- **near 100%, Beta(99, 1)**: recovery 0.990 on both;
- **near 100%, hardest 1% at 0**: ρ = 0 where F(D) > 0.99, else 1 (MLP 0.979, cluster 0.962).

Uneven recovery (Integrity, round 2): P = A − ρ_i D with ρ_i depending on the example (`with_recovery`):

- **moderate / sparse, heavy-tailed: 10% at −4**: the issue's model, ρ = −4 on a random 10% of examples, else 1
  (truth 0.5);
- **sparse, heavy-tailed: graded**: ρ = 1 − 2 F(D) on hurt examples, F the LogNormal(−1.5, 1.2) CDF of the hurt size;
- **spiky (1% carry the effect)**, matched to the real tasks' sparsity: 1% of examples hurt by LogNormal(0, 0.5),
  the rest helped by Normal(−0.005, 0.05): the top 1% carry ≈ 178% of the net effect, excess kurtosis ≈ 200.
  ρ ~ Beta(7, 3) on the bulk; on the spikes ρ = −1 (or 0) for a random 30%, else 1;
- **real modadd-p113** (`benchmarks/data/modadd_triples.npz`, `Triples`): a bootstrap of real per-example
  (clean, ablated, replaced) triples, kept together, from `replacebench score` runs (runs/TASK/ENTRY.npz,
  `loss.*`) of shipped single-neuron modadd-p113 tasks: neuron 423 with the `mean` entry against resample
  ablation (top 1% carry 88% of the effect, kurtosis 899, R 0.917), neuron 401 `mean` vs zero (70%, 1520,
  R 0.981) and 401 `zero` vs resample (87%, 2649, R 0.415). Truth: Σ(A − P) / Σ(A − C) over the 8,939.

Nulls (no effect, E[D] = 0 exactly), for the false-"defined" rate:
- **symmetric**: D ~ Normal(0, 0.05);
- **sparse ±**: the sparse model's hurt sizes with a random sign (as many helped as hurt);
- **skewed**: 5% of examples hurt by LogNormal(−1.5, 1.2), every example helped by that mean: a right-skewed D.

Columns: the gate's "defined" rate, the effect interval's coverage, and the recovery interval's coverage
among the defined datasets (an undefined one holds no recovery interval; its rate is beside it). With
`--bootstrap`, the same for the bootstrap BCa intervals of records before schema 6 (B = 1,000).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark import stats  # noqa: E402

Model = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
SIZES = (200, 900, 10_000)
MODADD_SIZES = (200, 900, 8_939)  # 8,939: the real eval set
MODADD_LOSSES = Path(__file__).resolve().parent / "data" / "modadd_losses.npz"


def _replaced(rng: np.random.Generator, a: np.ndarray, d: np.ndarray) -> np.ndarray:
    return a - rng.beta(7, 3, len(a)) * d


def moderate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = rng.lognormal(-1.0, 0.5, n)
    d = rng.lognormal(-3.0, 0.5, n) + rng.normal(0, 0.05, n)
    return c, c + d, _replaced(rng, c + d, d)


def _sparse_hurt(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    log_c = rng.normal(-1.0, 1.5, n)
    p_hurt = 1 / (1 + np.exp(-(-2.5 + 0.8 * (log_c + 1.0))))
    return np.exp(log_c), rng.lognormal(-1.5, 1.2, n) * (rng.random(n) < p_hurt)


def sparse(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c, d = _sparse_hurt(rng, n)
    return c, c + d, _replaced(rng, c + d, d)


def kl_model(sigma: float) -> Model:
    def model(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k_a = rng.lognormal(-3.0, sigma, n)
        k_p = k_a * (1 - rng.beta(7, 3, n)) + rng.exponential(0.01, n)
        return np.zeros(n), k_a, k_p  # KL recovery is recovery with a clean "loss" of 0
    return model


def with_recovery(base: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]],
                  rho: Callable[[np.random.Generator, np.ndarray], np.ndarray]) -> Model:
    """C, A = C + D from `base`; P = A − ρ D with ρ = `rho`(rng, D) `# [n]`: recovery that depends on the example."""
    def model(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, d = base(rng, n)
        return c, c + d, c + d - rho(rng, d) * d
    return model


def _moderate_hurt(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.lognormal(-1.0, 0.5, n), rng.lognormal(-3.0, 0.5, n) + rng.normal(0, 0.05, n)


def ten_percent_at_minus4(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    """The Integrity issue's uneven recovery: ρ = −4 on a random 10% of examples, 1 on the rest (truth 0.5)."""
    return np.where(rng.random(len(d)) < 0.1, -4.0, 1.0)


def graded_sparse(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    """ρ = 1 − 2 F(D) on hurt examples, F the CDF of their LogNormal(−1.5, 1.2) size: the hardest hit recover −1."""
    f = special.ndtr((np.log(np.maximum(d, 1e-300)) + 1.5) / 1.2)
    return np.where(d > 0, 1.0 - 2.0 * f, 1.0)


SPIKE_SHARE = 0.01


def _spiky_hurt(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The real tasks' sparsity: 1% of examples hurt by LogNormal(0, 0.5), the rest helped a little, Normal(−0.005,
    0.05). The top 1% carry about 140% of the net effect; excess kurtosis about 200."""
    c = rng.lognormal(-1.0, 0.5, n)
    spike = rng.random(n) < SPIKE_SHARE
    return c, np.where(spike, rng.lognormal(0.0, 0.5, n), rng.normal(-0.005, 0.05, n))


def spiky_recovery(at: float) -> Callable[[np.random.Generator, np.ndarray], np.ndarray]:
    """ρ ~ Beta(7, 3) on the bulk; on the spikes (D > 0.5), ρ = `at` for a random 30%, else 1."""
    def rho(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
        spike_rho = np.where(rng.random(len(d)) < 0.3, at, 1.0)
        return np.where(d > 0.5, spike_rho, rng.beta(7, 3, len(d)))
    return rho


def null_symmetric(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = rng.lognormal(-1.0, 0.5, n)
    d = rng.normal(0, 0.05, n)
    return c, c + d, _replaced(rng, c + d, d)


def null_sparse_signed(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c, d = _sparse_hurt(rng, n)
    d = d * np.where(rng.random(n) < 0.5, 1.0, -1.0)
    return c, c + d, _replaced(rng, c + d, d)


SKEWED_HELP = 0.05 * math.exp(-1.5 + 1.2**2 / 2)  # E[hurt] = 5% × E[LogNormal(−1.5, 1.2)]


def null_skewed(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = rng.lognormal(-1.0, 1.5, n)
    d = rng.lognormal(-1.5, 1.2, n) * (rng.random(n) < 0.05) - SKEWED_HELP
    return c, c + d, _replaced(rng, c + d, d)


@dataclass(frozen=True)
class Recovery:
    """A per-example recovery ρ given F(D) `# [n]`: `draw` samples it, `expected` is E[ρ | F(D)]."""

    draw: Callable[[np.random.Generator, np.ndarray], np.ndarray]
    expected: Callable[[np.ndarray], np.ndarray]


def beta_recovery(a: float, b: float) -> Recovery:
    return Recovery(lambda rng, f: rng.beta(a, b, len(f)), lambda f: np.full(len(f), a / (a + b)))


def hardest_at(share: float, rho: float) -> Recovery:
    """ρ = `rho` on the pairs with F(D) > 1 − share (the hardest hit), 1 elsewhere."""
    def rule(f: np.ndarray) -> np.ndarray:
        return np.where(f > 1 - share, rho, 1.0)
    return Recovery(lambda rng, f: rule(f), rule)


RECOVERIES: dict[str, Recovery] = {
    "Beta(7, 3)": beta_recovery(7, 3),
    "graded": Recovery(lambda rng, f: 1 - f, lambda f: 1 - f),
    "hardest 10% at −4": hardest_at(0.10, -4.0),
    "near 100%, Beta(99, 1)": beta_recovery(99, 1),
    "near 100%, hardest 1% at 0": hardest_at(0.01, 0.0),
}


@dataclass(frozen=True)
class Resampled:
    """A bootstrap of the real (clean, zero-ablated) loss pairs `# [N]`, replaced as A − ρ D (module docstring)."""

    clean: np.ndarray  # [N]
    ablated: np.ndarray  # [N]
    recovery: Recovery

    @cached_property
    def rank(self) -> np.ndarray:
        """F(D) `# [N]`: each pair's rank by D, 1..N (ties in index order), divided by N."""
        d = self.ablated - self.clean
        order = np.argsort(d, kind="stable")
        ranks = np.empty(len(d))
        ranks[order] = np.arange(1, len(d) + 1)
        return ranks / len(d)

    def __call__(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = rng.integers(0, len(self.clean), n)  # [n]
        c, a = self.clean[i], self.ablated[i]
        return c, a, a - self.recovery.draw(rng, self.rank[i]) * (a - c)

    def truth(self) -> tuple[float, float]:
        """(effect, recovery) of the population, exactly: (mean D, Σ E[ρ | D_i] D_i / Σ D_i)."""
        d = self.ablated - self.clean
        return float(d.mean()), float((self.recovery.expected(self.rank) * d).sum() / d.sum())


def modadd_models() -> dict[str, Resampled]:
    """The modadd-p113 data models: {label: model} for both targets and every recovery."""
    with np.load(MODADD_LOSSES) as data:
        arrays = {key: data[key] for key in data.files}
    targets = {"MLP": "mlp", f"k = {int(arrays['cluster_k'])} cluster": "cluster"}
    return {f"modadd {label}: {name}": Resampled(arrays[f"{key}_clean"], arrays[f"{key}_zero"], recovery)
            for label, key in targets.items() for name, recovery in RECOVERIES.items()}


MODADD_TRIPLES = Path(__file__).resolve().parent / "data" / "modadd_triples.npz"


@dataclass(frozen=True)
class Triples:
    """A bootstrap of real per-example (clean, ablated, replaced) losses `# [N]`, kept together: real, uneven
    recovery. Truth = Σ(A − P) / Σ(A − C) over the N."""

    clean: np.ndarray  # [N]
    ablated: np.ndarray  # [N]
    replaced: np.ndarray  # [N]

    def __call__(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = rng.integers(0, len(self.clean), n)  # [n]
        return self.clean[i], self.ablated[i], self.replaced[i]

    def truth(self) -> tuple[float, float]:
        d = self.ablated - self.clean
        return float(d.mean()), float((self.ablated - self.replaced).sum() / d.sum())


TRIPLES = {  # label: key in MODADD_TRIPLES
    "real modadd-p113, neuron 423: `mean` entry vs resample": "n423_mean_resample",
    "real modadd-p113, neuron 401: `mean` entry vs zero": "n401_mean_zero",
    "real modadd-p113, neuron 401: `zero` entry vs resample": "n401_zero_resample",
}


def triples_models() -> dict[str, Triples]:
    """Real sparse tasks with real replacements (`benchmarks/data/modadd_triples.npz`, module docstring)."""
    with np.load(MODADD_TRIPLES) as data:
        return {label: Triples(*(data[f"{key}_{part}"].astype(np.float64) for part in ("clean", "ablated", "replaced")))
                for label, key in TRIPLES.items()}


MODELS: dict[str, tuple[Model, bool, tuple[int, ...]]] = {
    "moderate": (moderate, True, SIZES),
    "sparse, heavy-tailed": (sparse, True, SIZES),
    "moderate: 10% at −4": (with_recovery(_moderate_hurt, ten_percent_at_minus4), True, SIZES),
    "sparse, heavy-tailed: 10% at −4": (with_recovery(_sparse_hurt, ten_percent_at_minus4), True, SIZES),
    "sparse, heavy-tailed: graded": (with_recovery(_sparse_hurt, graded_sparse), True, SIZES),
    "spiky (1% carry the effect): 30% of spikes at −1": (with_recovery(_spiky_hurt, spiky_recovery(-1.0)), True,
                                                           SIZES),
    "spiky (1% carry the effect): 30% of spikes at 0": (with_recovery(_spiky_hurt, spiky_recovery(0.0)), True,
                                                          SIZES),
    "KL, moderate (σ 0.8)": (kl_model(0.8), True, SIZES),
    "KL, sparse (σ 1.5)": (kl_model(1.5), True, SIZES),
    **{label: (model, True, MODADD_SIZES) for label, model in modadd_models().items()},
    **{label: (model, True, MODADD_SIZES) for label, model in triples_models().items()},
    "null: symmetric": (null_symmetric, False, SIZES),
    "null: sparse ±": (null_sparse_signed, False, SIZES),
    "null: skewed": (null_skewed, False, SIZES),
}


def truth(model: Model) -> tuple[float, float]:
    """(effect, recovery) of the population: exact for a `Resampled` model, else from 4 million examples (their own
    seed)."""
    if isinstance(model, (Resampled, Triples)):
        return model.truth()
    c, a, p = model(np.random.default_rng(99), 4_000_000)
    effect = float((a - c).mean())
    return effect, float((a - p).mean()) / effect


def cell(model: Model, has_effect: bool, n: int, datasets: int, bootstrap: bool) -> dict[str, float]:
    """Rates over `datasets` seeded datasets of n examples."""
    effect, recovery = truth(model)
    if not has_effect:
        effect = 0.0
    rng = np.random.default_rng(20261125 + n)
    methods: dict[str, Callable[..., dict[str, stats.RecoveryStats]]] = {"closed form": stats.recovery_stats}
    if bootstrap:
        methods["bootstrap BCa"] = lambda c, abl, p, seed: stats.bootstrap_recovery_stats(c, abl, p, n_resamples=1000,
                                                                                           seed=seed)
    counts = {f"{m}: {k}": 0 for m in methods for k in ("defined", "effect", "recovery")}
    for k in range(datasets):
        c, a, p = model(rng, n)
        for name, method in methods.items():
            s = (method(c, {"a": a}, p) if name == "closed form" else method(c, {"a": a}, p, seed=k))["a"]
            counts[f"{name}: defined"] += s.defined
            counts[f"{name}: effect"] += s.effect_low <= effect <= s.effect_high
            if s.defined:
                counts[f"{name}: recovery"] += s.recovery_low <= recovery <= s.recovery_high
    out = {}
    for name in methods:
        defined = counts[f"{name}: defined"]
        out[f"{name}: defined"] = defined / datasets
        out[f"{name}: effect"] = counts[f"{name}: effect"] / datasets
        out[f"{name}: recovery"] = counts[f"{name}: recovery"] / defined if defined and has_effect else math.nan
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", type=int, default=1000)
    parser.add_argument("--bootstrap", action="store_true", help="add the bootstrap BCa intervals (slow at n = 10,000)")
    parser.add_argument("--only", metavar="TEXT", help="only the data models whose label contains TEXT (e.g. modadd)")
    args = parser.parse_args()
    started = time.perf_counter()
    methods = ["closed form"] + (["bootstrap BCa"] if args.bootstrap else [])
    print(f"95% intervals and the gate, {args.datasets:,} datasets per cell; binomial SD of a rate near 0.95: "
          f"{math.sqrt(0.95 * 0.05 / args.datasets):.3f}, near 0.05: {math.sqrt(0.05 * 0.95 / args.datasets):.3f}\n")
    header = "| data model | n | " + " | ".join(f"{m}: defined | {m}: effect covered | {m}: recovery covered"
                                                for m in methods) + " |"
    print(header)
    print("|" + "---|" * (2 + 3 * len(methods)))
    for label, (model, has_effect, sizes) in MODELS.items():
        if args.only and args.only not in label:
            continue
        for n in sizes:
            rates = cell(model, has_effect, n, args.datasets, args.bootstrap)
            parts = []
            for m in methods:
                rec = rates[f"{m}: recovery"]
                parts += [f"{rates[f'{m}: defined']:.3f}", f"{rates[f'{m}: effect']:.3f}",
                          "—" if math.isnan(rec) else f"{rec:.3f}"]
            print(f"| {label} | {n:,} | " + " | ".join(parts) + " |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
