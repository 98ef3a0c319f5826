"""Modular addition mod 113: every pair (a, b) as the tokens `a b =`, labelled (a + b) mod 113 (no download).

The 12,769 pairs are numbered i = 113·a + b. A seeded permutation,
`torch.randperm(12769, generator=Generator().manual_seed(SPLIT_SEED))`, puts its first ⌊0.3 · 12769⌋ = 3,830
pairs in `train` (what the model learned from) and the other 8,939 in `test`. `split_pairs` gives each split in
that permutation's order (the order training reads); `open_split` gives it sorted by i, so a split is a subset of
the 113 × 113 grid read row by row.

inputs: `# [n, 3]` int64 tokens (a, b, 113); labels `# [n]` int64.
content_hash = sha256 over ("modadd-p113/<split>", int64 token bytes, int64 label bytes).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import UserError
from .base import TensorExampleSet

P = 113  # the modulus; token P is "="
N_PAIRS = P * P
TRAIN_FRACTION = 0.3
SPLIT_SEED = 0
SPLITS = ("train", "test")


def split_pairs(seed: int = SPLIT_SEED) -> dict[str, torch.Tensor]:
    """The pair numbers i = 113·a + b of each split, in the seeded permutation's order (module docstring)."""
    perm = torch.randperm(N_PAIRS, generator=torch.Generator().manual_seed(seed))
    n_train = int(TRAIN_FRACTION * N_PAIRS)
    return {"train": perm[:n_train], "test": perm[n_train:]}


def pair_tokens(pairs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The tokens `a b =` of pair numbers `# [n]`: `# [n, 3]` int64."""
    pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
    return torch.stack([pairs // P, pairs % P, torch.full_like(pairs, P)], 1)


def pair_labels(pairs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The answers (a + b) mod 113 of pair numbers `# [n]`: `# [n]` int64."""
    pairs = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
    return (pairs // P + pairs % P) % P


def open_split(split: str, data_dir: object = None, imagenet_dir: object = None) -> TensorExampleSet:
    """The zoo's opener (`zoo.DatasetSpec.opener`): the pairs are computed, so no directory is read."""
    if split not in SPLITS:
        raise UserError(f"unknown modadd-p113 split '{split}': use 'train' or 'test'.")
    pairs = torch.sort(split_pairs()[split]).values  # [n]
    tokens, labels = pair_tokens(pairs).contiguous(), pair_labels(pairs).numpy()
    digest = hashlib.sha256(f"modadd-p113/{split}\n".encode())
    digest.update(tokens.numpy().tobytes())
    digest.update(labels.astype(np.int64).tobytes())
    return TensorExampleSet("modadd-p113", split, tokens, labels, digest.hexdigest())
