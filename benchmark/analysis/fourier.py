"""The (a, b) grid of a two-operand token task and its 2-D Fourier power (modular addition, Nanda et al. 2023).

The inputs `a b =` with a, b in 0..p−1 are the p × p grid, pair number i = p·a + b (row a, column b; `data.modadd`
numbers the pairs so). A value per pair `# [n]` is laid on the grid `# [p, p]` (`to_grid`), NaN where a pair has none.

For a grid g `# [p, p]` (every pair), its 2-D discrete Fourier transform and power are

    G(x, y) = Σ_a Σ_b g(a, b) · exp(−2πi (x·a + y·b) / p)       (`numpy.fft.fft2`; x, y in 0..p−1)
    P(x, y) = |G(x, y)|², with the constant term P(0, 0) set to 0,

so the total power T = Σ P = p² · Σ_{a,b} (g − mean g)² (Parseval). Frequency k (w = 2πk/p, k = 1..(p−1)/2; k and
p − k are the same frequency, for p odd) owns the 8 terms

    S_k = {(x, y) : x, y ∈ {0, k, p − k}} \\ {(0, 0)} = (±k, 0), (0, ±k), (±k, ±k)      (−k ≡ p − k),

the DFT terms of the functions of a and b of frequency k that Nanda et al. fit a neuron with: cos wa, sin wa,
cos wb, sin wb and their four products (cos wa · cos wb, …). The sets S_k of different k do not overlap. The power
of frequency k is P_k = Σ_{S_k} P, its share s_k = P_k / T, and the dominant frequency k* = argmax_k P_k (the
smallest k on a tie). The rest, T − Σ_k P_k, is in terms (x, y) with x ∉ {0, ±y} and y ≠ 0, owned by no frequency.

Because the grid is complete, those 9 functions (with the constant) are orthogonal on it, so s_k is also the R² of
the least-squares fit of g by them (tested): the same measure `select` uses to cluster neurons, there on the fit
pairs. A constant grid (a dead neuron) has T = 0: no share and no dominant frequency (k* = 0).
"""

from __future__ import annotations

import numpy as np

#: The definition in one line, for reports.
DEFINITION = ("P(x, y) = |fft2(g)(x, y)|² over the p × p grid g(a, b), P(0, 0) set to 0; frequency k (1..(p−1)/2) "
              "owns the 8 terms (±k, 0), (0, ±k), (±k, ±k) (−k ≡ p − k): P_k = their sum, its share s_k = P_k / Σ P, "
              "and the dominant frequency k* = argmax_k P_k (the smallest on a tie); s_k equals the R² of the "
              "least-squares fit by 1, cos wa, sin wa, cos wb, sin wb and their four products, w = 2πk/p.")


def pair_numbers(tokens: np.ndarray, p: int) -> np.ndarray:
    """The pair numbers i = p·a + b `# [n]` (int64) of token rows `a b =` `# [n, 3]`."""
    tokens = np.asarray(tokens).astype(np.int64)
    return tokens[:, 0] * p + tokens[:, 1]


def grid_tokens(p: int) -> np.ndarray:
    """Every pair's tokens `a b =` `# [p², 3]` int64, row by row (pair number i = p·a + b at row i); '=' is p."""
    i = np.arange(p * p, dtype=np.int64)
    return np.stack([i // p, i % p, np.full_like(i, p)], axis=1)


def to_grid(values: np.ndarray, pairs: np.ndarray, p: int) -> np.ndarray:
    """Values per pair `# [n, ...]` on the grid `# [p, p, ...]` (float64), NaN where no pair put a value."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full((p * p, *values.shape[1:]), np.nan)
    out[np.asarray(pairs, dtype=np.int64)] = values
    return out.reshape(p, p, *values.shape[1:])


def power(grid: np.ndarray) -> np.ndarray:
    """P(x, y) = |fft2(g)(x, y)|² `# [p, p]` (float64) of a complete grid `# [p, p]`, with P(0, 0) = 0; exactly 0
    everywhere for a constant grid (where the FFT would leave rounding noise)."""
    grid = np.asarray(grid, dtype=np.float64)
    if np.ptp(grid) == 0:
        return np.zeros(grid.shape)
    out = np.abs(np.fft.fft2(grid)) ** 2
    out[0, 0] = 0.0
    return out


def frequency_terms(k: int, p: int) -> list[tuple[int, int]]:
    """The 8 terms S_k (module docstring) as (x, y) indices into a p × p power array."""
    values = (0, k % p, (-k) % p)
    return [(x, y) for x in values for y in values if (x, y) != (0, 0)]


def frequency_power(pw: np.ndarray) -> np.ndarray:
    """P_k `# [(p−1)/2 + 1]` for k = 0..(p−1)/2 of a power array `# [p, p]` (entry 0 is 0: no frequency)."""
    p = pw.shape[0]
    out = np.zeros(p // 2 + 1)
    for k in range(1, p // 2 + 1):
        xs, ys = zip(*frequency_terms(k, p))
        out[k] = pw[list(xs), list(ys)].sum()
    return out


def dominant(pw: np.ndarray) -> tuple[int, np.ndarray]:
    """(k*, s `# [(p−1)/2 + 1]`): the dominant frequency and every frequency's share of the total power (entry 0
    is 0); (0, zeros) for a constant grid (no power)."""
    per_k = frequency_power(pw)
    total = float(pw.sum())
    if not total > 0:
        return 0, np.zeros_like(per_k)
    return int(np.argmax(per_k)), per_k / total
