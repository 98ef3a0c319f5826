"""Dataset names in task files → loaders."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, unknown
from .base import ImageSet

DATASETS = ("digits", "mnist", "imagenet")


def open_split(dataset: str, split: str, data_dir: str | Path | None = None, imagenet_dir: str | Path | None = None) -> ImageSet:
    """One split of a dataset, verified, ready for `ImageSet.load`."""
    if dataset == "digits":
        from .digits import open_digits

        return open_digits(split)
    if dataset == "mnist":
        from .mnist import open_mnist

        return open_mnist(split, data_dir)
    if dataset == "imagenet":
        from .imagenet import ImageNetFolder

        if imagenet_dir is None:
            raise UserError("this task needs ImageNet validation images: pass --imagenet DIR (an <wnid>/*.JPEG folder) or set REPLACEBENCH_IMAGENET.")
        return ImageNetFolder(imagenet_dir, data_dir=data_dir)
    raise unknown("dataset", dataset, DATASETS, "replacebench tasks")
