"""Choosing target units, reproducibly: `replacebench select MODEL [--write]` regenerates `tasks/<model>.toml`.

Procedure (every step deterministic: same checkpoint and data, same file, byte for byte):
1. For every unit of the candidate layer, zero-ablate it alone and take the
   per-example loss increase d_i = L_ablated,i − L_clean,i, on the fit set and
   on the eval set.
2. **Importance** (fit set): a unit is important when mean(d) > 0 with a
   one-sided paired t-test p < 0.05 / n_units (Bonferroni over the layer).
3. **Power** (eval set): a unit is powered when its effect on the eval set is
   at least POWER_MARGIN standard errors above 0 (t = mean(d) / (sd(d) / √n)
   ≥ 2.5) and its recovery is defined there (the gate of `stats.recovery_stats`).
   The gate needs about 2 standard errors, so a powered task's recovery is
   defined with a margin of 0.5 standard errors or more; the intervals are closed
   forms, so no seed can flip it either. The eval set
   is read only through the ablation's effect, which no submission touches; the
   cost is a small upward bias of the effect of units near the margin.
4. Tasks: the TOP_N important, powered units with the largest mean increase on
   the fit set; RANDOM_N units drawn with a seeded generator from the rest of
   the layer's powered units that are live (active, > 0, on at least
   MIN_ACTIVE of the fit set); and one group task of the GROUP_N most important
   units ablated together, when the group is powered. A family whose layer has
   too few powered units ships fewer single-unit tasks, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from .. import paths, stats
from ..atomic import atomic_write_bytes
from ..data.base import seeded_subset
from ..errors import unknown
from ..kinds.base import classification_outputs as per_example_outputs
from ..models.registry import load_model
from ..tasks import task_file_head
from ..zoo import FAMILIES, GROUP_N, Family, open_split, selectable

TOP_N, RANDOM_N = 3, 2
ALPHA = 0.05
MIN_ACTIVE = 0.01
POWER_MARGIN = 2.5  # eval-set standard errors above 0 (the gate needs about 2)


@dataclass(frozen=True)
class UnitImportance:
    unit: int
    mean_increase: float  # fit set
    p_value: float  # fit set
    active_fraction: float  # share of fit examples where the unit is > 0 somewhere
    eval_increase: float = 0.0  # mean increase on the eval set
    eval_t: float = 0.0  # its t-statistic, mean / (sd / √n)
    eval_defined: bool = False  # recovery is defined on the eval set (the scoring gate)

    @property
    def powered(self) -> bool:
        return self.eval_defined and self.eval_t >= POWER_MARGIN


def _loss_increases(family: Family, split: str, indices: np.ndarray, data_dir: str | Path | None,
                    groups: list[list[int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean loss `# [n]`, per-unit loss increase `# [n, C]` (or per group `# [n, G]`), active `# [n, C]`)."""
    model, _ = load_model(family.model, f"checkpoints/{family.model}.safetensors")
    images_set = open_split(family.dataset, split, data_dir)
    clean_parts, increases, active = [], [], []
    with torch.no_grad():
        for batch_indices, images in images_set.batches(indices, family.batch_size):
            labels = torch.as_tensor(images_set.labels()[batch_indices])
            act = model.run(images, until=family.layer)  # [b, C, ...]
            active.append((act.flatten(2) > 0).any(dim=2).numpy() if act.dim() > 2 else (act > 0).numpy())
            clean = per_example_outputs(model.class_logits(model.run(act, after=family.layer)), labels, (1,))["loss"]
            rows = []
            for units in groups if groups is not None else [[u] for u in range(act.shape[1])]:
                ablated = act.clone()
                ablated[:, units] = 0
                loss = per_example_outputs(model.class_logits(model.run(ablated, after=family.layer)), labels, (1,))["loss"]
                rows.append(loss - clean)
            clean_parts.append(clean)
            increases.append(np.stack(rows, axis=1))  # [b, C]
    return np.concatenate(clean_parts), np.concatenate(increases), np.concatenate(active)


