"""Choosing target units, reproducibly: `replacebench select MODEL [--write]` regenerates `tasks/<model>.toml`.

Targets are chosen on data disjoint from the eval set, then confirmed on it, so the eval set's noise cannot pick
them (a unit picked because its eval-set effect happened to clear a bar is a winner's curse: it regresses, and
its recovery goes undefined on the held-out split). Every step is deterministic: same checkpoint and data, same
file, byte for byte.

1. **Selection set**: a seeded subset of the fit split (`fit_size` examples, seed + 1), never the eval split.
   For every unit of the candidate layer, zero-ablate it alone and take the per-example loss increase
   d_i = L_ablated,i − L_clean,i there.
2. **Importance** (selection set): mean(d) > 0 with a one-sided t-test p < ALPHA / n_units (Bonferroni over the layer).
3. **Power** (selection set): t = mean(d) / (sd(d) / √n) ≥ POWER_MARGIN (2.5) and recovery defined there (the
   gate of `stats.recovery_stats`, which needs about 2 standard errors).
4. **Candidates**, in an order fixed by the selection set alone: for the top tasks, the important, powered units
   by decreasing mean increase; for the random tasks, a seeded permutation (seed) of the other powered units that
   are live (> 0 somewhere on at least MIN_ACTIVE of the selection set); for the group task, the GROUP_N most
   important units ablated together.
5. **Confirmation**: a candidate ships when its zero ablation is powered (t ≥ POWER_MARGIN, recovery defined)
   on the public eval split AND on the held-out split (`data.heldout`, each task's own secret-seeded moves; a
   dataset with no held-out transform: the public eval split only). The first TOP_N confirmed top candidates and
   the first RANDOM_N confirmed random ones ship, and the group when it is confirmed. The eval data decides only
   whether a candidate ships, never the order in which candidates are tried, and a candidate that fails is
   counted in the task file.

The held-out split depends on the board's secret, which only the maintainer holds: `select --held-out-secret
FILE` confirms on the board's own held-out split; without it, on the split that SELECTION_SECRET (public, fixed)
draws the same way, so anyone can regenerate the committed file. A maintainer whose secret rejects a unit that
the public one confirms sees it in `select --held-out-secret` (the file then differs) and `tests/test_select.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from .. import paths, stats
from ..atomic import atomic_write_bytes
from ..data import heldout
from ..data.base import ExampleSet, seeded_subset
from ..errors import unknown
from ..kinds.base import classification_outputs as per_example_outputs
from ..models.registry import load_model
from ..tasks import task_file_head
from ..zoo import FAMILIES, GROUP_N, Family, open_split, selectable

TOP_N, RANDOM_N = 3, 2
ALPHA = 0.05
MIN_ACTIVE = 0.01
POWER_MARGIN = 2.5  # standard errors above 0, on the selection set and on each split that confirms (the gate needs ~2)
#: The held-out secret `select` confirms with when not given the board's (module docstring, step 5): public on purpose.
SELECTION_SECRET = b"replacebench-select-v1: a public held-out secret for confirming targets"


@dataclass(frozen=True)
class Power:
    """One zero ablation's effect on one set of examples: mean increase, t = mean / (sd / √n), recovery defined."""

    increase: float
    t: float
    defined: bool

    @property
    def powered(self) -> bool:
        return self.defined and self.t >= POWER_MARGIN


@dataclass(frozen=True)
class UnitImportance:
    """One unit on the selection set (the fit split; never the eval split)."""

    unit: int
    mean_increase: float
    p_value: float
    active_fraction: float  # share of selection examples where the unit is > 0 somewhere
    t: float = 0.0  # mean / (sd / √n) of its loss increase
    defined: bool = False  # recovery is defined on the selection set (the scoring gate)

    @property
    def powered(self) -> bool:
        return self.defined and self.t >= POWER_MARGIN


@dataclass(frozen=True)
class Confirmation:
    """A candidate's power on the public eval split and on the held-out split (None: the dataset has none)."""

    public: Power
    held_out: Power | None

    @property
    def confirmed(self) -> bool:
        return self.public.powered and (self.held_out is None or self.held_out.powered)


