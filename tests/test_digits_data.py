"""The digits dataset: fixed stratified split, exact content, stable hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from benchmark.data.digits import open_digits, split_indices
from benchmark.errors import UserError


@pytest.fixture(scope="module")
def bunch():
    return load_digits()


def test_sizes_disjoint_and_complete(bunch):
    train, test = open_digits("train"), open_digits("test")
    assert (len(train), len(test)) == (897, 900)
    assert train.inputs.shape == (897, 1, 8, 8) and test.inputs.shape == (900, 1, 8, 8)
    assert train.inputs.dtype == torch.float32
    idx = split_indices(np.asarray(bunch.target))
    assert len(np.intersect1d(idx["train"], idx["test"])) == 0
    np.testing.assert_array_equal(np.union1d(idx["train"], idx["test"]), np.arange(1797))
    assert np.all(np.diff(idx["train"]) > 0) and np.all(np.diff(idx["test"]) > 0)


def test_content_equals_sklearn(bunch):
    idx = split_indices(np.asarray(bunch.target))
    for split in ("train", "test"):
        ds = open_digits(split)
        np.testing.assert_array_equal(ds.inputs[:, 0].numpy(), (bunch.images[idx[split]] / 16.0).astype(np.float32))
        np.testing.assert_array_equal(ds.labels(), bunch.target[idx[split]])
        assert 0.0 <= ds.inputs.min().item() and ds.inputs.max().item() == 1.0


def test_stratified(bunch):
    """Each class is split in the overall 900/1797 proportion, to within one example."""
    labels = np.asarray(bunch.target)
    test_counts = np.bincount(open_digits("test").labels(), minlength=10)
    expected = np.bincount(labels, minlength=10) * 900 / 1797
    assert np.all(np.abs(test_counts - expected) <= 1.0)


def test_deterministic_and_hash(bunch):
    a, b = open_digits("test"), open_digits("test")
    assert torch.equal(a.inputs, b.inputs) and np.array_equal(a.labels(), b.labels())
    assert a.content_hash() == b.content_hash()
    assert a.content_hash() != open_digits("train").content_hash()
    # independent recomputation of the documented hash
    idx = split_indices(np.asarray(bunch.target))["test"]
    digest = hashlib.sha256(b"digits/test\n")
    digest.update(np.ascontiguousarray((bunch.images[idx] / 16.0).astype(np.float32)[:, None]).tobytes())
    digest.update(bunch.target[idx].astype(np.int64).tobytes())
    digest.update(idx.astype(np.int64).tobytes())
    assert a.content_hash() == digest.hexdigest()


def test_another_seed_gives_another_split(bunch):
    labels = np.asarray(bunch.target)
    assert not np.array_equal(split_indices(labels, seed=0)["test"], split_indices(labels, seed=1)["test"])


def test_bad_split():
    with pytest.raises(UserError, match="'train' or 'test'"):
        open_digits("val")
