"""Paired comparison of two submissions' records on the same task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .errors import UserError
from .records import read_record, read_sidecar
from .tasks import Task


def record_path(results_dir: Path, task: Task, submission: str) -> Path:
    path = results_dir / task.slug() / f"{submission}.json"
    if not path.exists():
        raise UserError(f"no result for '{submission}' on {task.id} in {results_dir}; run `replacebench score {submission} --task {task.id}` first.")
    return path


def compare(results_dir: Path, task: Task, a: str, b: str, *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Paired test on per-example losses of A and B (same eval examples), and the CI of R_A − R_B."""
    loaded = []
    for name in (a, b):
        path = record_path(results_dir, task, name)
        record = read_record(path)
        loaded.append((record, read_sidecar(path, record)))
    (rec_a, arr_a), (rec_b, arr_b) = loaded
    for key in ("checkpoint_sha256", "data_hash", "task_hash"):
        if rec_a["provenance"][key] != rec_b["provenance"][key]:
            raise UserError(f"{a} and {b} were scored with different {key.replace('_', ' ')}; re-score both on the same data.")
    if not np.array_equal(arr_a["eval_indices"], arr_b["eval_indices"]):
        raise UserError(f"{a} and {b} were scored on different eval examples; re-score both with the same settings.")
    ablation = task.ablation
    result = stats.compare_paired(
        arr_a["loss.clean"].astype(np.float64), arr_a[f"loss.{ablation}"].astype(np.float64),
        arr_a["loss.replaced"].astype(np.float64), arr_b["loss.replaced"].astype(np.float64),
        n_resamples=n_resamples, seed=seed,
    )
    from .leaderboard import submission_state

    out: dict[str, Any] = {"task": task.id, "a": a, "b": b, "ablation": ablation, **result.to_dict()}
    out["marks"] = {name: submission_state(record) or "current, isolated" for name, record in ((a, rec_a), (b, rec_b))}
    for k in task.topk:
        out[f"mcnemar_top{k}"] = stats.mcnemar_exact(arr_a[f"top{k}.replaced"], arr_b[f"top{k}.replaced"]).to_dict()
    return out
