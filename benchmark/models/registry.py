"""Loading a task's checkpoint, with its keys, shapes and sha256 checked; what each model is comes from `zoo`."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from .. import paths
from ..download import cached_sha256
from ..errors import UserError
from ..zoo import load_object, model_spec
from .base import StagedModel
from .weights import METADATA_NAME, inception_weights_path, recorded_sha256


def model_class(model_id: str) -> type[StagedModel]:
    """The model's class, from its zoo spec (imported on first use)."""
    return load_object(model_spec(model_id).model_class)


def checkpoint_path(checkpoint: str) -> Path:
    """Where a task's checkpoint lives: "fetched" means the converted download in the cache."""
    if checkpoint == "fetched":
        return inception_weights_path()
    return paths.PROJECT_ROOT / checkpoint


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str, fix: str) -> None:
    """Exact key set, shapes and floating dtypes vs `model.state_dict()`; a UserError names the first offending key.

    Order checked: missing keys (model order), unexpected keys (sorted), then shapes and dtypes (model order).
    """
    name = type(model).__name__
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    if missing:
        raise UserError(f"{source} lacks {name} key '{missing[0]}' ({len(missing)} missing): not the {name} weights. {fix}")
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        raise UserError(f"{source} has unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected): not the {name} weights. {fix}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise UserError(f"{source} key '{key}' has shape {tuple(state[key].shape)}, expected {shape}: not the {name} weights. {fix}")
        if not state[key].is_floating_point():
            raise UserError(f"{source} key '{key}' has dtype {state[key].dtype}, expected floating point. {fix}")


def load_model(model_id: str, checkpoint: str, expected_sha256: str = "", pinned_by: str = "the task") -> tuple[StagedModel, str]:
    """Build the model and load its safetensors checkpoint; eval mode, frozen. Returns (model, sha256).

    `checkpoint`: a path (relative to the project, or absolute) or "fetched". The
    file's sha256 must equal `expected_sha256` when given (`pinned_by` names who
    pins it, for the error); for a fetched model without one, the hash `fetch`
    recorded is used. Keys and shapes are checked before loading.
    """
    spec = model_spec(model_id)
    cls = model_class(model_id)
    path = checkpoint_path(checkpoint)
    fix = f"Run `{spec.how_to_get}`."
    if not path.exists():
        raise UserError(f"checkpoint for {model_id} not found at {path}; run `{spec.how_to_get}`.")
    actual = cached_sha256(path)
    if not expected_sha256 and spec.fetched:
        expected_sha256 = recorded_sha256(path) or ""  # what `fetch` converted; guards against later damage
        pinned_by = METADATA_NAME
    if expected_sha256 and actual != expected_sha256:
        raise UserError(
            f"checkpoint {path} has sha256 {actual[:12]}…, but {pinned_by} records {expected_sha256[:12]}…: the file is "
            f"corrupt or was replaced; restore it (git checkout for committed ones) or run `{spec.how_to_get}`."
        )
    try:
        state = safetensors.torch.load_file(str(path))
    except Exception as exc:  # a damaged file, not a bug of ours
        raise UserError(f"cannot read checkpoint {path} ({str(exc).splitlines()[0]}). {fix}") from None
    model = cls()
    check_state_dict(model, state, str(path), fix)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.requires_grad_(False)
    return model, actual