def eval_power(clean: np.ndarray, increase: np.ndarray) -> tuple[float, float, bool]:
    """(mean increase, t = mean / (sd / √n), recovery defined) of one ablation on the eval set."""
    d = increase.astype(np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    t = mean / (sd / np.sqrt(len(d))) if sd > 0 else (np.inf if mean > 0 else 0.0)
    ablated = clean.astype(np.float64) + d
    defined = stats.recovery_stats(clean, {"zero": ablated}, ablated)["zero"].defined
    return mean, float(t), defined


def eval_indices(family: Family, data_dir: str | Path | None = None) -> np.ndarray:
    """The eval examples the family's tasks score on (as `context._splits` draws them)."""
    return seeded_subset(open_split(family.dataset, family.eval_split, data_dir).labels(), family.eval_size, family.seed)


def unit_importance(family: Family, data_dir: str | Path | None = None) -> list[UnitImportance]:
    """Zero-ablation loss increase of every unit of the family's layer: on its fit set, and its power on the eval set."""
    fit_set = open_split(family.dataset, family.fit_split, data_dir)
    _, d, active = _loss_increases(family, family.fit_split,
                                   seeded_subset(fit_set.labels(), family.fit_size, family.seed + 1), data_dir)
    clean_eval, d_eval, _ = _loss_increases(family, family.eval_split, eval_indices(family, data_dir), data_dir)
    alive = active.mean(axis=0)  # [C]
    out = []
    for unit in range(d.shape[1]):
        diff = d[:, unit]
        p = 1.0 if not diff.any() else float(scipy.stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
        out.append(UnitImportance(unit, float(diff.mean()), p, float(alive[unit]), *eval_power(clean_eval, d_eval[:, unit])))
    return out


def group_power(family: Family, units: list[int], data_dir: str | Path | None = None) -> tuple[float, float, bool]:
    """`eval_power` of zero-ablating `units` together."""
    clean, d, _ = _loss_increases(family, family.eval_split, eval_indices(family, data_dir), data_dir, groups=[units])
    return eval_power(clean, d[:, 0])


def choose(importance: list[UnitImportance], seed: int, group_n: int = GROUP_N) -> tuple[list[UnitImportance], list[int], list[int]]:
    """(top units, random units, group units) per the module's procedure: singles are powered on the eval set."""
    threshold = ALPHA / len(importance)
    ranked = sorted((u for u in importance if u.p_value < threshold and u.mean_increase > 0),
                    key=lambda u: (-u.mean_increase, u.unit))
    top = [u for u in ranked if u.powered][:TOP_N]
    candidates = sorted({u.unit for u in importance if u.active_fraction >= MIN_ACTIVE and u.powered}
                        - {u.unit for u in top})
    size = min(RANDOM_N, len(candidates))
    random_units = sorted(np.random.default_rng(seed).choice(candidates, size=size, replace=False).tolist()) if size else []
    group = sorted(u.unit for u in ranked[:group_n])
    return top, random_units, group


def render_task_file(family: Family, importance: list[UnitImportance],
                     group_figures: tuple[float, float, bool] | None) -> str:
    """The task file. `group_figures`: `group_power` of the group task's units (None: no group task)."""
    top, random_units, group = choose(importance, family.seed, family.group_n or GROUP_N)
    if not family.singles:
        top, random_units = [], []
    by_unit = {u.unit: u for u in importance}
    checkpoint = paths.checkpoints_dir() / f"{family.model}.safetensors"
    from ..download import sha256_file

    lines = [
        f"# Tasks for {family.model}. Generated by `replacebench select {family.family} --write`; do not edit by hand.",
        *([f"# {family.note}"] if family.note else []),
        f"# Units ranked by zero-ablation loss increase on the fit set (one-sided paired t-test, Bonferroni α = {ALPHA});",
        f"# every task is powered: its effect on the eval set is ≥ {POWER_MARGIN} standard errors above 0 (the gate needs ~2);",
        f"# random units are drawn from the powered, live ones (active on ≥ {MIN_ACTIVE:.0%} of the fit set). See benchmark/maintainer/select.py.",
        *([f"# Only {len(top)} + {len(random_units)} single units of {family.layer} are powered on the eval set "
           f"(of the {TOP_N} + {RANDOM_N} sought)."] if family.singles and len(top) + len(random_units) < TOP_N + RANDOM_N else []),
        "",
        *task_file_head(family.model, f"checkpoints/{family.model}.safetensors", sha256_file(checkpoint),
                        dataset=family.dataset, eval_split=family.eval_split, eval_size=family.eval_size,
                        fit_split=family.fit_split, fit_size=family.fit_size, seed=family.seed,
                        batch_size=family.batch_size, topk=(1,), inputs=family.inputs),
    ]

    def describe(unit: int) -> str:
        u = by_unit[unit]
        return (f"zero-ablation loss increase {u.mean_increase:+.4g} nats on the fit set (p = {u.p_value:.2g}), "
                f"active on {u.active_fraction:.0%} of it; {u.eval_increase:+.4g} on the eval set, "
                f"{u.eval_t:.1f} standard errors above 0")

    for rank, u in enumerate(top, start=1):
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{u.unit}"', f'layer = "{family.layer}"',
                  f"units = [{u.unit}]", f'description = "Importance rank {rank}: {describe(u.unit)}."']
    for unit in random_units:
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{unit}"', f'layer = "{family.layer}"',
                  f"units = [{unit}]", f'description = "Seeded-random live unit (seed {family.seed}): {describe(unit)}."']
    if group_figures is not None and group_figures[2] and group_figures[1] >= POWER_MARGIN:
        increase, t, _ = group_figures
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:top{len(group)}"', f'layer = "{family.layer}"',
                  "units = [" + ", ".join(map(str, group)) + "]",
                  f'description = "Group: the {len(group)} most important units, ablated and replaced together; '
                  f'zero-ablation loss increase {increase:+.4g} nats on the eval set, {t:.1f} standard errors above 0."']
    elif group_figures is not None:
        lines += ["", f"# The group of the {len(group)} most important units is not powered on the eval set "
                      f"({group_figures[1]:.1f} standard errors): no group task."]
    return "\n".join(lines) + "\n"


def select_targets(name: str, data_dir: str | Path | None = None, write: bool = False) -> tuple[str, Path]:
    """The task file text for the task family `name` (a model's name for its main family), and its path
    (written when `write`)."""
    if name not in FAMILIES:
        raise unknown("task family", name, selectable(), "replacebench select --help")
    family = FAMILIES[name]
    importance = unit_importance(family, data_dir)
    _, _, group = choose(importance, family.seed, family.group_n or GROUP_N)
    text = render_task_file(family, importance, group_power(family, group, data_dir) if group else None)
    path = paths.tasks_dir() / f"{family.family}.toml"
    if write:
        atomic_write_bytes(path, text.encode())
    return text, path
