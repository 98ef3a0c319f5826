"""Paired comparison of two submissions' records on the same task."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .. import stats
from ..errors import UserError
from ..record.format import fmt_p, fmt_pct
from ..record.io import read_sidecar
from ..record.typed import Record
from ..tasks import Task


def record_path(results_dirs: Path | list[Path], task: Task, submission: str) -> Path:
    """The submission's record on the task from the first folder that has one (e.g. the runs folder, then the board)."""
    folders = [results_dirs] if isinstance(results_dirs, Path) else list(results_dirs)
    for folder in folders:
        path = folder / task.slug() / f"{submission}.json"
        if path.exists():
            return path
    where = " or ".join(str(f) for f in folders)
    raise UserError(f"no result for '{submission}' on {task.id} in {where}; run `replacebench score {submission} --task {task.id}` first.")


def compare(results_dirs: Path | list[Path], task: Task, a: str, b: str) -> dict[str, Any]:
    """Paired test on per-example losses of A and B (same eval examples), and the CI of R_A − R_B; each record from
    the first of `results_dirs` that has it."""
    loaded = []
    for name in (a, b):
        path = record_path(results_dirs, task, name)
        record = Record.read(path)
        loaded.append((record, read_sidecar(path, record)))
    (rec_a, arr_a), (rec_b, arr_b) = loaded
    for key in ("checkpoint_sha256", "data_hash", "task_hash"):
        if getattr(rec_a.provenance, key) != getattr(rec_b.provenance, key):
            raise UserError(f"{a} and {b} were scored with different {key.replace('_', ' ')}; re-score both on the same data.")
    if not np.array_equal(arr_a["eval_indices"], arr_b["eval_indices"]):
        raise UserError(f"{a} and {b} were scored on different eval examples; re-score both with the same settings.")
    ablation = task.ablation
    result = stats.compare_paired(
        arr_a["loss.clean"].astype(np.float64), arr_a[f"loss.{ablation}"].astype(np.float64),
        arr_a["loss.replaced"].astype(np.float64), arr_b["loss.replaced"].astype(np.float64),
    )
    from .leaderboard import submission_state

    out: dict[str, Any] = {"task": task.id, "a": a, "b": b, "ablation": ablation, **result.to_dict()}
    out["verdict"] = verdict(out)
    out["marks"] = {name: submission_state(record) or "current, isolated" for name, record in ((a, rec_a), (b, rec_b))}
    for k in task.topk:
        out[f"mcnemar_top{k}"] = stats.mcnemar_exact(arr_a[f"top{k}.replaced"], arr_b[f"top{k}.replaced"]).to_dict()
    return out


ALPHA = 0.05  # the primary test's level: a two-sided paired t-test of the per-example losses


def decimals_for(width: float) -> int:
    """Decimal places that give an interval of this width two significant digits: 28 → 0, 3.2 → 1, 0.04 → 3."""
    if not math.isfinite(width) or width <= 0:
        return 1
    return max(0, 1 - math.floor(math.log10(width)))


def p_text(p: float) -> str:
    """'p = 0.00154' or 'p < 1e-4'."""
    shown = fmt_p(p)
    return f"p {shown[0]} {shown[1:]}" if shown.startswith("<") else f"p = {shown}"


def _signed(value: float, places: int) -> str:
    return f"{value + 0.0:+.{places}f}"


def verdict(result: dict[str, Any]) -> str:
    """One line: who beats whom, by how much recovery (winner − loser, in points, with its 95% CI), and the primary test.

    The primary test is the two-sided paired t-test of L_a − L_b (per-example loss); Wilcoxon's is a robustness
    check. Digits: the interval's width to two significant digits.
    """
    a, b, p = result["a"], result["b"], result["p_ttest"]
    test = f"paired t-test {p_text(p)}"
    a_wins = result["diff"] < 0
    winner, loser = (a, b) if a_wins else (b, a)
    if result["defined"] and result["recovery_diff"] is not None:
        sign = 1 if a_wins else -1
        d, lo, hi = (100 * sign * result[k] for k in ("recovery_diff", "recovery_diff_low", "recovery_diff_high"))
        lo, hi = min(lo, hi), max(lo, hi)
        places = decimals_for(hi - lo)
        size = f"recovery {_signed(d, places)} points [{_signed(lo, places)}, {_signed(hi, places)}]"
    else:
        sign = -1 if a_wins else 1
        d, lo, hi = (sign * result[k] for k in ("diff", "diff_low", "diff_high"))
        lo, hi = min(lo, hi), max(lo, hi)
        places = decimals_for(hi - lo)
        size = (f"mean loss lower by {d:.{places}f} nats [{lo:.{places}f}, {hi:.{places}f}] "
                "(recovery is undefined on this task)")
    if p < ALPHA:
        return f"{winner} beats {loser}: {size}, {test}"
    return f"no significant difference between {a} and {b} ({test}); {winner} vs {loser}: {size}"


def format_comparison(result: dict[str, Any]) -> str:
    """The human-readable report of `compare`: the verdict first, then each figure with what its sign means."""
    a, b = result["a"], result["b"]
    level = round(100 * result["level"])
    lines = [f"{a} vs {b} on {result['task']} (paired over the same {result['n']:,} eval examples; ablation: "
             f"{result['ablation']})", f"  verdict: {result['verdict']}"]
    width = result["diff_high"] - result["diff_low"]
    places = decimals_for(width) + 1
    lines.append(f"  mean loss {a} − {b}: {_signed(result['diff'], places)} nats [{_signed(result['diff_low'], places)}, "
                 f"{_signed(result['diff_high'], places)}] ({level}% CI; negative: {a} has the lower loss)")
    lines.append(f"  primary test: paired t-test {p_text(result['p_ttest'])}; Wilcoxon signed-rank "
                 f"{p_text(result['p_wilcoxon'])} (a robustness check, not the verdict)")
    if result["defined"]:
        lo, hi = 100 * result["recovery_diff_low"], 100 * result["recovery_diff_high"]
        places = decimals_for(hi - lo)
        lines.append(f"  recovery {a} − {b}: {_signed(100 * result['recovery_diff'], places)} points "
                     f"[{_signed(lo, places)}, {_signed(hi, places)}] (positive: {a} recovers more); "
                     f"{a} {fmt_pct(result['recovery_a'])}, {b} {fmt_pct(result['recovery_b'])}")
    else:
        lines.append("  recovery: undefined (the ablation's effect is not significant on this eval set)")
    for key, value in result.items():
        if key.startswith("mcnemar_"):
            lines.append(f"  {key.removeprefix('mcnemar_')} McNemar: {value['b']} examples only {a} gets right, "
                         f"{value['c']} only {b}; exact {p_text(value['p_value'])}")
    marks = result.get("marks") or {}
    if any(mark != "current, isolated" for mark in marks.values()):
        lines.append("  marks: " + "; ".join(f"{name}: {mark}" for name, mark in marks.items()))
    return "\n".join(lines)
