"""scikit-learn's 8x8 handwritten digits (bundled with scikit-learn: no download).

1797 images, values 0..16, scaled to [0, 1]: x = pixels / 16 `# [n, 1, 8, 8]` float32.
Split: stratified by label with `sklearn.model_selection.train_test_split(test_size=900,
random_state=SPLIT_SEED, stratify=labels)`; 897 train, 900 test; indices sorted.
content_hash = sha256 over (split name, float32 image bytes, int64 label bytes, int64 split indices).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..errors import UserError
from .base import TensorExampleSet

SPLIT_SEED = 0
N_TEST = 900


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Sorted indices of the stratified train/test split `{"train": [897], "test": [900]}`."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=N_TEST, random_state=seed, stratify=labels)
    return {"train": np.sort(train).astype(np.int64), "test": np.sort(test).astype(np.int64)}


def open_split(split: str, data_dir: object = None, imagenet_dir: object = None) -> TensorExampleSet:
    """The zoo's opener (`zoo.DatasetSpec.opener`): bundled with scikit-learn, so no directory is read."""
    return open_digits(split)


def open_digits(split: str) -> TensorExampleSet:
    """One split of the digits dataset as a `TensorExampleSet` (name "digits")."""
    if split not in ("train", "test"):
        raise UserError(f"unknown digits split '{split}': use 'train' or 'test'.")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    all_labels = np.asarray(bunch.target, dtype=np.int64)  # [1797]
    index = split_indices(all_labels)[split]
    images = (np.asarray(bunch.images, dtype=np.float32)[index] / np.float32(16.0))[:, None]  # [n, 1, 8, 8]
    images = np.ascontiguousarray(images)
    labels = np.ascontiguousarray(all_labels[index])
    digest = hashlib.sha256(f"digits/{split}\n".encode())
    for part in (images.tobytes(), labels.tobytes(), index.tobytes()):
        digest.update(part)
    return TensorExampleSet("digits", split, torch.from_numpy(images), labels, digest.hexdigest())
