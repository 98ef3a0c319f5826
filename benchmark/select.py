"""Choosing target units, reproducibly: `replacebench select MODEL [--write]` regenerates `tasks/<model>.toml`.

Procedure, on the task family's fit set (never the eval set, so the eval
scores carry no selection bias):
1. For every unit of the candidate layer, zero-ablate it alone and take the
   per-example loss increase d_i = L_ablated,i − L_clean,i.
2. A unit is important when mean(d) > 0 with a one-sided paired t-test
   p < 0.05 / n_units (Bonferroni over the layer).
3. Tasks: the TOP_N important units with the largest mean increase; RANDOM_N
   units drawn with a seeded generator from the rest of the layer's live units
   (active, > 0, on at least MIN_ACTIVE of the fit set: a dead unit's ablation
   changes nothing, so its recovery is always undefined); and one group task of
   the GROUP_N most important units ablated together.
Everything is deterministic: same checkpoint and data, same file, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from . import paths
from .conditions import per_example_outputs
from .data.base import seeded_subset
from .data.registry import open_split
from .errors import unknown
from .models.registry import load_model

TOP_N, RANDOM_N, GROUP_N = 3, 2, 5
ALPHA = 0.05
MIN_ACTIVE = 0.01


@dataclass(frozen=True)
class Family:
    """Fixed settings of a model's task file; the selection fills in the units."""

    model: str
    layer: str
    inputs: tuple[str, ...]
    dataset: str
    eval_split: str
    eval_size: int
    fit_split: str
    fit_size: int
    batch_size: int = 500
    seed: int = 0
    name: str = ""  # the family's name (its task file is tasks/<name>.toml); "" for the model's main family
    note: str = ""  # what sets the family apart, for its task file's header
    singles: bool = True  # the top and random single-unit tasks (False: the group task only)
    group_n: int = 0  # units in the group task (0: GROUP_N)

    @property
    def family(self) -> str:
        return self.name or self.model


#: The harder family: the only input lies two nonlinear layers below the target (image → ReLU fc1 → ReLU fc2), so
#: no fitted map of the inputs reproduces a unit exactly, and a copy would need the 200,961 parameters behind it.
HARDER_NOTE = ("Harder family: the only input is the image, two nonlinear layers (fc1, fc2) below the target, so a "
               "fitted map of the inputs cannot copy a unit exactly.\n# One group task, measured on the eval set when the "
               "family was chosen: zeroing single fc2 units, or the top 5 together (+0.0013 nats, 95% CI [-0.0015, "
               "+0.0040]),\n# changes the loss too little to measure; zeroing the top 20 costs +0.030 nats [+0.023, +0.036].")

FAMILIES = {
    "digits-mlp": Family("digits-mlp", "fc1", ("image",), "digits", "test", 900, "train", 897),
    "mnist-mlp": Family("mnist-mlp", "fc1", ("image",), "mnist", "test", 10000, "train", 10000),
    "mnist-cnn": Family("mnist-cnn", "conv2", ("image", "conv1"), "mnist", "test", 10000, "train", 5000),
    "mnist-mlp-fc2": Family("mnist-mlp", "fc2", ("image",), "mnist", "test", 10000, "train", 10000,
                            name="mnist-mlp-fc2", note=HARDER_NOTE, singles=False, group_n=20),
}


@dataclass(frozen=True)
class UnitImportance:
    unit: int
    mean_increase: float
    p_value: float
    active_fraction: float  # share of examples where the unit is > 0 somewhere


