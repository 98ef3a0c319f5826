"""The deterministic training recipe for the reference models, and checkpoint loading.

`train(model_id)` trains one model from a fixed recipe and writes
`<out_dir>/<model_id>.safetensors` (weights) and `<model_id>.json` (accuracy, loss, recipe,
versions). Bit-reproducible on a given CPU/software stack:
  * init: `torch.manual_seed(recipe.seed)` inside `torch.random.fork_rng()` (global RNG untouched);
  * data order: `torch.randperm(n, generator=Generator().manual_seed(seed + epoch + 1))` per epoch;
  * `torch.use_deterministic_algorithms(True)` and `torch.set_num_threads(recipe.threads)` while
    training (both restored afterwards): with one thread the CPU reductions run in a fixed order;
  * Adam with a per-step cosine schedule lr_t = lr · ½(1 + cos(π t / T)), T = total steps;
  * loss = mean cross-entropy of `model.class_logits(logits)`; no augmentation, no dropout.
A `FullBatchRecipe` (modadd-p113) trains instead with full-batch AdamW, a linear warm-up and a constant rate
(`train_full_batch.py`), and records its grokking curve in the JSON.
The safetensors file holds only the weights (sorted keys, contiguous tensors, fixed metadata),
so its sha256 is a fingerprint of the trained weights.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import paths, zoo
from ..atomic import atomic_write_bytes
from ..data.base import TensorExampleSet
from ..errors import UserError, unknown
from ..models.base import StagedModel
from ..models.registry import load_model
from ..zoo import FullBatchRecipe, ModelSpec, Recipe, WindowRecipe
from .outputs import TrainResult, deterministic, save_weights, seeded, versions


def trained_spec(model_id: str) -> ModelSpec:
    """The zoo's spec of a model `train` makes; a fetched or unknown model is a UserError."""
    trainable = zoo.trainable()
    if model_id in zoo.MODELS and model_id not in trainable:
        raise UserError(f"{model_id} is not trained here: its published weights are; run `{zoo.MODELS[model_id].how_to_get}`.")
    if model_id not in trainable:
        raise unknown("model", model_id, trainable, "replacebench train --help")
    return zoo.MODELS[model_id]


def build_model(model_id: str) -> StagedModel:
    """A freshly initialised model of `model_id` (global RNG initialisation)."""
    return trained_spec(model_id).build()


def open_split(model_id: str, split: str, data_dir: str | os.PathLike | None = None) -> TensorExampleSet:
    """The `split` of the dataset `model_id` is trained on."""
    return zoo.dataset_spec(trained_spec(model_id).dataset).open(split, data_dir)


@torch.no_grad()
def evaluate(model: StagedModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on `images # [n, C, H, W]`, `labels # [n]`."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(labels), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        logits = model.class_logits(model(x))  # [b, classes]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return correct / len(labels), loss_sum / len(labels)


def _fit(model: StagedModel, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Train in place following `recipe`; return the last epoch's mean training loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n = len(labels)
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    total, step = steps_per_epoch * recipe.epochs, 0
    model.train()
    epoch_loss = float("nan")
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(recipe.seed + epoch + 1))
        loss_sum = 0.0
        for start in range(0, n, recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            logits = model.class_logits(model(images[batch]))  # [b, classes]
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
            step += 1
        epoch_loss = loss_sum / n
    model.eval()
    return epoch_loss


def train(model_id: str, data_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
          progress: bool = False) -> TrainResult:
    """Train `model_id` with its zoo recipe; write `<out_dir>/<model_id>.safetensors` and `.json`.

    `out_dir` defaults to the project's `checkpoints/`. Deterministic (see module docstring).
    """
    spec = trained_spec(model_id)
    recipe = spec.recipe
    assert recipe is not None  # trained_spec admits trained models only
    out = Path(out_dir) if out_dir is not None else paths.checkpoints_dir()
    if isinstance(recipe, FullBatchRecipe):
        from .train_full_batch import train_full_batch

        return train_full_batch(spec, recipe, out, progress)
    if isinstance(recipe, WindowRecipe):
        from .train_windows import train_windows

        return train_windows(spec, recipe, out, data_dir, progress)
    train_set, test_set = open_split(model_id, "train", data_dir), open_split(model_id, "test", data_dir)
    x_train, y_train = train_set.inputs, torch.as_tensor(train_set.labels())  # [n, C, H, W], [n]
    x_test, y_test = test_set.inputs, torch.as_tensor(test_set.labels())

    began = time.perf_counter()
    with deterministic(recipe.threads):
        model = seeded(lambda: build_model(model_id), recipe.seed)
        train_loss = _fit(model, recipe, x_train, y_train)
        test_accuracy, test_loss = evaluate(model, x_test, y_test, recipe.eval_batch_size)
    seconds = time.perf_counter() - began

    path = out / f"{model_id}.safetensors"
    sha = save_weights(model, path)
    meta = {
        "model_id": model_id,
        "weights": path.name,
        "sha256": sha,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "final_train_loss": train_loss,
        "epochs": recipe.epochs,
        "seconds": round(seconds, 1),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "recipe": {"dataset": spec.dataset, **dataclasses.asdict(recipe)},
        "data": {"train": train_set.content_hash(), "test": test_set.content_hash()},
        "versions": versions(),
        "machine": platform.machine(),
    }
    atomic_write_bytes(out / f"{model_id}.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return TrainResult(path, sha, test_accuracy, test_loss, recipe.epochs, seconds)


def checkpoint_path(model_id: str, checkpoints: str | os.PathLike | None = None) -> Path:
    """`<checkpoints>/<model_id>.safetensors` (default: the project's `checkpoints/`)."""
    trained_spec(model_id)
    return Path(checkpoints or paths.checkpoints_dir()) / f"{model_id}.safetensors"


def load_trained(model_id: str, checkpoints: str | os.PathLike | None = None) -> StagedModel:
    """The trained `model_id` in eval mode, its weights checked against the sha256 in `<model_id>.json`
    (the loading itself is `models.registry.load_model`, as when scoring)."""
    path = checkpoint_path(model_id, checkpoints)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise UserError(f"no trained weights for '{model_id}' at {path}. Train them with `replacebench train {model_id}`.")
    expected = json.loads(meta_path.read_text())["sha256"]
    model, _ = load_model(model_id, str(path), expected, pinned_by=meta_path.name)
    return model
