"""Everything fixed about a task before any submission runs: model, data, splits, shapes.

Splits: the eval set is a seeded (class-balanced) subset of the eval split, the
fit set a seeded subset of the fit split. When both come from the same split
(ImageNet validation) the fit set is drawn first and the eval set from the
rest, so they never overlap.

What depends on the kind of data (images or tokens) is the task's `kind`
(`benchmark.kinds`): moving inputs to the device, where units sit, the loss.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.base import ExampleSet, seeded_subset
from ..errors import UserError, did_you_mean
from ..kinds import DataKind, kind_of
from ..models.base import StagedModel
from ..models.registry import load_model
from ..tasks import Task
from ..zoo import open_split
from .submissions import TaskView


@dataclass
class TaskContext:
    task: Task
    model: StagedModel
    checkpoint_sha256: str
    device: torch.device
    eval_set: ExampleSet
    fit_set: ExampleSet
    eval_indices: np.ndarray  # [n_eval] indices into eval_set
    fit_indices: np.ndarray  # [n_fit] indices into fit_set
    input_shapes: dict[str, tuple[int, ...]]  # per example, for each allowed input
    layer_shape: tuple[int, ...]  # per example, the whole target layer
    data_hash: str
    standard_protocol: bool  # False when eval/fit sizes were overridden
    overrides: dict[str, int] = field(default_factory=dict)
    channels_last: bool = False  # the model (and so its input batches) use channels-last memory
    heldout_commitment: str | None = None  # the held-out split's commitment (heldout.py); None: the public eval set
    eval_offset: int = 0  # a shard of the eval set (cluster.py): where `eval_indices` start in the whole one
    eval_total: int | None = None  # the whole eval set's size when this is a shard; None: not a shard
    kind: DataKind | None = None  # the dataset's kind (`benchmark.kinds`); None: the task's, looked up

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = kind_of(self.task.dataset)

    @property
    def data_kind(self) -> DataKind:
        assert self.kind is not None  # set in __post_init__
        return self.kind

    def to_input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of model-ready inputs on the task's device, in the model's preferred memory layout (the kind's)."""
        return self.data_kind.to_input(x, self.device, self.channels_last)

    @property
    def unit_axis(self) -> int:
        """The axis of a batch of the target layer `# [b, ...]` where its units sit (`StagedModel.unit_axis`): 1 for
        an image model's channels, the last for a sequence model's neurons, the heads' axis for a head."""
        return self.model.unit_axis(self.task.layer, len(self.layer_shape) + 1)

    @property
    def target_shape(self) -> tuple[int, ...]:
        """Per-example shape of the replaced units: the layer's with the unit axis cut to the task's units,
        (n_units, *spatial) for images, (T, n_units) for a sequence model's neurons, (T, n_heads, e) for heads."""
        shape = list(self.layer_shape)
        shape[self.unit_axis - 1] = len(self.task.units)
        return tuple(shape)

    def units_first(self, values: np.ndarray) -> np.ndarray:
        """A batch of target values `# [b, *target_shape]` with the unit axis moved to 1 (`# [b, n_units, ...]`), as
        per-unit statistics read them (`stats.FidelityAccumulator`); a view, unchanged for images."""
        return values if self.unit_axis == 1 else np.moveaxis(values, self.unit_axis, 1)

    def view(self) -> TaskView:
        t = self.task
        return TaskView(id=t.id, model=t.model, layer=t.layer, units=t.units, inputs=t.inputs, target_shape=self.target_shape)

    @property
    def eval_labels(self) -> np.ndarray:
        return self.eval_set.labels()[self.eval_indices]


def uses_convolutions(model: torch.nn.Module) -> bool:
    """Whether the model has 2-D convolutions (then it runs channels-last: ~1.5x faster on CPU)."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def parse_device(name: str | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', 'mps' or None (cpu); an unavailable device is a clear error."""
    name = name or "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but no CUDA GPU is available here; use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' asked for, but MPS is not available here; use --device cpu.")
    return device


def check_task_against_model(task: Task, model: StagedModel) -> None:
    """The layer, inputs and units of a task must exist in the model, inputs strictly before the layer."""
    names = list(model.stage_names)
    if task.layer not in names or task.layer == "logits":
        raise UserError(f"task {task.id}: layer '{task.layer}' is not a hidden layer of {task.model}.{did_you_mean(task.layer, names)}")
    if task.layer in getattr(model, "positional", ()):
        raise UserError(f"task {task.id}: layer '{task.layer}' has a position axis where units would sit; target a layer "
                        f"after attention ({', '.join(n for n in names[names.index(task.layer) + 1:-1] if n not in model.positional)}).")
    layer_at = names.index(task.layer)
    for name in task.inputs:
        if name == model.input_name:
            continue
        if name not in names:
            raise UserError(f"task {task.id}: input '{name}' is not a layer of {task.model}.{did_you_mean(name, names)}")
        if names.index(name) >= layer_at:
            raise UserError(f"task {task.id}: input '{name}' does not come before layer '{task.layer}'.")


