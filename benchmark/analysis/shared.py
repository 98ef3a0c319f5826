"""What `inspect` and `diagnose` share across kinds of data (`ctx.data_kind`): the default folder, where a report's
files end up and how it is written, streaming moments, class names, statistics rows, and diagnose's fidelity
measures and scatter.

- Pearson r of two samples: r = Σ (x − x̄)(y − ȳ) / √(Σ (x − x̄)² · Σ (y − ȳ)²) (float64; None for fewer than 2
  values or a constant sample);
- by decile: the original values o cut at their deciles (equal edges merged: a unit silent on most examples gets one
  bin for its zeros); per bin n, r, mean o, mean r and mean |r − o|;
- by class: per class present, n, r (every position) and mean |r − o|, worst r first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..harness.context import TaskContext
from . import figures


def default_out(kind: str, *parts: str) -> Path:
    """`<cache>/<kind>/<parts…>` (the folder itself is created only when the report is complete)."""
    return paths.user_cache_root().joinpath(kind, *parts)


class Moments:
    """Streaming min, max, mean and sd (ddof 0) of every value of an input, batch by batch (float64 sums)."""

    def __init__(self) -> None:
        self.n, self.s, self.ss, self.lo, self.hi = 0, 0.0, 0.0, np.inf, -np.inf

    def update(self, x: np.ndarray) -> None:
        x = x.astype(np.float64, copy=False)
        self.n += x.size
        self.s += float(x.sum())
        self.ss += float(np.square(x).sum())
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    def result(self) -> dict[str, float]:
        mean = self.s / self.n
        return {"min": self.lo, "max": self.hi, "mean": mean, "sd": float(np.sqrt(max(self.ss / self.n - mean**2, 0.0)))}


def located(dest: Path, files: dict[str, str], data: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A report's (or unit's) `images` and `data` entries: each PNG and `.npz` (its `file` popped from `data`'s
    descriptions) as its path under `dest`, the folder the report ends up in."""
    return {"images": {k: str(dest / v) for k, v in files.items()},
            "data": {k: {"path": str(dest / v.pop("file")), **v} for k, v in data.items()}}


def finish_report(report: dict[str, Any], dest: Path, tmp: Path, json_name: str,
                  page: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """Name where the report ends up (`out`, `html`), then write `index.html` (`page(report)`) and `json_name` into
    the staging folder `tmp`; returns the report."""
    report["out"] = str(dest)
    report["html"] = str(dest / "index.html")
    (tmp / "index.html").write_text(page(report))
    figures.write_json(tmp / json_name, report)
    return report


def class_names(ctx: TaskContext, data_dir: str | None) -> list[str] | None:
    """Readable class names where the dataset has them (ImageNet's label map), else None (the digit is the name)."""
    if ctx.task.dataset != "imagenet":
        return None
    try:
        from ..data.imagenet import load_class_names

        return load_class_names(data_dir)
    except Exception:  # the names are a nicety; the index is always shown
        return None


def label_text(label: int, names: list[str] | None) -> str:
    return str(label) if names is None or label >= len(names) else f"{label} {names[label]}"


def stats_row(name: str, s: dict[str, float]) -> list[str]:
    return [name, *(f"{s[k]:.4g}" for k in ("mean", "sd", "min", "q10", "median", "q90", "q99", "max")),
            f"{100 * s['fraction_active']:.1f}%"]


STATS_HEAD = ["over", "mean", "sd", "min", "q10", "median", "q90", "q99", "max", "active (> 0)"]


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson r of two samples (float64); None with fewer than 2 values or a constant sample."""
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if len(x) < 2:
        return None
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return None if den == 0 else float((x * y).sum() / den)


def by_decile(o: np.ndarray, r: np.ndarray) -> list[dict[str, Any]]:
    """Fidelity within the deciles of the original values `o` (equal edges merged); see the module docstring."""
    o, r = o.ravel().astype(np.float64), r.ravel().astype(np.float64)
    edges = np.unique(np.quantile(o, np.linspace(0, 1, 11)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    bins = np.clip(np.searchsorted(edges, o, side="right") - 1, 0, len(edges) - 2)
    out = []
    for b in range(len(edges) - 1):
        m = bins == b
        if not m.any():
            continue
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()), "r": pearson(o[m], r[m]),
                    "mean_original": float(o[m].mean()), "mean_replaced": float(r[m].mean()),
                    "mean_abs_diff": float(np.abs(r[m] - o[m]).mean())})
    return out


def by_class(o: np.ndarray, r: np.ndarray, labels: np.ndarray, names: list[str] | None) -> list[dict[str, Any]]:
    """Per class present: n examples, Pearson r (every position) and mean |r − o|; worst r first (None last)."""
    rows = []
    for c in np.unique(labels):
        m = labels == c
        rows.append({"label": int(c), "class": label_text(int(c), names), "n": int(m.sum()), "r": pearson(o[m], r[m]),
                     "mean_abs_diff": float(np.abs(r[m] - o[m]).mean())})
    return sorted(rows, key=lambda row: (row["r"] is None, row["r"] if row["r"] is not None else 0.0, row["label"]))


def per_example_value(a: np.ndarray) -> np.ndarray:
    """`# [n, n_units, *spatial]` → `# [n, n_units]`: the value (dense) or the maximum over positions (conv)."""
    return a.reshape(a.shape[0], a.shape[1], -1).max(axis=2)


def fmt_r(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"



def report_head(ctx: TaskContext, name: str, n: int, isolation: dict[str, Any], loss_clean: np.ndarray,
                loss_replaced: np.ndarray, fidelity: list[dict[str, Any]], read: str) -> dict[str, Any]:
    """The start of diagnose.json for every kind: who ran on what, what it read, mean losses, fidelity per unit and
    the first ten units' r as one line (`overall_r_text`)."""
    task = ctx.task
    report: dict[str, Any] = {
        "submission": name, "task": task.id, "n_eval": int(n), "units": list(task.units), "isolation": isolation,
        "read": read, "mean_loss": {"clean": float(loss_clean.mean()), "replaced": float(loss_replaced.mean())},
        "fidelity": [{**f, "unit": int(u)} for u, f in zip(task.units, fidelity)],
    }
    rs = [f.get("pearson_r") for f in fidelity]
    report["overall_r_text"] = ", ".join(f"{u}: {r:.3f}" if r is not None else f"{u}: —"
                                         for u, r in list(zip(task.units, rs))[:10]) + (" …" if len(rs) > 10 else "")
    return report


def scatter_figure(tmp: Path, unit: int, o: np.ndarray, r: np.ndarray, conv: bool) -> tuple[str, dict[str, Any]]:
    """One unit's replaced values `r` against its original ones `o` (`# [n, *spatial]`) as a scatter PNG, and the npz
    of the points drawn (`figures.scatter_png`): where each sits (`eval_position`, and `row`, `col` for a map)."""
    image, points = figures.scatter_png(o, r, label_x=f"original activation, unit {unit}",
                                        label_y=f"replaced activation, unit {unit}")
    png = figures.save_png(image, tmp / f"unit{unit}_scatter.png")
    where = np.unravel_index(points["index"], o.shape)  # (example, *position) of each point shown
    return png, figures.save_npz(tmp / f"unit{unit}_scatter.npz", {
        "original": points["x"], "replaced": points["y"], "eval_position": where[0],
        **({"row": where[1], "col": where[2]} if conv else {}), "limits": points["limits"],
        "n_points_total": o.size})
