"""Scoring a submission on a task: fit on the fit set, splice into the eval pass, compute statistics.

The eval pass runs the model once per batch with two hooks: one records the
allowed inputs the submission reads, the other replaces the target units by the
submission's output (and feeds the activation-fidelity statistics with the
original values it replaces). Clean and ablated results come from the cached
baseline, so a new submission costs one pass plus its own computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import stats
from ..sandbox.room import IsolatedSubmission
from ..tasks import ABLATIONS
from .baseline import CONDITIONS, Baseline
from .context import TaskContext
from .passes import Batch, ReplaceCalls, as_array, batches, fit_set_arrays, logits_from, with_units
from .submissions import count_params


@dataclass
class ScoreResult:
    """Everything a result record holds, before provenance is added."""

    figures: dict[str, Any]
    arrays: dict[str, np.ndarray]  # per-example sidecar
    fitted_parameters: int
    seconds: dict[str, float] = field(default_factory=dict)
    # the logit scale M of each condition `# [n]` (clean, the ablations, replaced; `DataKind.logit_scale`): not in
    # the sidecar, the noise floor `verify` puts under the per-example losses and KLs (`stats.loss_noise`)
    scales: dict[str, np.ndarray] = field(default_factory=dict)


def fit_submission(ctx: TaskContext, room: IsolatedSubmission, progress: bool = False) -> dict[str, np.ndarray] | None:
    """Run the submission's fit step on the fit set (only); its validated params, or None without a fit step."""
    if room.fit_signature is None:
        return None
    inputs, target = fit_set_arrays(ctx, room.fit_signature.inputs, progress)
    return room.fit(inputs, target, ctx.view())


def replaced_pass(ctx: TaskContext, room: IsolatedSubmission, baseline: Baseline, progress: bool = False,
                  fidelity: stats.FidelityAccumulator | None = None,
                  on_batch: Callable[[Batch, np.ndarray], None] | None = None,
                  ) -> tuple[dict[str, np.ndarray], list[stats.UnitFidelity], float]:
    """The eval pass with the replacement spliced in: per-example outputs, activation fidelity, and the wall
    seconds spent in the submission's `replace` calls (measured around each call, transfers included).

    Per batch: a = the target layer's activation; r = replace(inputs) (validated); the loss is the model's from
    a with the target units set to r (`passes.logits_from`). `fidelity`: the accumulator to feed (a shard passes
    one that keeps its per-batch sums; `cluster.py`). `on_batch(batch, r)`: sees each batch and its validated
    replacement (`diagnose` keeps both)."""
    task = ctx.task
    assert room.replace_signature is not None
    replace = ReplaceCalls(room, ctx.target_shape, ctx=ctx)
    fidelity = fidelity if fidelity is not None else stats.FidelityAccumulator(len(task.units))
    logp_clean = baseline.arrays["logp_clean"]
    parts: dict[str, list[np.ndarray]] = {}
    for batch in batches(ctx, "eval", room.replace_signature.inputs, progress, f"score {room.snapshot.name}"):
        b, position = len(batch), batch.start
        out = replace(batch.inputs, b, batch.x)  # [b, n_units, ...], validated (text: audited for causality once)
        fidelity.update(ctx.units_first(as_array(batch.target)), ctx.units_first(out))
        if on_batch is not None:
            on_batch(batch, out)
        class_logits = logits_from(ctx, with_units(ctx, batch.activation, torch.from_numpy(out)), batch.carry)
        for key, value in ctx.data_kind.per_example_outputs(class_logits, batch.labels, task.topk).items():
            parts.setdefault(f"{key}.replaced", []).append(value)
        parts.setdefault("scale.replaced", []).append(ctx.data_kind.logit_scale(class_logits))
        logp = ctx.data_kind.log_probs(class_logits)  # [b, classes]
        parts.setdefault("kl", []).append(ctx.data_kind.per_example_kl(logp_clean[position : position + b], logp))
    return {k: np.concatenate(v) for k, v in parts.items()}, fidelity.result(), replace.seconds


