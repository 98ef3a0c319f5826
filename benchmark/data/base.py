"""What the harness needs from a dataset, and seeded subset selection.

An `ExampleSet` is one split of a dataset: labels are cheap to read; inputs (images,
or token ids) are loaded on demand in model-ready form, so a large split (ImageNet)
is streamed in batches and never held whole in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np
import torch


class ExampleSet(ABC):
    """One split of a dataset, e.g. MNIST test, or the modular-addition pairs held out from training."""

    name: str
    split: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def labels(self) -> np.ndarray:
        """Class index of every example `# [n]` (int64)."""

    @abstractmethod
    def load(self, indices: Sequence[int]) -> torch.Tensor:
        """Model-ready inputs for `indices`: images `# [len(indices), C, H, W]` float32, or token ids
        `# [len(indices), T]` int64."""

    @abstractmethod
    def content_hash(self) -> str:
        """A sha256 hex string that changes whenever the split's content does."""

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield `(batch_indices, inputs)` over `indices` in order."""
        indices = np.asarray(indices, dtype=np.int64)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            yield chunk, self.load(chunk)


class TensorExampleSet(ExampleSet):
    """A split held in memory as tensors (MNIST, digits: images; modular addition: token ids)."""

    def __init__(self, name: str, split: str, inputs: torch.Tensor, labels: np.ndarray, content_hash: str) -> None:
        self.name, self.split = name, split
        self.inputs = inputs  # [n, C, H, W] float32 images or [n, T] int64 token ids, model-ready
        self._labels = np.asarray(labels, dtype=np.int64)
        self._hash = content_hash

    def __len__(self) -> int:
        return len(self._labels)

    def labels(self) -> np.ndarray:
        return self._labels

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        return self.inputs[torch.as_tensor(np.asarray(indices), dtype=torch.long)]

    def content_hash(self) -> str:
        return self._hash


def seeded_subset(labels: np.ndarray, size: int, seed: int, balanced: bool = True) -> np.ndarray:
    """Indices of a seeded subset of `size` examples, sorted.

    `balanced`: as equal a count per class as `size` allows (classes with fewer
    examples give what they have; the rest is spread over the others), chosen by
    a seeded permutation within each class. When `size` does not divide evenly,
    the classes that get one more are a seeded random choice over all classes
    (never the lowest class ids: 500 of 1,000 ImageNet classes means 500 random
    classes, one image each). `size >= len(labels)` returns all.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if not balanced:
        return np.sort(rng.choice(n, size=size, replace=False))
    classes = np.unique(labels)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    quota = {c: 0 for c in classes}
    remaining = size
    open_classes = [classes[i] for i in rng.permutation(len(classes))]  # who gets the remainder: seeded, not by id
    while remaining > 0 and open_classes:
        share = max(1, remaining // len(open_classes))
        for c in list(open_classes):
            take = min(share, len(pools[c]) - quota[c], remaining)
            quota[c] += take
            remaining -= take
            if quota[c] >= len(pools[c]):
                open_classes.remove(c)
            if remaining == 0:
                break
    chosen = np.concatenate([pools[c][: quota[c]] for c in classes])
    return np.sort(chosen)
