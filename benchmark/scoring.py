"""Scoring a submission on a task: fit on the fit set, splice into the eval pass, compute statistics.

The eval pass runs the model once per batch with two hooks: one records the
allowed inputs the submission reads, the other replaces the target units by the
submission's output (and feeds the activation-fidelity statistics with the
original values it replaces). Clean and ablated results come from the cached
baseline, so a new submission costs one pass plus its own computation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import stats
from .baseline import CONDITIONS, Baseline
from .conditions import per_example_outputs
from .context import TaskContext
from .errors import SubmissionError, UserError
from .hooks import capture, splice
from .submissions import (
    RESERVED_FIT,
    RESERVED_REPLACE,
    Signature,
    Submission,
    check_output,
    check_params,
    count_params,
    read_signature,
)

DEFAULT_RESAMPLES = 2000


@dataclass
class ScoreResult:
    """Everything a result record holds, before provenance is added."""

    figures: dict[str, Any]
    arrays: dict[str, np.ndarray]  # per-example sidecar
    fitted_parameters: int
    seconds: dict[str, float] = field(default_factory=dict)


def call_user(fn: Any, kwargs: dict[str, Any], who: str) -> Any:
    """Call submission code; its own exception surfaces as a SubmissionError chained to it."""
    try:
        return fn(**kwargs)
    except UserError:
        raise
    except Exception as exc:
        raise SubmissionError(f"{who} raised {type(exc).__name__}: {exc}") from exc


def collect_fit_inputs(ctx: TaskContext, signature: Signature, progress: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The fit set's named inputs `# [n_fit, ...]` and the target units `# [n_fit, n_units, ...]`, on the CPU."""
    task, model = ctx.task, ctx.model
    names = [n for n in signature.inputs if n != "image"]
    units = torch.as_tensor(task.units, device=ctx.device)
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in signature.inputs}
    targets = []
    with torch.no_grad(), capture(model, names) as store:
        for _, images in tqdm(ctx.fit_set.batches(ctx.fit_indices, task.batch_size), desc="fit inputs", unit="batch",
                              total=-(-len(ctx.fit_indices) // task.batch_size), disable=not progress, leave=False):
            images = ctx.to_input(images)
            act = model.run(images, until=task.layer)
            targets.append(act[:, units].cpu())
            for name in signature.inputs:
                chunks[name].append((images if name == "image" else store[name]).cpu())
    return {n: torch.cat(c) for n, c in chunks.items()}, torch.cat(targets)


def fit_submission(ctx: TaskContext, submission: Submission, progress: bool = False) -> dict[str, torch.Tensor]:
    """Run the submission's fit step on the fit set (only), returning its validated params."""
    where = f"submission '{submission.name}'"
    replace_sig = read_signature(submission.replace, ctx.task, RESERVED_REPLACE, f"{where} replace()")
    if submission.fit is None:
        if "params" in replace_sig.reserved:
            raise UserError(f"{where}: replace() reads 'params' but the submission defines no fit(); add fit() or drop 'params'.")
        return {}
    signature = read_signature(submission.fit, ctx.task, RESERVED_FIT, f"{where} fit()")
    inputs, target = collect_fit_inputs(ctx, signature, progress)
    kwargs: dict[str, Any] = dict(inputs)
    if "target" in signature.reserved:
        kwargs["target"] = target
    if "task" in signature.reserved:
        kwargs["task"] = ctx.view()
    params = check_params(call_user(submission.fit, kwargs, f"{where} fit()"), f"{where} fit()")
    del inputs, kwargs
    return {k: v.to(ctx.device) for k, v in params.items()}


def replaced_pass(ctx: TaskContext, submission: Submission, params: dict[str, torch.Tensor], baseline: Baseline,
                  progress: bool = False) -> tuple[dict[str, np.ndarray], list[stats.UnitFidelity]]:
    """The eval pass with the replacement spliced in: per-example outputs and activation fidelity."""
    task, model = ctx.task, ctx.model
    where = f"submission '{submission.name}' replace()"
    signature = read_signature(submission.replace, task, RESERVED_REPLACE, where)
    names = [n for n in signature.inputs if n != "image"]
    units = torch.as_tensor(task.units, device=ctx.device)
    view = ctx.view()
    fidelity = stats.FidelityAccumulator(len(task.units))
    labels_all = torch.as_tensor(ctx.eval_labels)
    logp_clean = baseline.arrays["logp_clean"]
    parts: dict[str, list[np.ndarray]] = {}
    position = 0
    with torch.no_grad(), capture(model, names) as store:
        for _, images in tqdm(ctx.eval_set.batches(ctx.eval_indices, task.batch_size), desc=f"score {submission.name}",
                              unit="batch", total=-(-len(ctx.eval_indices) // task.batch_size), disable=not progress):
            images = ctx.to_input(images)
            b = len(images)

            def compute(original: torch.Tensor) -> torch.Tensor:  # original: [b, C, ...]
                kwargs: dict[str, Any] = {n: (images if n == "image" else store[n]) for n in signature.inputs}
                if "task" in signature.reserved:
                    kwargs["task"] = view
                if "params" in signature.reserved:
                    kwargs["params"] = params
                out = check_output(call_user(submission.replace, kwargs, where), (b, *ctx.target_shape), ctx.device, where)
                fidelity.update(original[:, units].cpu().numpy(), out.cpu().numpy())
                return out

            with splice(model, task.layer, task.units, compute):
                class_logits = model.class_logits(model(images))
            labels = labels_all[position : position + b].to(ctx.device)
            for key, value in per_example_outputs(class_logits, labels, task.topk).items():
                parts.setdefault(f"{key}.replaced", []).append(value)
            logp = torch.log_softmax(class_logits.float(), 1).cpu().numpy()
            parts.setdefault("kl", []).append(stats.per_example_kl(logp_clean[position : position + b], logp))
            position += b
    return {k: np.concatenate(v) for k, v in parts.items()}, fidelity.result()


def summarize(ctx: TaskContext, baseline: Baseline, replaced: dict[str, np.ndarray], fidelity: list,
              n_resamples: int, seed: int) -> dict[str, Any]:
    """Every figure of a result record, from per-example arrays."""
    task = ctx.task
    l_clean = baseline.loss("clean")
    l_replaced = replaced["loss.replaced"]
    recovery = stats.recovery_stats(
        l_clean, {a: baseline.loss(a) for a in ("zero", "mean", "resample")}, l_replaced,
        n_resamples=n_resamples, seed=seed,
    )
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
        "p_at_least_clean": stats.p_at_least_clean(l_clean, l_replaced),
        "mean_loss": {**{c: float(baseline.loss(c).mean()) for c in CONDITIONS}, "replaced": float(l_replaced.mean())},
        "accuracy": accuracy,
        "mcnemar_replaced_vs_clean": mcnemar,
        "mean_kl_clean_replaced": float(replaced["kl"].mean()),
        "fidelity": [{**f.to_dict(), "unit": u} for u, f in zip(task.units, fidelity)],
    }


def score(ctx: TaskContext, submission: Submission, baseline: Baseline, *, n_resamples: int = DEFAULT_RESAMPLES,
          seed: int = 0, progress: bool = False) -> ScoreResult:
    """Fit (if the submission has a fit step), run the replaced eval pass, and compute every statistic."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    params = fit_submission(ctx, submission, progress)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    replaced, fidelity = replaced_pass(ctx, submission, params, baseline, progress)
    timings["replaced_pass"] = time.perf_counter() - start
    start = time.perf_counter()
    figures = summarize(ctx, baseline, replaced, fidelity, n_resamples, seed)
    timings["statistics"] = time.perf_counter() - start
    arrays = {
        "eval_indices": ctx.eval_indices,
        "labels": ctx.eval_labels,
        **{f"loss.{c}": baseline.loss(c).astype(np.float32) for c in CONDITIONS},
        "loss.replaced": replaced["loss.replaced"].astype(np.float32),
        "kl": replaced["kl"].astype(np.float32),
        **{f"top{k}.{c}": baseline.correct(c, k) for k in ctx.task.topk for c in CONDITIONS},
        **{f"top{k}.replaced": replaced[f"top{k}.replaced"] for k in ctx.task.topk},
    }
    return ScoreResult(figures=figures, arrays=arrays, fitted_parameters=count_params(params), seconds=timings)
