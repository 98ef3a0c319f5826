"""Eval and fit sets are class-balanced over every class, for any folder size (a synthetic 50k ImageNet label list)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from benchmark.data.base import seeded_subset
from benchmark.harness.context import _splits
from benchmark.tasks import all_tasks


class LabelList:
    """The one thing the split needs from an image folder: its labels."""

    def __init__(self, labels: np.ndarray):
        self._labels = labels

    def labels(self) -> np.ndarray:
        return self._labels


def imagenet_task(eval_size: int, fit_size: int):
    task = next(t for t in all_tasks().values() if t.dataset == "imagenet")
    return replace(task, eval_size=eval_size, fit_size=fit_size)


def test_a_full_validation_folder_gives_balanced_disjoint_sets():
    labels = np.repeat(np.arange(1000), 50)  # 50,000 images, 50 per class, as ImageNet's validation set
    task = imagenet_task(eval_size=10_000, fit_size=500)
    folder = LabelList(labels)
    eval_indices, fit_indices = _splits(task, folder, folder, task.eval_size, task.fit_size)
    assert len(fit_indices) == 500 and len(eval_indices) == 10_000
    assert not set(fit_indices) & set(eval_indices)
    fit_counts = np.bincount(labels[fit_indices], minlength=1000)
    assert fit_counts.max() == 1  # 500 classes, one image each…
    upper = int((fit_counts[500:] > 0).sum())  # …drawn from all 1,000 (hypergeometric: mean 250, SD 11)
    assert 200 <= upper <= 300, upper
    assert (np.bincount(labels[eval_indices], minlength=1000) == 10).all()  # exactly 10 per class


def test_a_remainder_goes_to_random_classes_not_the_lowest_ids():
    labels = np.repeat(np.arange(1000), 50)
    counts = np.bincount(labels[seeded_subset(labels, 1500, seed=3)], minlength=1000)
    assert set(counts) == {1, 2} and (counts == 2).sum() == 500
    assert 200 <= (counts[500:] == 2).sum() <= 300
    other = np.bincount(labels[seeded_subset(labels, 1500, seed=4)], minlength=1000)
    assert (other != counts).any()  # another seed, other classes
    assert (np.bincount(labels[seeded_subset(labels, 1500, seed=3)], minlength=1000) == counts).all()  # reproducible


def test_small_classes_give_what_they_have_and_the_rest_is_spread():
    labels = np.concatenate([np.repeat(np.arange(10), 100), np.full(3, 10)])  # class 10 holds only 3 images
    counts = np.bincount(labels[seeded_subset(labels, 550, seed=0)], minlength=11)
    assert counts[10] == 3 and counts.sum() == 550
    assert counts[:10].max() - counts[:10].min() <= 1
