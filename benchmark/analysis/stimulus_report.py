"""A submission on synthetic curves: its orientation tuning, and its fidelity to the model there.

`replacebench stimuli SUBMISSION --task TASK` renders the radial-tuning set
(curves at every ORIENTATIONS × RADII, centred on output cell (14, 14)), runs
the submission on it, and reports each unit's preferred orientation, tuning
half-width and peak. When the model's weights are present it also runs the
model on the same images, reports the real units' tuning, and the activation
fidelity (Pearson r and R² over every stimulus and position) of the
submission against the model, the same statistic as on natural images.

A submission with a fit step is fitted on the task's fit set first (which needs
the model and `--imagenet`); a submission that reads only `image` needs neither
for its tuning alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import stats
from ..errors import UserError
from ..harness.hooks import capture
from ..harness.passes import ReplaceCalls
from ..harness.submissions import TaskView
from ..models.base import StagedModel
from ..models.registry import load_model
from ..sandbox.room import IsolatedSubmission
from ..tasks import Task
from .stimuli import orientation_tuning, radial_tuning_set, summarize_tuning

ORIENTATIONS = tuple(range(0, 360, 10))
RADII = (16.0, 24.0, 40.0)


@dataclass
class StimulusReport:
    submission_tuning: pd.DataFrame  # one row per unit: preferred_deg_mean/argmax, hwhm_deg, peak_response
    model_tuning: pd.DataFrame | None
    fidelity: list[dict[str, Any]] | None  # per unit: pearson_r, r2, n_samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "submission_tuning": self.submission_tuning.to_dict(orient="records"),
            "model_tuning": None if self.model_tuning is None else self.model_tuning.to_dict(orient="records"),
            "fidelity": self.fidelity,
        }


def _try_model(task: Task) -> StagedModel | None:
    try:
        model, _ = load_model(task.model, task.checkpoint, task.checkpoint_sha256)
    except UserError:
        return None
    return model


def stimulus_report(task: Task, room: IsolatedSubmission, params: dict[str, np.ndarray] | None = None,
                    model: StagedModel | None = None, batch_size: int = 32) -> StimulusReport:
    """Tuning of the submission (loaded in `room`), and of the model when available, on the radial-tuning stimuli."""
    from ..kinds import kind_of

    if kind_of(task.dataset).name != "image":
        raise UserError(f"task {task.id} reads {task.dataset} tokens, and the stimuli are images; use "
                        f"`replacebench inspect {task.id}` to see its units.")
    images, meta = radial_tuning_set(ORIENTATIONS, RADII)  # [n, 3, 224, 224]
    name = room.snapshot.name
    signature = room.replace_signature
    assert signature is not None
    if "params" in signature.reserved and params is None and "params" not in signature.defaults:
        raise UserError(f"submission '{name}' needs its fit step first; pass --imagenet DIR (and fetch the weights).")
    model = model if model is not None else _try_model(task)
    needs_model = [n for n in signature.inputs if n != "image"]
    if needs_model and model is None:
        raise UserError(f"submission '{name}' reads {', '.join(needs_model)}, which needs the model's weights: "
                        f"run `replacebench fetch {task.model}`.")
    units = torch.as_tensor(task.units)
    shape = (len(task.units), 28, 28)
    if model is not None:
        with torch.no_grad():
            shape = (len(task.units), *model.run(images[:1], until=task.layer).shape[2:])
    view = TaskView(task.id, task.model, task.layer, task.units, task.inputs, shape)
    room.start_replace(view, params)
    fidelity = stats.FidelityAccumulator(len(task.units)) if model is not None else None
    originals: list[torch.Tensor] = []
    replace = ReplaceCalls(room, view.target_shape)

    def submission_fn(batch: torch.Tensor) -> torch.Tensor:
        inputs: dict[str, torch.Tensor] = {}
        original = None
        if model is not None:
            with torch.no_grad(), capture(model, needs_model) as store:
                original = model.run(batch, until=task.layer)[:, units]  # [b, n_units, h, w]
                inputs.update({n: store[n] for n in needs_model})
            originals.append(original)
        if "image" in signature.inputs:
            inputs["image"] = batch
        out = replace({n: inputs[n] for n in signature.inputs}, len(batch))
        if fidelity is not None and original is not None:
            fidelity.update(original.numpy(), out)
        return torch.from_numpy(out)

    tuning = summarize_tuning(orientation_tuning(submission_fn, images, meta, task.units, batch_size=batch_size))
    model_tuning = None
    if model is not None:
        recorded = iter(originals)
        model_tuning = summarize_tuning(orientation_tuning(lambda b: next(recorded), images, meta, task.units,
                                                           batch_size=batch_size))
    fid = None if fidelity is None else [{**f.to_dict(), "unit": u} for u, f in zip(task.units, fidelity.result())]
    return StimulusReport(tuning, model_tuning, fid)