def summarize(ctx: TaskContext, baseline: Baseline, replaced: dict[str, np.ndarray], fidelity: list) -> dict[str, Any]:
    """Every figure of a result record, from per-example arrays."""
    task = ctx.task
    l_clean = baseline.loss("clean")
    l_replaced = replaced["loss.replaced"]
    recovery = stats.recovery_stats(l_clean, {a: baseline.loss(a) for a in ABLATIONS}, l_replaced)
    kl_recovery = stats.kl_recovery_stats({a: baseline.kl(a) for a in ABLATIONS}, replaced["kl"])
    accuracy: dict[str, dict[str, float]] = {}
    mcnemar: dict[str, dict[str, Any]] = {}
    for k in task.topk:
        accuracy[f"top{k}"] = {c: float(baseline.correct(c, k).mean()) for c in CONDITIONS}
        accuracy[f"top{k}"]["replaced"] = float(replaced[f"top{k}.replaced"].mean())
        mcnemar[f"top{k}"] = stats.mcnemar_exact(baseline.correct("clean", k), replaced[f"top{k}.replaced"]).to_dict()
    primary = recovery[task.ablation]
    return {
        "primary": {"ablation": task.ablation, **primary.to_dict()},
        "recovery": {name: r.to_dict() for name, r in recovery.items()},
        "kl_recovery": {name: r.to_dict() for name, r in kl_recovery.items()},
        "p_at_least_clean": stats.p_at_least_clean(l_clean, l_replaced, baseline.scale("clean"), replaced["scale.replaced"]),
        "mean_loss": {**{c: float(baseline.loss(c).mean()) for c in CONDITIONS}, "replaced": float(l_replaced.mean())},
        "accuracy": accuracy,
        "mcnemar_replaced_vs_clean": mcnemar,
        "mean_kl_clean_replaced": float(replaced["kl"].mean()),
        "fidelity": [{**f.to_dict(), "unit": u} for u, f in zip(task.units, fidelity)],
    }


def score(ctx: TaskContext, room: IsolatedSubmission, baseline: Baseline, *, progress: bool = False) -> ScoreResult:
    """Load the submission's code (the baseline already exists), fit it if it has a fit step, run the replaced
    eval pass, and compute every statistic."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    room.load(ctx.task)
    timings["load"] = time.perf_counter() - start
    start = time.perf_counter()
    params = fit_submission(ctx, room, progress)
    room.start_replace(ctx.view(), params)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    replaced, fidelity, timings["replace_calls"] = replaced_pass(ctx, room, baseline, progress)
    timings["replaced_pass"] = time.perf_counter() - start
    start = time.perf_counter()
    figures = summarize(ctx, baseline, replaced, fidelity)
    timings["statistics"] = time.perf_counter() - start
    arrays = result_arrays(ctx, baseline, replaced)
    return ScoreResult(figures=figures, arrays=arrays, fitted_parameters=count_params(params or {}), seconds=timings,
                       scales=result_scales(baseline, replaced))


def result_arrays(ctx: TaskContext, baseline: Baseline, replaced: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The record's per-example sidecar, in eval order."""
    return {
        "eval_indices": ctx.eval_indices,
        "labels": ctx.eval_labels,
        **{f"loss.{c}": baseline.loss(c).astype(np.float32) for c in CONDITIONS},
        "loss.replaced": replaced["loss.replaced"].astype(np.float32),
        "kl": replaced["kl"].astype(np.float32),
        **{f"kl.{a}": baseline.kl(a).astype(np.float32) for a in ABLATIONS},
        **{f"top{k}.{c}": baseline.correct(c, k) for k in ctx.task.topk for c in CONDITIONS},
        **{f"top{k}.replaced": replaced[f"top{k}.replaced"] for k in ctx.task.topk},
    }


def result_scales(baseline: Baseline, replaced: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The logit scale of every condition `# [n]`, in eval order (`ScoreResult.scales`)."""
    return {**{c: baseline.scale(c) for c in CONDITIONS}, "replaced": replaced["scale.replaced"]}
