"""The zoo: one spec per model and per dataset, and everything else reads them (no second table to keep in step)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark import paths, zoo
from benchmark.analysis.figures import to_pixels
from benchmark.errors import UserError
from benchmark.maintainer import train
from benchmark.models.base import StagedModel
from benchmark.models.registry import load_model, model_class
from benchmark.sandbox.limits import GiB, limits_for
from benchmark.tasks import all_tasks

PROJECT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, cwd=PROJECT)


@pytest.mark.parametrize("model_id", sorted(zoo.MODELS))
def test_each_spec_builds_its_model_and_names_its_families(model_id):
    spec = zoo.MODELS[model_id]
    cls = model_class(model_id)
    assert issubclass(cls, StagedModel) and spec.dataset in zoo.DATASETS
    for family in spec.families:
        assert family.model == model_id and family.dataset == spec.dataset
        assert (paths.tasks_dir() / f"{family.family}.toml").is_file(), family.family
        assert family.layer in cls.stage_names and set(family.inputs) <= {"image", *cls.stage_names}
    assert spec.fetched == (spec.recipe is None) == bool(spec.fetcher)


def test_every_task_file_names_a_zoo_model_and_dataset():
    tasks = all_tasks()
    assert tasks
    for task in tasks.values():
        assert zoo.MODELS[task.model].dataset == task.dataset, task.id


def test_value_range_is_what_the_loaders_produce():
    """pixels = x · scale + offset: the digits loader's extreme values are the zoo's range ends (the MNIST loader's
    are checked in test_mnist_data, where that split is loaded anyway)."""
    digits = zoo.open_split("digits", "test").inputs  # [900, 1, 8, 8]
    assert float(digits.min()) == 0.0 and float(digits.max()) == 1.0 == zoo.DATASETS["digits"].value_range[1]
    # the held-out background is a black pixel, normalised as the loader normalises
    assert zoo.DATASETS["mnist"].heldout.background == pytest.approx(zoo.DATASETS["mnist"].value_range[0], abs=1e-12)
    assert zoo.DATASETS["imagenet"].value_range == (-117.0, 138.0)


def test_a_new_spec_is_seen_everywhere(monkeypatch, tmp_path):
    """Adding one ModelSpec (and one DatasetSpec) is all a new model needs: training, loading, limits and the
    error messages follow it."""
    digits = zoo.DATASETS["digits"]
    monkeypatch.setitem(zoo.DATASETS, "digits-wide", dataclasses.replace(digits, name="digits-wide", time_limit_s=77,
                                                                        memory_limit_gib=3))
    spec = zoo.ModelSpec("digits-mlp-b", "benchmark.models.digits:DigitsMLP", "digits-wide",
                         recipe=dataclasses.replace(zoo.MODELS["digits-mlp"].recipe, epochs=1))
    monkeypatch.setitem(zoo.MODELS, spec.id, spec)

    assert "digits-mlp-b" in zoo.trainable()
    assert type(train.build_model("digits-mlp-b")).__name__ == "DigitsMLP"
    limits = limits_for("digits-wide")
    assert (limits.time_s, limits.memory_bytes) == (77, 3 * GiB)
    with pytest.raises(UserError, match=r"run `replacebench train digits-mlp-b`"):
        load_model("digits-mlp-b", str(tmp_path / "absent.safetensors"))
    with pytest.raises(UserError, match="Did you mean 'digits-mlp-b'"):
        train.build_model("digits-mlp-c")
    pixels = to_pixels(np.full((1, 1, 8, 8), 0.5), "digits-wide")  # [1, 8, 8, 3]: pixels = x · 255 + 0
    assert pixels.shape == (1, 8, 8, 3) and int(pixels.max()) == 128


def test_help_and_did_you_mean_come_from_the_zoo():
    train_help, fetch_help = (" ".join(cli(command, "--help").stdout.split()) for command in ("train", "fetch"))
    assert "digits-mlp, mnist-mlp, mnist-cnn, modadd-p113 or shakespeare-char" in train_help
    assert "mnist, tinyshakespeare or inceptionv1" in fetch_help
    select_help = " ".join(cli("select", "--help").stdout.split())
    assert ", ".join(zoo.selectable()) in select_help and "inceptionv1-random" in select_help
    score_help = " ".join(cli("score", "--help").stdout.split())
    assert "digits 300, mnist 900, imagenet 7200" in score_help and "digits 4G, mnist 8G, imagenet 16G" in score_help

    wrong = cli("fetch", "mnits")
    assert wrong.returncode != 0 and "Did you mean 'mnist'" in wrong.stderr and "Traceback" not in wrong.stderr
    labels = cli("fetch", "mnist", "--labels-url", "http://127.0.0.1:9/x")
    assert labels.returncode != 0 and "--labels-url is for inceptionv1 only" in labels.stderr
    assert len(labels.stderr.strip().splitlines()) == 1


def test_help_loads_neither_torch_nor_scipy():
    """The zoo and the command line are light: `--help` lists models and families without importing torch or
    scipy (it took 3.6 s when the CLI imported `stats` at the top; it takes about 0.15 s)."""
    for command in (["train", "--help"], ["fetch", "--help"], ["select", "--help"], ["score", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "benchmark", *command], capture_output=True,
                              text=True, cwd=PROJECT)
        assert proc.returncode == 0
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert not {m for m in imported if m.split(".")[0] in ("torch", "scipy", "numpy", "pandas")}, command