def _splits(task: Task, eval_set: ExampleSet, fit_set: ExampleSet, eval_size: int, fit_size: int,
            balanced: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Seeded subsets (`seeded_subset`; class-balanced when `balanced`, the kind's choice)."""
    if task.eval_split == task.fit_split:  # one split serves both (ImageNet validation): never overlap
        labels = eval_set.labels()
        fit_indices = seeded_subset(labels, min(fit_size, len(labels) // 2), task.seed + 1, balanced)
        rest = np.setdiff1d(np.arange(len(labels)), fit_indices)
        eval_indices = rest[seeded_subset(labels[rest], eval_size, task.seed, balanced)]
        return eval_indices, fit_indices
    eval_indices = seeded_subset(eval_set.labels(), eval_size, task.seed, balanced)
    fit_indices = seeded_subset(fit_set.labels(), fit_size, task.seed + 1, balanced)
    return eval_indices, fit_indices


def prepare(
    task: Task,
    *,
    device: str | None = None,
    data_dir: str | Path | None = None,
    imagenet_dir: str | Path | None = None,
    eval_size: int | None = None,
    fit_size: int | None = None,
    heldout_secret: bytes | None = None,
) -> TaskContext:
    """Load and check the task's model and data; choose its eval and fit sets.

    `heldout_secret`: score on the held-out split, the eval examples moved by secret-seeded transforms
    (`heldout.py`); the fit set stays public and untouched.
    """
    torch_device = parse_device(device)
    model, sha = load_model(task.model, task.checkpoint, task.checkpoint_sha256)
    check_task_against_model(task, model)
    model = model.to(torch_device)
    channels_last = uses_convolutions(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    eval_set = open_split(task.dataset, task.eval_split, data_dir, imagenet_dir)
    fit_set = eval_set if task.fit_split == task.eval_split else open_split(task.dataset, task.fit_split, data_dir, imagenet_dir)
    for flag, size in (("--eval-size", eval_size), ("--fit-size", fit_size)):
        if size is not None and size < 2:
            raise UserError(f"{flag} {size}: the statistics need at least 2 examples; pass 2 or more, or leave it out "
                            f"for the task's standard size.")
    standard = {"eval_size": task.eval_size, "fit_size": task.fit_size}
    requested = {"eval_size": eval_size, "fit_size": fit_size}
    overrides = {k: v for k, v in requested.items() if v is not None and v != standard[k]}
    kind = kind_of(task.dataset)
    eval_indices, fit_indices = _splits(task, eval_set, fit_set, eval_size or task.eval_size, fit_size or task.fit_size,
                                        kind.balanced_subsets())
    for key, got in (("eval_size", len(eval_indices)), ("fit_size", len(fit_indices))):
        if key in overrides and overrides[key] > got:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{flag} {overrides[key]}: task {task.id}'s data has only {got} examples for it; "
                            f"pass at most {got}.")
    if len(eval_indices) == 0 or len(fit_indices) == 0:
        raise UserError(f"task {task.id}: the data has too few examples for an eval and a fit set; point to a larger data folder.")
    commitment = None
    if heldout_secret is not None:
        if fit_set is eval_set:
            raise UserError(f"task {task.id}: its fit and eval sets share a split; no held-out split is defined for it.")
        eval_set = kind.held_out(eval_set, heldout_secret, task.id)
        commitment = eval_set.commitment

    # One example through the model gives every shape we need.
    probe = kind.to_input(eval_set.load(eval_indices[:1]), torch_device)
    shapes: dict[str, tuple[int, ...]] = {model.input_name: tuple(probe.shape[1:])}
    with torch.no_grad():
        x, carry, previous = probe, {}, None
        for name in model.stage_names:
            x = model.run(x, after=previous, until=name, carry=carry)
            shapes[name], previous = tuple(x.shape[1:]), name
            if name == task.layer:
                break
    layer_shape = shapes[task.layer]
    n_units = layer_shape[model.unit_axis(task.layer, len(layer_shape) + 1) - 1]
    if max(task.units) >= n_units or min(task.units) < 0:
        raise UserError(f"task {task.id}: unit {max(task.units)} is out of range; layer '{task.layer}' has {n_units} units.")

    digest = hashlib.sha256()
    for part in (eval_set.content_hash(), fit_set.content_hash()):
        digest.update(part.encode())
    digest.update(eval_indices.astype(np.int64).tobytes())
    digest.update(fit_indices.astype(np.int64).tobytes())
    return TaskContext(
        task=task, model=model, checkpoint_sha256=sha, device=torch_device, eval_set=eval_set, fit_set=fit_set,
        eval_indices=eval_indices, fit_indices=fit_indices,
        input_shapes={k: v for k, v in shapes.items() if k in task.inputs}, layer_shape=layer_shape,
        data_hash=digest.hexdigest(), standard_protocol=not overrides, overrides=overrides, channels_last=channels_last,
        heldout_commitment=commitment, kind=kind,
    )
