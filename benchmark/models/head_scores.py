"""The standard attention-head scores of `shakespeare-char`: previous-token, induction and duplicate-token, for every
head, read from the attention patterns `blocks_{l}_attn_hook_pattern # [b, H, T, T]` (A[b, h, q, k]: how much query
position q of head h attends to key position k; each row sums to 1 over k ≤ q).

    previous-token  P_lh = mean over the real windows b and the positions q = 1 … T−1 of A_lh[b, q, q − 1]

on the `val` split's non-overlapping windows (`data.shakespeare`, T = 128): a head that always attends to the
previous character scores 1; a head attending uniformly over k ≤ q scores mean_q 1/(q + 1) = 0.0349 for T = 128.

The induction and duplicate-token scores read sequences made to repeat: a random first character x₀, then S
characters r₁ … r_S drawn uniformly from the 65 (a seeded `torch.Generator`), then r₁ … r_S again, so the sequence is
x₀ r₁ … r_S r₁ … r_S, of length 2S + 1 ≤ 128 (position i holds r_i in the first copy and position S + i in the
second). At a second-copy position q ∈ {S + 1, …, 2S} the current character's earlier occurrence is at q − S, and
the character that followed it, the one an induction head predicts, at q − S + 1:

    induction       I_lh = mean over the sequences b and q ∈ {S + 1, …, 2S} of A_lh[b, q, q − S + 1]
    duplicate-token D_lh = mean over the same of A_lh[b, q, q − S]

(Olsson et al. 2022, "In-context learning and induction heads"; TransformerLens's `detect_head`). A uniform head
scores mean_q 1/(q + 1) on both (0.0136 for S = 50). The random characters may repeat inside one copy; the scores
ignore that, as the standard ones do (it moves them by ~1/65).

`head_scores(model, data_dir)` computes all three (`HeadScores`, each `# [L, H]`); `table` formats them;
`python -m benchmark.models.head_scores [--checkpoint …]` prints the table of the committed checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from ..data.shakespeare import open_split
from .shakespeare import N_HEADS, N_LAYERS, VOCAB, ShakespeareChar

CHECKPOINT = "checkpoints/shakespeare-char.safetensors"
REPEAT_LENGTH, N_REPEATS, SEED, BATCH = 50, 200, 0, 128

#: The definitions in one line each, for reports.
DEFINITIONS = {
    "previous-token": "mean over val windows and q ≥ 1 of A[q, q − 1]",
    "induction": "on x₀ r₁…r_S r₁…r_S (r uniform over the 65 characters), mean over q ∈ S+1…2S of A[q, q − S + 1]",
    "duplicate-token": "on the same sequences, mean over q ∈ S+1…2S of A[q, q − S]",
}


@dataclasses.dataclass(frozen=True)
class HeadScores:
    """Each score for every head: `[L, H]` float64 arrays (row l, column h is head l.h)."""

    previous_token: np.ndarray  # [L, H]
    induction: np.ndarray  # [L, H]
    duplicate_token: np.ndarray  # [L, H]
    n_windows: int  # real windows the previous-token score averages over
    repeat_length: int  # S
    n_repeats: int  # repeated sequences the induction and duplicate scores average over
    seed: int  # of the random characters

    def best(self, score: str, layer: int | None = None) -> tuple[int, int]:
        """(layer, head) with the highest `score` ("previous_token", "induction", "duplicate_token"), within
        `layer` when given."""
        values = np.asarray(getattr(self, score), dtype=np.float64)
        if layer is not None:
            return layer, int(values[layer].argmax())
        l, h = np.unravel_index(int(values.argmax()), values.shape)
        return int(l), int(h)


@contextlib.contextmanager
def captured_patterns(model: nn.Module, layers: range | list[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Forward hooks on `blocks_{l}_attn_hook_pattern` for each l in `layers` that store the pattern
    `# [b, H, T, T]` of the latest pass in the yielded dict (layer → pattern); the hooks are always removed."""
    store: dict[int, torch.Tensor] = {}
    handles = []
    try:
        for layer in layers:
            def hook(module: nn.Module, args: tuple, output: torch.Tensor, layer: int = layer) -> None:
                store[layer] = output.detach()
            handles.append(getattr(model, f"blocks_{layer}_attn_hook_pattern").register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def offset_means(model: ShakespeareChar, tokens: torch.Tensor, queries: torch.Tensor, offsets: list[int],
                 batch_size: int = BATCH) -> np.ndarray:
    """For each offset o: the mean over the rows of `tokens # [n, T]` and the query positions `queries # [m]` of
    A_lh[b, q, q − o], every head: `# [len(offsets), L, H]` float64. (`model.run` stops at the last pattern.)"""
    queries = torch.as_tensor(queries, dtype=torch.long)
    total = torch.zeros(len(offsets), N_LAYERS, N_HEADS, dtype=torch.float64)
    last = f"blocks_{N_LAYERS - 1}_attn_hook_pattern"
    with captured_patterns(model, range(N_LAYERS)) as patterns:
        for start in range(0, len(tokens), batch_size):
            model.run(tokens[start : start + batch_size], until=last)
            for layer in range(N_LAYERS):
                a = patterns[layer].double()  # [b, H, T, T]
                for i, offset in enumerate(offsets):
                    total[i, layer] += a[:, :, queries, queries - offset].sum((0, 2))  # [H]
    return (total / (len(tokens) * len(queries))).numpy()


def repeated_sequences(n: int = N_REPEATS, repeat_length: int = REPEAT_LENGTH, seed: int = SEED) -> torch.Tensor:
    """x₀ r₁ … r_S r₁ … r_S `# [n, 2S + 1]` int64: x₀ and r uniform over the 65 characters (seeded generator)."""
    if not 1 <= repeat_length <= 63:
        raise ValueError(f"repeat_length must be in 1..63 so that 2S + 1 ≤ 128, not {repeat_length}")
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(VOCAB, (n, 1), generator=g)
    r = torch.randint(VOCAB, (n, repeat_length), generator=g)
    return torch.cat([first, r, r], 1)


def previous_token_scores(model: ShakespeareChar, windows: torch.Tensor, batch_size: int = BATCH) -> np.ndarray:
    """P_lh `# [L, H]` (module docstring) over `windows # [n, T]`."""
    t = windows.shape[1]
    return offset_means(model, windows, torch.arange(1, t), [1], batch_size)[0]


def repeat_scores(model: ShakespeareChar, sequences: torch.Tensor, repeat_length: int,
                  batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(I_lh, D_lh), each `# [L, H]` (module docstring), over `sequences # [n, 2S + 1]` from `repeated_sequences`."""
    s = repeat_length
    second = torch.arange(s + 1, 2 * s + 1)  # the second copy's positions
    out = offset_means(model, sequences, second, [s - 1, s], batch_size)
    return out[0], out[1]


def head_scores(model: ShakespeareChar, data_dir: str | os.PathLike | None = None, *, n_windows: int | None = None,
                n_repeats: int = N_REPEATS, repeat_length: int = REPEAT_LENGTH, seed: int = SEED,
                windows: torch.Tensor | None = None) -> HeadScores:
    """Every head's previous-token score on the `val` windows (all 864 unless `n_windows`; or on `windows # [n, T]`
    when given: target selection passes its fit windows), and its induction and duplicate-token scores on
    `n_repeats` repeated random sequences of S = `repeat_length`."""
    if windows is None:
        windows = open_split("val", data_dir).inputs[:n_windows]  # [n, 128]
    induction, duplicate = repeat_scores(model, repeated_sequences(n_repeats, repeat_length, seed), repeat_length)
    return HeadScores(previous_token_scores(model, windows), induction, duplicate, len(windows), repeat_length,
                      n_repeats, seed)


def table(scores: HeadScores) -> str:
    """The scores as a text table, one row per head, with the definitions and the best head of each score."""
    lines = ["head  previous-token  induction  duplicate-token",
             *(f"{l}.{h}   {scores.previous_token[l, h]:14.3f}  {scores.induction[l, h]:9.3f}  "
               f"{scores.duplicate_token[l, h]:15.3f}"
               for l in range(scores.previous_token.shape[0]) for h in range(scores.previous_token.shape[1]))]
    lines.append(f"previous-token: {DEFINITIONS['previous-token']} ({scores.n_windows} windows)")
    lines.append(f"induction: {DEFINITIONS['induction']} (S = {scores.repeat_length}, {scores.n_repeats} sequences, "
                 f"seed {scores.seed})")
    lines.append(f"duplicate-token: {DEFINITIONS['duplicate-token']}")
    best = {name: scores.best(name) for name in ("previous_token", "induction", "duplicate_token")}
    lines.append("highest: " + ", ".join(f"{name.replace('_', '-')} {l}.{h}" for name, (l, h) in best.items()))
    return "\n".join(lines)


def print_table(scores: HeadScores) -> None:
    print(table(scores))


def main(argv: list[str] | None = None) -> None:
    """`python -m benchmark.models.head_scores`: the table of a checkpoint's head scores."""
    from ..models.registry import load_model

    parser = argparse.ArgumentParser(description="shakespeare-char's previous-token, induction and duplicate-token "
                                                 "scores for every head")
    parser.add_argument("--checkpoint", default=CHECKPOINT)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeat-length", type=int, default=REPEAT_LENGTH)
    parser.add_argument("--repeats", type=int, default=N_REPEATS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    model, _ = load_model("shakespeare-char", args.checkpoint)
    print_table(head_scores(model, args.data_dir, n_repeats=args.repeats, repeat_length=args.repeat_length,
                            seed=args.seed))


if __name__ == "__main__":
    main()
