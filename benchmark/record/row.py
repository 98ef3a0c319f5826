"""A record as one flat row: the columns of `api.load_results`'s DataFrame, each read from the typed record.

`ROW` is the one table of columns, in their order: name → how to read it from a `Record` (None where the record
lacks it: a record migrated from an older schema).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .typed import Record


def _kl(field: str) -> Callable[[Record], Any]:
    return lambda r: None if r.results.primary_kl is None else getattr(r.results.primary_kl, field)


ROW: dict[str, Callable[[Record], Any]] = {
    "task": lambda r: r.task.id,
    "submission": lambda r: r.submission.name,
    "split": lambda r: r.split,
    "kind": lambda r: r.submission.kind,
    "authors": lambda r: ", ".join(r.submission.authors),
    "primary_ablation": lambda r: r.results.primary.ablation,
    "defined": lambda r: r.results.primary.defined,
    "recovery": lambda r: r.results.primary.recovery,
    "recovery_low": lambda r: r.results.primary.recovery_low,
    "recovery_high": lambda r: r.results.primary.recovery_high,
    "p_beats_ablation": lambda r: r.results.primary.p_beats_ablation,
    "effect": lambda r: r.results.primary.effect,
    "kl_recovery": _kl("recovery"),
    "kl_recovery_low": _kl("recovery_low"),
    "kl_recovery_high": _kl("recovery_high"),
    "mean_loss_replaced": lambda r: r.results.mean_loss.get("replaced"),
    "mean_loss_clean": lambda r: r.results.mean_loss.get("clean"),
    "top1_replaced": lambda r: (r.results.accuracy.get("top1") or {}).get("replaced"),
    "fidelity_r_mean": lambda r: r.results.mean_fidelity_r,
    "description_bits": lambda r: r.complexity.description_bits,
    "fitted_parameters": lambda r: r.complexity.fitted_parameters,
    "stored_numbers": lambda r: r.complexity.stored_numbers,
    "stored_bits": lambda r: r.complexity.stored_bits,
    "target_fan_in": lambda r: r.complexity.target_fan_in,
    "copy": lambda r: r.complexity.copy,
    "replace_seconds_per_example": lambda r: None if r.efficiency is None else r.efficiency.replace_seconds_per_example,
    "n_eval": lambda r: r.task.n_eval,
    "standard_protocol": lambda r: r.task.standard_protocol,
    "isolation": lambda r: r.isolation.level,
    "intervals": lambda r: r.provenance.intervals,
    "created": lambda r: r.provenance.created,
    "git_commit": lambda r: r.provenance.git_commit,
    "git_dirty": lambda r: r.provenance.git_dirty,
    "content_hash": lambda r: r.submission.content_hash,
}
COLUMNS = [*ROW, "path"]


def result_row(record: Record, path: Path | None = None) -> dict[str, Any]:
    """One record as a flat row (`COLUMNS`, in order); `path`: the file it was read from (None: not read)."""
    return {**{name: read(record) for name, read in ROW.items()}, "path": None if path is None else str(path)}
