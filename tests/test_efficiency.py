"""What the original units cost (multiply-adds, counted from the model) and what replace costs (timed by the harness)."""

from __future__ import annotations

import json

import pytest
import torch.nn.functional as F
from helpers import write_submission

from benchmark.harness.efficiency import (
    max_pools_as_averages,
    original_macs,
    original_seconds_per_example,
)
from benchmark.models.digits import DigitsMLP
from benchmark.models.inception import InceptionV1
from benchmark.models.mnist import MnistCNN, MnistMLP


def test_multiply_adds_equal_the_architectures_count():
    assert original_macs(DigitsMLP(), "fc1", (17,), {"image": (1, 8, 8)}) == 64
    assert original_macs(MnistMLP(), "fc1", (13, 14), {"image": (1, 28, 28)}) == 2 * 784
    assert original_macs(MnistMLP(), "fc2", (3,), {"image": (1, 28, 28)}) == 784 * 256 + 256  # all of fc1, then one unit
    # conv2 (3×3 over 32 channels) at 14×14 positions, from conv1 (the nearest input) …
    assert original_macs(MnistCNN(), "conv2", (7,), {"image": (1, 28, 28), "conv1": (32, 28, 28)}) == 288 * 14 * 14
    # … and from the image: every conv1 output (3×3 over 1 channel, 32 × 28 × 28) feeds it through the 2×2 pool,
    # next to the padding too (a max pool would pass a gradient to only one cell of each window)
    assert original_macs(MnistCNN(), "conv2", (7,), {"image": (1, 28, 28)}) == 288 * 14 * 14 + 9 * 32 * 28 * 28
    net = InceptionV1()  # mixed3b from mixed3a (28×28): 5×5 branch (bottleneck 256→32, then 5×5×32), pool branch
    assert original_macs(net, "mixed3b", (379,), {"mixed3a": (256, 28, 28)}) == (256 * 32 + 25 * 32) * 28 * 28
    assert original_macs(net, "mixed3b", (450,), {"mixed3a": (256, 28, 28)}) == 256 * 28 * 28


def test_max_pools_average_only_inside_the_block():
    original = F.max_pool2d
    with pytest.raises(RuntimeError), max_pools_as_averages():
        assert F.max_pool2d is not original
        raise RuntimeError("boom")
    assert F.max_pool2d is original


def test_original_time_is_a_positive_share_of_the_layer():
    import torch

    one = original_seconds_per_example(MnistMLP(), "fc1", (13,), {"image": (1, 28, 28)}, torch.device("cpu"))
    assert 0 < one < 1e-3


SLOW = '''
import time
import torch


def replace(image, task):
    time.sleep(0.05)
    return torch.zeros(image.shape[0], *task.target_shape)
'''


def test_replace_time_is_measured_by_the_harness(tmp_path, cli, session_cache):
    folder = write_submission(tmp_path / "slow", SLOW)
    proc = cli("score", str(folder), "--task", "digits-mlp/fc1:17", "--no-record", "--json")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    e = record["efficiency"]
    calls = -(-900 // 500)  # one replace call per eval batch (900 examples, batches of 500)
    assert e["replace_seconds_per_example"] >= calls * 0.05 / 900
    assert e["original_macs_per_example"] == 64 and e["original_seconds_per_example"] > 0


def test_records_of_schema_4_migrate_without_efficiency():
    from benchmark.record.migrate import migrate

    assert migrate({"schema_version": 4, "results": {}})["efficiency"] is None


def test_records_of_schema_5_migrate_to_the_public_split():
    from benchmark.record.migrate import SCHEMA_VERSION, migrate

    new = migrate({"schema_version": 5, "results": {}, "efficiency": None})
    assert new == {"schema_version": SCHEMA_VERSION, "results": {}, "efficiency": None, "split": "public",
                   "heldout_commitment": None}
    old = migrate({"schema_version": 5, "results": {}, "provenance": {"seed": 0, "bootstrap_resamples": 2000}})
    assert old["provenance"]["intervals"] == "bootstrap-bca"  # checked with the bootstrap it was made with
