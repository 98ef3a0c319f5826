"""The seeded-random InceptionV1 family: the committed draw, and the liveness check on weights in the published format."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import run_cli
from helpers_inception import fetch_through_cli, random_state_dict

from benchmark import paths
from benchmark.data.base import seeded_subset
from benchmark.data.imagenet import ImageNetFolder
from benchmark.maintainer.inception_random import (
    CHANNELS,
    LAYERS,
    MIN_ACTIVE,
    PER_LAYER,
    curve_units,
    draw_order,
    select_random_inception,
)
from benchmark.models.inception import InceptionV1


def test_committed_file_is_the_seeded_draw():
    text, path = select_random_inception(None, unchecked=True)
    assert path == paths.tasks_dir() / "inceptionv1-random.toml" and text == path.read_text()
    for layer, index in (("mixed3a", 0), ("mixed3b", 1)):
        order = [int(u) for u in np.random.default_rng(index).permutation(CHANNELS[layer])]
        assert sorted(order) == list(range(CHANNELS[layer]))
        expected = [u for u in order if u not in curve_units()[layer]][:PER_LAYER]
        assert draw_order(layer)[:PER_LAYER] == expected
        assert not set(expected) & curve_units()[layer] and len(curve_units()[layer]) >= 10  # the curve detectors exist


@pytest.mark.slow
def test_without_images_or_with_a_misspelt_family_one_line():
    proc = run_cli("select", "inceptionv1-random")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--imagenet" in proc.stderr
    proc = run_cli("select", "inceptionv1-randon")
    assert proc.returncode == 2 and "inceptionv1-random" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_liveness_is_checked_on_weights_in_the_published_format(tmp_path, data_dir):
    """Random weights with mixed3a unit 89 (first in the draw) made dead: the check skips it and keeps the next live ones."""
    dead = draw_order("mixed3a")[0]
    state = random_state_dict(0)
    branch = dead - 64  # mixed3a's 3x3 branch holds channels 64–191
    assert 0 <= branch < 128
    state["mixed3a_3x3_pre_relu_conv.weight"][branch] = 0.0
    state["mixed3a_3x3_pre_relu_conv.bias"][branch] = -1.0  # relu(−1) = 0 everywhere
    env = fetch_through_cli(tmp_path, state, data_dir)
    sample = data_dir / "imagenet-sample"
    proc = run_cli("select", "inceptionv1-random", "--imagenet", str(sample), env=env)
    assert proc.returncode == 0, proc.stderr
    chosen = {layer: [int(u) for u in re.findall(rf'layer = "{layer}"\nunits = \[(\d+)\]', proc.stdout)] for layer in LAYERS}
    assert "Liveness checked on the pinned weights" in proc.stdout
    # independently: each layer's activation straight from the image, on the tasks' fit set
    model = InceptionV1()
    model.load_state_dict(state)
    model.eval()
    folder = ImageNetFolder(sample, data_dir=tmp_path / "data")
    indices = seeded_subset(folder.labels(), min(500, len(folder.labels()) // 2), 1)
    images = folder.load(indices)
    with torch.no_grad():
        for layer in LAYERS:
            act = model.run(images, until=layer)  # [n, channels, 28, 28]
            fraction = (act.flatten(2) > 0).any(dim=2).float().mean(dim=0).numpy()
            live = [u for u in draw_order(layer) if fraction[u] >= MIN_ACTIVE]
            assert chosen[layer] == live[:PER_LAYER], layer
    assert dead not in chosen["mixed3a"] and chosen["mixed3a"][0] == draw_order("mixed3a")[1]
    again = run_cli("select", "inceptionv1-random", "--imagenet", str(sample), env=env)
    assert again.stdout == proc.stdout  # deterministic