def unit_importance(family: Family, data_dir: str | Path | None = None) -> list[UnitImportance]:
    """Zero-ablation loss increase of every unit of the family's layer, on its fit set."""
    model, _ = load_model(family.model, f"checkpoints/{family.model}.safetensors")
    fit_set = open_split(family.dataset, family.fit_split, data_dir)
    indices = seeded_subset(fit_set.labels(), family.fit_size, family.seed + 1)
    increases: list[np.ndarray] = []
    active: list[np.ndarray] = []
    with torch.no_grad():
        for batch_indices, images in fit_set.batches(indices, family.batch_size):
            labels = torch.as_tensor(fit_set.labels()[batch_indices])
            act = model.run(images, until=family.layer)  # [b, C, ...]
            active.append((act.flatten(2) > 0).any(dim=2).numpy() if act.dim() > 2 else (act > 0).numpy())
            clean = per_example_outputs(model.class_logits(model.run(act, after=family.layer)), labels, (1,))["loss"]
            rows = []
            for unit in range(act.shape[1]):
                ablated = act.clone()
                ablated[:, unit] = 0
                loss = per_example_outputs(model.class_logits(model.run(ablated, after=family.layer)), labels, (1,))["loss"]
                rows.append(loss - clean)
            increases.append(np.stack(rows, axis=1))  # [b, C]
    d = np.concatenate(increases)  # [n, C]
    alive = np.concatenate(active).mean(axis=0)  # [C]
    out = []
    for unit in range(d.shape[1]):
        diff = d[:, unit]
        p = 1.0 if not diff.any() else float(scipy.stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
        out.append(UnitImportance(unit, float(diff.mean()), p, float(alive[unit])))
    return out


def choose(importance: list[UnitImportance], seed: int, group_n: int = GROUP_N) -> tuple[list[UnitImportance], list[int], list[int]]:
    """(top units, random units, group units) per the module's procedure."""
    threshold = ALPHA / len(importance)
    ranked = sorted((u for u in importance if u.p_value < threshold and u.mean_increase > 0),
                    key=lambda u: (-u.mean_increase, u.unit))
    top = ranked[:TOP_N]
    live = {u.unit for u in importance if u.active_fraction >= MIN_ACTIVE}
    rest = sorted(live - {u.unit for u in top})
    random_units = sorted(np.random.default_rng(seed).choice(rest, size=RANDOM_N, replace=False).tolist())
    group = sorted(u.unit for u in ranked[:group_n])
    return top, random_units, group


def render_task_file(family: Family, importance: list[UnitImportance]) -> str:
    top, random_units, group = choose(importance, family.seed, family.group_n or GROUP_N)
    if not family.singles:
        top, random_units = [], []
    by_unit = {u.unit: u for u in importance}
    checkpoint = paths.checkpoints_dir() / f"{family.model}.safetensors"
    from .download import sha256_file

    lines = [
        f"# Tasks for {family.model}. Generated by `replacebench select {family.family} --write`; do not edit by hand.",
        *([f"# {family.note}"] if family.note else []),
        f"# Units ranked by zero-ablation loss increase on the fit set (one-sided paired t-test, Bonferroni α = {ALPHA});",
        f"# random units are drawn from the live ones (active on ≥ {MIN_ACTIVE:.0%} of the fit set). See benchmark/select.py.",
        "",
        "[model]",
        f'id = "{family.model}"',
        f'checkpoint = "checkpoints/{family.model}.safetensors"',
        f'sha256 = "{sha256_file(checkpoint)}"',
        "",
        "[data]",
        f'dataset = "{family.dataset}"',
        f'eval_split = "{family.eval_split}"',
        f"eval_size = {family.eval_size}",
        f'fit_split = "{family.fit_split}"',
        f"fit_size = {family.fit_size}",
        f"seed = {family.seed}",
        f"batch_size = {family.batch_size}",
        "topk = [1]",
        "",
        "[defaults]",
        'ablation = "zero"',
        "version = 1",
        "inputs = [" + ", ".join(f'"{x}"' for x in family.inputs) + "]",
    ]

    def describe(unit: int) -> str:
        u = by_unit[unit]
        return (f"zero-ablation loss increase {u.mean_increase:+.4g} nats on the fit set (p = {u.p_value:.2g}), "
                f"active on {u.active_fraction:.0%} of it")

    for rank, u in enumerate(top, start=1):
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{u.unit}"', f'layer = "{family.layer}"',
                  f"units = [{u.unit}]", f'description = "Importance rank {rank}: {describe(u.unit)}."']
    for unit in random_units:
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{unit}"', f'layer = "{family.layer}"',
                  f"units = [{unit}]", f'description = "Seeded-random live unit (seed {family.seed}): {describe(unit)}."']
    lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:top{len(group)}"', f'layer = "{family.layer}"',
              "units = [" + ", ".join(map(str, group)) + "]",
              f'description = "Group: the {len(group)} most important units, ablated and replaced together."']
    return "\n".join(lines) + "\n"


def select_targets(name: str, data_dir: str | Path | None = None, write: bool = False) -> tuple[str, Path]:
    """The task file text for the task family `name` (a model's name for its main family), and its path
    (written when `write`)."""
    if name not in FAMILIES:
        raise unknown("task family", name, FAMILIES, "replacebench select --help")
    family = FAMILIES[name]
    text = render_task_file(family, unit_importance(family, data_dir))
    path = paths.tasks_dir() / f"{family.family}.toml"
    if write:
        path.write_text(text)
    return text, path