def _loss_increases(family: Family, images_set: ExampleSet, indices: np.ndarray,
                    groups: list[list[int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean loss `# [n]`, per-unit loss increase `# [n, C]` (or per group `# [n, G]`), active `# [n, C]`)."""
    model, _ = load_model(family.model, f"checkpoints/{family.model}.safetensors")
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


def power(clean: np.ndarray, increase: np.ndarray) -> Power:
    """`Power` of one ablation from its clean losses `# [n]` and loss increases `# [n]`."""
    d = increase.astype(np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    t = mean / (sd / np.sqrt(len(d))) if sd > 0 else (np.inf if mean > 0 else 0.0)
    ablated = clean.astype(np.float64) + d
    defined = stats.recovery_stats(clean, {"zero": ablated}, ablated)["zero"].defined
    return Power(mean, float(t), bool(defined))


def eval_indices(family: Family, data_dir: str | Path | None = None) -> np.ndarray:
    """The eval examples the family's tasks score on (as `context._splits` draws them)."""
    return seeded_subset(open_split(family.dataset, family.eval_split, data_dir).labels(), family.eval_size, family.seed)


def selection_set(family: Family, data_dir: str | Path | None = None) -> tuple[ExampleSet, np.ndarray]:
    """The selection set (step 1): the fit split and a seeded subset of it `# [fit_size]`."""
    fit_set = open_split(family.dataset, family.fit_split, data_dir)
    return fit_set, seeded_subset(fit_set.labels(), family.fit_size, family.seed + 1)


def unit_importance(family: Family, fit_set: ExampleSet, indices: np.ndarray) -> list[UnitImportance]:
    """Every unit of the family's layer on the selection set (steps 1–3); reads nothing but `fit_set[indices]`."""
    clean, d, active = _loss_increases(family, fit_set, indices)
    alive = active.mean(axis=0)  # [C]
    out = []
    for unit in range(d.shape[1]):
        diff = d[:, unit]
        p = 1.0 if not diff.any() else float(scipy.stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue)
        figures = power(clean, diff)
        out.append(UnitImportance(unit, float(diff.mean()), p, float(alive[unit]), figures.t, figures.defined))
    return out


def candidates(importance: list[UnitImportance], seed: int, group_n: int = GROUP_N) -> tuple[list[int], list[int], list[int]]:
    """(top candidates in order, random candidates in order, group units) from the selection set alone (step 4)."""
    threshold = ALPHA / len(importance)
    ranked = sorted((u for u in importance if u.p_value < threshold and u.mean_increase > 0),
                    key=lambda u: (-u.mean_increase, u.unit))
    top = [u.unit for u in ranked if u.powered]
    pool = sorted(u.unit for u in importance if u.active_fraction >= MIN_ACTIVE and u.powered)
    random_order = [int(u) for u in np.random.default_rng(seed).permutation(np.asarray(pool, dtype=np.int64))]
    group = sorted(u.unit for u in ranked[:group_n])
    return top, random_order, group


Confirm = Callable[[list[int], str], Confirmation]


def choose(importance: list[UnitImportance], seed: int, confirm: Confirm, group_n: int = GROUP_N,
           singles: bool = True) -> tuple[list[int], list[int], list[int], dict[str, Confirmation]]:
    """(top units, random units, group units or [], every tried candidate's confirmation by task suffix) (step 5).

    `confirm(units, suffix)` gives the confirmation of zero-ablating `units` for the task `<layer>:<suffix>`.
    """
    top_order, random_order, group = candidates(importance, seed, group_n)
    tried: dict[str, Confirmation] = {}

    def ok(units: list[int], suffix: str) -> bool:
        if suffix not in tried:
            tried[suffix] = confirm(units, suffix)
        return tried[suffix].confirmed

    top: list[int] = []
    random_units: list[int] = []
    if singles:
        top = _first(top_order, TOP_N, ok)
        random_units = sorted(_first([u for u in random_order if u not in top], RANDOM_N, ok))
    if group and not ok(group, f"top{len(group)}"):
        group = []
    return top, random_units, group, tried


def _first(order: list[int], n: int, ok: Callable[[list[int], str], bool]) -> list[int]:
    """The first `n` units of `order` that `ok` confirms, trying them one at a time (none after the n-th)."""
    out: list[int] = []
    for unit in order:
        if len(out) == n:
            break
        if ok([unit], str(unit)):
            out.append(unit)
    return out


def confirmer(family: Family, data_dir: str | Path | None, secret: bytes | None,
              eval_set: ExampleSet | None = None) -> Confirm:
    """`confirm(units, suffix)` on the family's public eval split (or `eval_set` in its place) and its held-out split
    under `secret` (SELECTION_SECRET when None) for the task `<model>/<layer>:<suffix>`."""
    eval_set = eval_set if eval_set is not None else open_split(family.dataset, family.eval_split, data_dir)
    indices = eval_indices(family, data_dir)
    has_held_out = family.dataset in heldout.TRANSFORMS

    def confirm(units: list[int], suffix: str) -> Confirmation:
        clean, d, _ = _loss_increases(family, eval_set, indices, groups=[units])
        public = power(clean, d[:, 0])
        if not has_held_out:
            return Confirmation(public, None)
        moved = heldout.held_out(eval_set, family.dataset, secret or SELECTION_SECRET,
                                 f"{family.model}/{family.layer}:{suffix}")
        clean, d, _ = _loss_increases(family, moved, indices, groups=[units])
        return Confirmation(public, power(clean, d[:, 0]))

    return confirm


def render_task_file(family: Family, importance: list[UnitImportance], chosen: tuple[list[int], list[int], list[int], dict[str, Confirmation]],
                     secret: bytes | None = None) -> str:
    """The task file for `chosen` (`choose`'s result)."""
    top, random_units, group, tried = chosen
    by_unit = {u.unit: u for u in importance}
    checkpoint = paths.checkpoints_dir() / f"{family.model}.safetensors"
    from ..download import sha256_file

    split_name = ("the held-out split (" + ("the board's secret, commitment " + heldout.commitment(secret)[:12]
                                             if secret else "select's public SELECTION_SECRET") + ")")
    has_held_out = family.dataset in heldout.TRANSFORMS
    rejected = sorted((s for s, c in tried.items() if not c.confirmed), key=lambda s: (not s[0].isdigit(), len(s), s))
    lines = [
        f"# Tasks for {family.model}. Generated by `replacebench select {family.family} --write`; do not edit by hand.",
        *([f"# {family.note}"] if family.note else []),
        f"# Units chosen on the fit split, never the eval split: important (one-sided t-test, Bonferroni α = {ALPHA}) and "
        f"powered there (≥ {POWER_MARGIN} standard errors);",
        f"# each task is then confirmed: ≥ {POWER_MARGIN} standard errors on the public eval split"
        + (f" and on {split_name}." if has_held_out else " (this dataset has no held-out split)."),
        f"# Random units are drawn from the powered, live ones (active on ≥ {MIN_ACTIVE:.0%} of the fit split). "
        "See benchmark/maintainer/select.py.",
        *([f"# Candidates not confirmed (so not shipped): {', '.join(family.layer + ':' + s for s in rejected)}."]
          if rejected else []),
        *([f"# Only {len(top)} + {len(random_units)} single units of {family.layer} are powered and confirmed "
           f"(of the {TOP_N} + {RANDOM_N} sought)."] if family.singles and len(top) + len(random_units) < TOP_N + RANDOM_N else []),
        "",
        *task_file_head(family.model, f"checkpoints/{family.model}.safetensors", sha256_file(checkpoint),
                        dataset=family.dataset, eval_split=family.eval_split, eval_size=family.eval_size,
                        fit_split=family.fit_split, fit_size=family.fit_size, seed=family.seed,
                        batch_size=family.batch_size, topk=(1,), inputs=family.inputs),
    ]

    def confirmed(suffix: str) -> str:
        c = tried[suffix]
        text = f"confirmed: {c.public.increase:+.4g} on the eval set ({c.public.t:.1f} standard errors)"
        if c.held_out is not None:
            text += f", {c.held_out.increase:+.4g} on the held-out split ({c.held_out.t:.1f})"
        return text

    def describe(unit: int) -> str:
        u = by_unit[unit]
        return (f"zero-ablation loss increase {u.mean_increase:+.4g} nats on the fit split (p = {u.p_value:.2g}, "
                f"{u.t:.1f} standard errors), active on {u.active_fraction:.0%} of it; {confirmed(str(unit))}")

    for rank, unit in enumerate(top, start=1):
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{unit}"', f'layer = "{family.layer}"',
                  f"units = [{unit}]", f'description = "Importance rank {rank}: {describe(unit)}."']
    for unit in random_units:
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:{unit}"', f'layer = "{family.layer}"',
                  f"units = [{unit}]", f'description = "Seeded-random live unit (seed {family.seed}): {describe(unit)}."']
    group_suffix = next((s for s in tried if s.startswith("top")), None)
    if group:
        lines += ["", "[[task]]", f'id = "{family.model}/{family.layer}:top{len(group)}"', f'layer = "{family.layer}"',
                  "units = [" + ", ".join(map(str, group)) + "]",
                  f'description = "Group: the {len(group)} most important units on the fit split, ablated and replaced '
                  f'together; zero-ablation loss increase {confirmed(f"top{len(group)}")}."']
    elif group_suffix is not None:
        c = tried[group_suffix]
        lines += ["", f"# The group of the {group_suffix[3:]} most important units is not powered on the eval set "
                      f"({c.public.t:.1f} standard errors" + (f", held-out {c.held_out.t:.1f}" if c.held_out else "")
                  + "): no group task."]
    return "\n".join(lines) + "\n"


def select_targets(name: str, data_dir: str | Path | None = None, write: bool = False,
                   secret: bytes | None = None) -> tuple[str, Path]:
    """The task file text for the task family `name` (a model's name for its main family), and its path
    (written when `write`). `secret`: the board's held-out secret to confirm with (None: SELECTION_SECRET)."""
    if name not in FAMILIES:
        raise unknown("task family", name, selectable(), "replacebench select --help")
    family = FAMILIES[name]
    importance = unit_importance(family, *selection_set(family, data_dir))
    chosen = choose(importance, family.seed, confirmer(family, data_dir, secret), family.group_n or GROUP_N,
                    singles=family.singles)
    text = render_task_file(family, importance, chosen, secret)
    path = paths.tasks_dir() / f"{family.family}.toml"
    if write:
        atomic_write_bytes(path, text.encode())
    return text, path
