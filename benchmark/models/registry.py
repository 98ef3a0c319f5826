"""Model ids → classes, and loading a task's checkpoint with its sha256 checked."""

from __future__ import annotations

import importlib
from pathlib import Path

import safetensors.torch

from .. import paths
from ..download import cached_sha256
from ..errors import UserError, unknown
from .base import StagedModel

#: model id → (module, class name); imported lazily so `replacebench tasks` stays fast.
MODEL_CLASSES: dict[str, tuple[str, str]] = {
    "digits-mlp": ("benchmark.models.digits", "DigitsMLP"),
    "mnist-mlp": ("benchmark.models.mnist", "MnistMLP"),
    "mnist-cnn": ("benchmark.models.mnist", "MnistCNN"),
    "inceptionv1": ("benchmark.models.inception", "InceptionV1"),
}
#: How to obtain each model's checkpoint, for error messages.
HOW_TO_GET = {
    "digits-mlp": "replacebench train digits-mlp",
    "mnist-mlp": "replacebench train mnist-mlp",
    "mnist-cnn": "replacebench train mnist-cnn",
    "inceptionv1": "replacebench fetch inceptionv1",
}


def model_class(model_id: str) -> type[StagedModel]:
    if model_id not in MODEL_CLASSES:
        raise unknown("model", model_id, MODEL_CLASSES, "replacebench tasks")
    module, name = MODEL_CLASSES[model_id]
    return getattr(importlib.import_module(module), name)


def checkpoint_path(model_id: str, checkpoint: str) -> Path:
    """Where a task's checkpoint lives: "fetched" means the converted download in the cache."""
    if checkpoint == "fetched":
        from ..fetch_inception import inception_weights_path

        return inception_weights_path()
    return paths.PROJECT_ROOT / checkpoint


def load_model(model_id: str, checkpoint: str, expected_sha256: str = "") -> tuple[StagedModel, str]:
    """Build the model, load its safetensors checkpoint (sha256 verified when pinned); eval mode, frozen."""
    cls = model_class(model_id)
    path = checkpoint_path(model_id, checkpoint)
    if not path.exists():
        raise UserError(f"checkpoint for {model_id} not found at {path}; run `{HOW_TO_GET[model_id]}`.")
    actual = cached_sha256(path)
    if not expected_sha256 and checkpoint == "fetched":
        from ..fetch_inception import recorded_sha256

        expected_sha256 = recorded_sha256(path) or ""  # what `fetch` converted; guards against later damage
    if expected_sha256 and actual != expected_sha256:
        raise UserError(
            f"checkpoint {path} has sha256 {actual[:12]}…, but the task pins {expected_sha256[:12]}…; "
            f"restore the file (git checkout) or run `{HOW_TO_GET[model_id]}`."
        )
    model = cls()
    try:
        state = safetensors.torch.load_file(str(path))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # a wrong or damaged file, not a bug of ours
        raise UserError(f"checkpoint {path} does not fit {model_id} ({str(exc).splitlines()[0]}); run `{HOW_TO_GET[model_id]}`.") from None
    model.eval()
    model.requires_grad_(False)
    return model, actual
